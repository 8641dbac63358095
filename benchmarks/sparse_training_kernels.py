"""Prototype: can TensorFlow's own ops train a sparse MLP faster than dense?

`python -m benchmarks.sparse_training_kernels [--quick]` times, for the MLP
784-4096-4096-10 at batch 128 with uniform 95/98/99% sparsity, one step's
three products per layer without an optimizer:

- forward `y = x @ W`,
- input gradient `dx = dy @ W^T`,
- weight gradient at the active positions only, `dW[k] = sum_b x[b, i_k] * dy[b, j_k]`,

with `W` held as values + (row, column) indices, against the dense
`x @ W`, `dy @ W^T` and `x^T @ dy`. Sparse variants:

- `csr`: `SparseMatrixMatMul` for both products (CSR of `W^T` and of `W`
  built from the indices each step, as a training step would after a mask
  change), weight gradient as gather x gather, row sum;
- `coo`: `tf.sparse.sparse_dense_matmul` for both products, same weight
  gradient;
- `xla`: ELLPACK gathers + row sums compiled by XLA for the forward and
  input gradient, and the weight gradient as one fused gather-multiply-sum.

A standalone study for the "true-sparse training path" (not wired into the
layers); it prints a table and writes nothing.
"""

import argparse
import time

import numpy as np
import tensorflow as tf

LAYERS = ((784, 4096), (4096, 4096), (4096, 10))
BATCH = 128
SPARSITIES = (0.95, 0.98, 0.99)


def _layer(shape, sparsity, rng):
    kernel = rng.standard_normal(shape).astype("float32")
    kernel[rng.random(shape) < sparsity] = 0.0
    rows, cols = np.nonzero(kernel)  # W: input rows, unit columns
    t_rows, t_cols = np.nonzero(kernel.T)  # W^T, row-major
    width = max(1, int(np.bincount(t_rows, minlength=shape[1]).max()))
    counts = np.bincount(t_rows, minlength=shape[1])
    slot = np.arange(t_rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    ell_cols = np.zeros((shape[1], width), np.int32)
    ell_pos = np.full((shape[1], width), t_rows.size, np.int64)  # padding -> extra zero value
    ell_cols[t_rows, slot] = t_cols
    ell_pos[t_rows, slot] = np.arange(t_rows.size)
    # Values in W^T row-major order; `w_order` maps them to W's row-major order.
    order_t = {(r, c): k for k, (c, r) in enumerate(zip(t_rows, t_cols))}
    w_order = np.array([order_t[(r, c)] for r, c in zip(rows, cols)], np.int64)
    return dict(
        dense=tf.constant(kernel),
        values=tf.constant(kernel.T[t_rows, t_cols]),
        t_indices=tf.constant(np.stack([t_rows, t_cols], 1).astype(np.int64)),
        w_indices=tf.constant(np.stack([rows, cols], 1).astype(np.int64)),
        w_order=tf.constant(w_order),
        rows32=tf.constant(t_rows.astype(np.int32)),
        cols32=tf.constant(t_cols.astype(np.int32)),
        ell_cols=tf.constant(ell_cols), ell_pos=tf.constant(ell_pos),
        shape=shape,
    )


def _dense_step(layer, x, dy):
    w = layer["dense"]
    return tf.matmul(x, w), tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)


def _weight_grad(layer, x, dy):
    # dW^T[k] for the nonzeros (row j = unit, col i = input): sum_b dy[b, j] x[b, i].
    return tf.reduce_sum(tf.gather(tf.transpose(dy), layer["rows32"])
                         * tf.gather(tf.transpose(x), layer["cols32"]), 1)


def _csr_step(layer, x, dy):
    n_in, units = layer["shape"]
    values = layer["values"]
    wt = tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=layer["t_indices"], values=values, dense_shape=tf.constant([units, n_in], tf.int64))
    w = tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=layer["w_indices"], values=tf.gather(values, layer["w_order"]),
        dense_shape=tf.constant([n_in, units], tf.int64))
    y = tf.raw_ops.SparseMatrixMatMul(a=wt, b=x, transpose_b=True, transpose_output=True)
    dx = tf.raw_ops.SparseMatrixMatMul(a=w, b=dy, transpose_b=True, transpose_output=True)
    return y, dx, _weight_grad(layer, x, dy)


