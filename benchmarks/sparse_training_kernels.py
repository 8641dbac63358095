"""Each product of a sparse training step alone: which TensorFlow kernel wins?

`python -m benchmarks.sparse_training_kernels [--quick]` times, for the
4096 x 4096 layer of the MLP 784-4096-4096-10 at batch 128 and uniform
90% and 98% sparsity, every way this package can compute one product,
against the dense product, in alternating rounds (paired ratios, geometric
mean with its 95% CI, `benchmarks.paired`):

- forward `y = x @ W`: CSR of `W` multiplied with `transpose_a=True` (before
  issue 21) vs a CSR of `W^T` from a `sparse_matmul.Layout` (after),
  each including its per-step `SparseTensorToCSRSparseMatrix`;
- input gradient `dx = dy @ W^T`: CSR of `W`;
- weight gradient at the active positions: the dense `x^T @ dy` then a
  gather (before) vs `sddmm` in pieces (the layer's count, half and twice
  as many, one; each piece's products by multiply-and-sum of gathered
  rows, by `einsum`, or of columns gathered along the batch) vs `sddmm`
  compiled by XLA in a nested `tf.function(jit_compile=True)`;
- the once-per-mask-change cost, `sparse_matmul.layout` (a sort), and a
  CSR construction alone (each CSR product above pays one per step:
  TensorFlow has no op making a CSR matrix from its components, and the
  values change every step).

Each kernel is checked against the dense product first. A standalone study
(it prints a table and writes nothing); the layer uses the winners.
"""

import argparse

import numpy as np
import tensorflow as tf

from benchmarks import paired, timing
from keras_sparse.layers import sparse_matmul
from keras_sparse.layers.sddmm import pieces_for, sddmm

BATCH = 128
SHAPE = (4096, 4096)
SPARSITIES = (0.9, 0.98)


def _csr(values, positions, shape):
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=positions, values=values, dense_shape=tf.constant(shape, tf.int64))