def _coo_step(layer, x, dy):
    n_in, units = layer["shape"]
    values = layer["values"]
    wt = tf.SparseTensor(layer["t_indices"], values, [units, n_in])
    w = tf.SparseTensor(layer["w_indices"], tf.gather(values, layer["w_order"]), [n_in, units])
    y = tf.transpose(tf.sparse.sparse_dense_matmul(wt, x, adjoint_b=True))
    dx = tf.transpose(tf.sparse.sparse_dense_matmul(w, dy, adjoint_b=True))
    return y, dx, _weight_grad(layer, x, dy)


def _xla_step(layer, x, dy):
    n_in, units = layer["shape"]
    padded = tf.concat([layer["values"], [0.0]], 0)
    ell_values = tf.gather(padded, layer["ell_pos"])  # [units, width]
    # forward: y^T[j] = sum_s v[j, s] x^T[c[j, s]]
    y = tf.transpose(tf.reduce_sum(tf.gather(tf.transpose(x), layer["ell_cols"])
                                   * ell_values[..., None], 1))
    # input gradient: dx^T[i] = sum over nonzeros in column i of W^T: scatter-add
    contrib = tf.gather(tf.transpose(dy), layer["rows32"]) * layer["values"][:, None]
    dx = tf.transpose(tf.math.unsorted_segment_sum(contrib, layer["cols32"], n_in))
    return y, dx, _weight_grad(layer, x, dy)


KINDS = {"dense": _dense_step, "csr": _csr_step, "coo": _coo_step, "xla": _xla_step}


def _check(layers, x_list, dy_list):
    for layer, x, dy in zip(layers, x_list, dy_list):
        ref_y, ref_dx, ref_dw = _dense_step(layer, x, dy)
        ref_dw = tf.gather_nd(tf.transpose(ref_dw), layer["t_indices"])
        for kind in ("csr", "coo", "xla"):
            y, dx, dw = KINDS[kind](layer, x, dy)
            for got, ref in ((y, ref_y), (dx, ref_dx), (dw, ref_dw)):
                scale = float(tf.reduce_max(tf.abs(ref))) or 1.0
                assert float(tf.reduce_max(tf.abs(got - ref))) <= 1e-4 * scale, kind


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sparse_training_kernels",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    rounds, calls = (3, 2) if args.quick else (7, 3)
    rng = np.random.default_rng(0)
    x_list = [tf.constant(rng.standard_normal((BATCH, n_in)).astype("float32")) for n_in, _ in LAYERS]
    dy_list = [tf.constant(rng.standard_normal((BATCH, units)).astype("float32")) for _, units in LAYERS]
    print(f"MLP 784-4096-4096-10, batch {BATCH}: forward + input grad + weight grad, "
          f"all layers, median ms over {rounds} rounds of {calls} (rounds alternate order)")
    for sparsity in SPARSITIES:
        layers = [_layer(shape, sparsity, rng) for shape in LAYERS]
        _check(layers, x_list, dy_list)
        fns = {}
        for kind, step in KINDS.items():
            def run(step=step):
                return [t for layer, x, dy in zip(layers, x_list, dy_list) for t in step(layer, x, dy)]
            fns[kind] = tf.function(run, jit_compile=(kind == "xla"))
        samples = {k: [] for k in fns}
        names = list(fns)
        for r in range(rounds + 1):
            for name in names if r % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                for _ in range(calls):
                    [t.numpy() for t in fns[name]()]
                if r:
                    samples[name].append((time.perf_counter() - start) / calls * 1e3)
        dense = np.array(samples["dense"])
        line = ", ".join(f"{k} {np.median(v):.1f} ms (dense/{k} {np.median(dense / np.array(v)):.2f}x)"
                         for k, v in samples.items())
        print(f"{sparsity:.0%}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