def _kernels(kernel, mask):
    """`{product: {name: fn}}`; every fn returns the product as a dense tensor."""
    n_in, units = SHAPE
    positions = sparse_matmul.active_positions(mask)
    lay = sparse_matmul.layout(positions, n_in)
    values = tf.gather_nd(kernel, positions)
    rows, cols = positions[:, 0], positions[:, 1]
    pieces = pieces_for(n_in * units)
    xla_sddmm = tf.function(lambda x, dy: sddmm(x, dy, rows, cols, 1), jit_compile=True)

    def forward_transpose_a(x, dy):
        return tf.raw_ops.SparseMatrixMatMul(a=_csr(values, positions, SHAPE), b=x,
                                             transpose_a=True, transpose_b=True,
                                             transpose_output=True)

    def forward_layout(x, dy):
        csr = _csr(tf.gather(values, lay.order), lay.t_positions, [units, n_in])
        return tf.raw_ops.SparseMatrixMatMul(a=csr, b=x, transpose_b=True, transpose_output=True)

    def input_gradient(x, dy):
        return tf.raw_ops.SparseMatrixMatMul(a=_csr(values, positions, SHAPE), b=dy,
                                             transpose_b=True, transpose_output=True)

    return {
        "forward": {
            "dense": lambda x, dy: tf.matmul(x, kernel),
            "csr transpose_a (before)": forward_transpose_a,
            "csr of W^T (after)": forward_layout,
        },
        "input gradient": {
            "dense": lambda x, dy: tf.matmul(dy, kernel, transpose_b=True),
            "csr of W": input_gradient,
        },
        "weight gradient": {
            "dense x^T dy + gather (before)": lambda x, dy: tf.gather_nd(
                tf.matmul(x, dy, transpose_a=True), positions),
            f"sddmm, {pieces} pieces": lambda x, dy: sddmm(x, dy, rows, cols, pieces),
            f"sddmm, {pieces // 2} pieces": lambda x, dy: sddmm(x, dy, rows, cols, pieces // 2),
            f"sddmm, {pieces * 2} pieces": lambda x, dy: sddmm(x, dy, rows, cols, pieces * 2),
            "sddmm, 1 piece": lambda x, dy: sddmm(x, dy, rows, cols, 1),
            # The same pieces, the row products by einsum (a batched matmul) or
            # by gathering along the batch axis instead of gathering rows.
            f"sddmm, {pieces} pieces, einsum": lambda x, dy: _sddmm_variant(
                x, dy, rows, cols, pieces, "einsum"),
            f"sddmm, {pieces} pieces, columns": lambda x, dy: _sddmm_variant(
                x, dy, rows, cols, pieces, "columns"),
            "sddmm, XLA": lambda x, dy: xla_sddmm(x, dy),
        },
        "per mask change": {
            "layout (a sort)": lambda x, dy: sparse_matmul.layout(positions, n_in).order,
            "CSR construction (also per step)": lambda x, dy: tf.raw_ops.SparseMatrixNNZ(
                sparse_matrix=_csr(values, positions, SHAPE)),
        },
    }


def _sddmm_variant(x, dy, rows, cols, pieces, how):
    """`sddmm` in `pieces`, each piece's products computed another way."""
    rows, cols = tf.cast(rows, tf.int32), tf.cast(cols, tf.int32)
    n = tf.shape(rows)[0]
    size = (n + pieces - 1) // pieces
    rows = tf.reshape(tf.pad(rows, [[0, pieces * size - n]]), [pieces, -1])
    cols = tf.reshape(tf.pad(cols, [[0, pieces * size - n]]), [pieces, -1])
    x_t, dy_t = tf.transpose(x), tf.transpose(dy)
    if how == "einsum":
        parts = [tf.einsum("kb,kb->k", tf.gather(x_t, rows[k]), tf.gather(dy_t, cols[k]))
                 for k in range(pieces)]
    else:  # "columns": gather along the batch rows' columns, reduce over the batch
        parts = [tf.reduce_sum(tf.gather(x, rows[k], axis=1) * tf.gather(dy, cols[k], axis=1), 0)
                 for k in range(pieces)]
    return tf.reshape(tf.stack(parts), [-1])[:n]


def _check(kernels, kernel, mask, x, dy):
    want = {
        "forward": x @ kernel,
        "input gradient": dy @ tf.transpose(kernel),
        "weight gradient": tf.gather_nd(tf.transpose(x) @ dy, sparse_matmul.active_positions(mask)),
    }
    for product, ref in want.items():
        scale = float(tf.reduce_max(tf.abs(ref))) or 1.0
        for name, fn in kernels[product].items():
            error = float(tf.reduce_max(tf.abs(fn(x, dy) - ref)))
            assert error <= 1e-4 * scale, (product, name, error)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sparse_training_kernels",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--sparsity", type=float, action="append",
                        help=f"a sparsity to time (repeatable; default {SPARSITIES})")
    parser.add_argument("--product", action="append",
                        help="time only this product (repeatable), e.g. \"weight gradient\"")
    args = parser.parse_args(argv)
    rounds, calls = (5, 2) if args.quick else (11, 3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((BATCH, SHAPE[0])).astype("float32"))
    dy = tf.constant(rng.standard_normal((BATCH, SHAPE[1])).astype("float32"))
    print(f"{SHAPE[0]}x{SHAPE[1]} layer, batch {BATCH}: ms per call (median of {rounds} "
          f"rounds of {calls}); ratio = first row / this row, geometric mean [95% CI]")
    for sparsity in args.sparsity or SPARSITIES:
        mask = tf.constant((rng.random(SHAPE) >= sparsity).astype("float32"))
        kernel = tf.constant(rng.standard_normal(SHAPE).astype("float32")) * mask
        kernels = _kernels(kernel, mask)
        _check(kernels, kernel, mask, x, dy)
        for product, fns in kernels.items():
            if args.product and product not in args.product:
                continue
            compiled = {name: tf.function(fn) for name, fn in fns.items()}

            def block(fn):
                def run():
                    for _ in range(calls):
                        out = fn(x, dy)
                    out.numpy()
                return run

            times = timing.interleaved({n: block(f) for n, f in compiled.items()}, rounds)
            first = next(iter(times))
            for name, samples in times.items():
                ci = paired.log_ratio_ci(times[first], samples)
                print(f"{sparsity:.0%} {product:16} {name:32} {np.median(samples) / calls * 1e3:8.2f} ms"
                      f"  {ci['ratio']:.2f}x [{ci['low']:.2f}-{ci['high']:.2f}]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
