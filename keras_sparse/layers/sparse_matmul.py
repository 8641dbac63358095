"""The products of `SparseDense(compute="sparse")`, with TensorFlow's own ops.

`y = x @ W` for a kernel `W` (`[n_in, units]`) of which only the entries at
`positions` are active (the others are exactly 0), computed from those
entries alone:

- forward `y = x @ W` and input gradient `dx = dy @ W^T`: one CSR matrix of
  `W` per step (`SparseMatrixMatMul`, the forward uses it transposed), built
  from the active values gathered out of the kernel;
- weight gradient, `"active"`: only at the active positions, `dW[i, j] =
  sum_b x[b, i] dy[b, j]`, as gathered rows multiplied and summed in pieces
  (so the intermediates stay a few MB), then written into the kernel's
  shape (exactly 0 elsewhere); `"dense"`: `x^T @ dy` at every position.

Why these kernels: `python -m benchmarks.sparse_training_kernels` times the
three products alone on the MLP 784-4096-4096-10; CSR was the fastest of
TensorFlow's options there (COO `sparse_dense_matmul` and an XLA-compiled
gather + `unsorted_segment_sum` were slower than the dense products at 98%).
The CSR ops have no XLA kernels, so this path is not `jit_compile`d. In a
whole train step (`python -m benchmarks run --only sparse_train_step`) the
"active" weight gradient measured slower than the dense one at 95% and 98%
and not clearly faster at 99% (faster in one run, slower in another, both
within the spread of the rounds), so `SparseDense` uses "dense" (and reads
a values vector's gradient out of it).

`values_matmul` is the same product for a layer that trains a vector of
its active weights (`value_storage`): the gradient goes to that vector.

On request (`dense_weight_gradient`, a boolean tensor) the weight gradient
is the dense `x^T @ dy`: the gradient `dL/d(W*M)` a dense weight would
receive, which growth rules (RigL, DST-EE) read at inactive positions.
"""

import tensorflow as tf

__all__ = ["WEIGHT_GRADIENTS", "active_positions", "sparse_matmul", "values_matmul"]

WEIGHT_GRADIENTS = ("active", "dense")


def active_positions(mask):
    """`int64 [nnz, 2]` (row, column) of the nonzeros of `mask`, row-major.

    The order `SparseTensorToCSRSparseMatrix` expects.

    Example:

    >>> active_positions(tf.constant([[1.0, 0.0], [1.0, 1.0]])).numpy().tolist()
    [[0, 0], [1, 0], [1, 1]]
    """
    return tf.where(mask > 0)


def _csr(values, positions, shape):
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=positions, values=values, dense_shape=tf.constant(shape, tf.int64))


def _chunks(size):
    """How many pieces the weight gradient of a `size`-entry kernel is cut into.

    A number fixed at trace time (the active count is not), so the pieces
    are separate ops the executor runs in parallel, without a loop: one per
    2**18 kernel entries (about 5k active weights a piece at 98%), at most
    64. A `tf.map_fn` over fixed-size pieces measured 2-3x slower.
    """
    return int(min(max(size // 2**18, 1), 64))


def _active_weight_gradient(x, dy, positions, pieces):
    """`sum_b x[b, i] dy[b, j]` for each active (i, j), in `pieces` parts.

    Gathering whole rows for every active weight at once would write
    `nnz x batch` floats twice (345 MB at 98% on a 4096 x 4096 kernel,
    batch 128): memory-bound. In parts, each intermediate stays a few MB.
    """
    rows = tf.cast(positions[:, 0], tf.int32)
    cols = tf.cast(positions[:, 1], tf.int32)
    n = tf.shape(rows)[0]
    size = (n + pieces - 1) // pieces
    pad = pieces * size - n
    rows = tf.reshape(tf.pad(rows, [[0, pad]]), [pieces, -1])
    cols = tf.reshape(tf.pad(cols, [[0, pad]]), [pieces, -1])
    x_t, dy_t = tf.transpose(x), tf.transpose(dy)
    values = [tf.reduce_sum(tf.gather(x_t, rows[k]) * tf.gather(dy_t, cols[k]), 1)
              for k in range(pieces)]
    return tf.reshape(tf.stack(values), [-1])[:n]


def sparse_matmul(x, kernel, positions, weight_gradient="active", dense_weight_gradient=None,
                  mask=None):
    """`x @ kernel` from the active entries of `kernel` only.

    Args:
        x: float32 `[batch, n_in]`.
        kernel: float32 `[n_in, units]`; entries outside `positions` are
            not read (the caller keeps them at 0).
        positions: `active_positions(mask)` of the kernel's mask.
        weight_gradient: "active" (the kernel's gradient is computed at
            `positions` only and is exactly 0 elsewhere) or "dense" (`x^T @
            dy` everywhere).
        dense_weight_gradient: `None`, or a boolean tensor: where true, the
            kernel's gradient is the dense `x^T @ dy` whatever
            `weight_gradient` says.
        mask: `None`, or the kernel's mask: a dense weight gradient is then
            masked (by selection: 0 wherever `mask` is 0, even where the
            product is Inf or NaN), as the gradient of `x @ (kernel * mask)`
            with respect to `kernel` is.

    Returns:
        `[batch, units]`, with gradients for `x` and for `kernel`.

    Example:

    ```python
    positions = active_positions(mask)
    y = sparse_matmul(x, kernel, positions)   # == x @ (kernel * mask)
    ```
    """
    n_in, units = kernel.shape[0], kernel.shape[1]
    shape = [n_in, units]
    # Position of each active weight in the flattened kernel (ascending).
    flat = positions[:, 0] * units + positions[:, 1]

    @tf.custom_gradient
    def product(x, kernel):
        csr = _csr(tf.gather(tf.reshape(kernel, [-1]), flat), positions, shape)
        # y^T = W^T @ x^T
        y = tf.raw_ops.SparseMatrixMatMul(
            a=csr, b=x, transpose_a=True, transpose_b=True, transpose_output=True)

        def grad(dy):
            # dx^T = W @ dy^T
            dx = tf.raw_ops.SparseMatrixMatMul(
                a=csr, b=dy, transpose_b=True, transpose_output=True)

            def active():
                values = _active_weight_gradient(x, dy, positions, _chunks(n_in * units))
                return tf.raw_ops.CSRSparseMatrixToDense(
                    sparse_input=_csr(values, positions, shape), type=values.dtype)

            def dense():
                full = tf.matmul(x, dy, transpose_a=True)
                if mask is None:
                    return full
                return tf.math.multiply_no_nan(full, tf.cast(mask, full.dtype))

            if weight_gradient == "dense":
                return dx, dense()
            static = None if dense_weight_gradient is None else tf.get_static_value(
                dense_weight_gradient)
            if dense_weight_gradient is None or static is not None:
                return dx, dense() if static else active()
            return dx, tf.cond(dense_weight_gradient, dense, active)

        return y, grad

    return product(x, kernel)


def values_matmul(x, values, positions, shape, weight_gradient="dense", kernel=None,
                  dense_weight_gradient=None):
    """`x @ W` for the `W` whose active entries are `values` at `positions`.

    The product of `SparseDense(compute="sparse")` when the layer trains a
    vector of values (`value_storage`): the gradient goes to `values`.

    Args:
        x: float32 `[batch, n_in]`.
        values: float32 `[capacity]`; the first `len(positions)` entries are
            the active weights in `positions` order, the rest padding
            (its gradient is 0).
        positions: int64 `[count, 2]`, row-major (`active_positions`).
        shape: `[n_in, units]`.
        weight_gradient: "dense": the values' gradient is read out of the
            dense `x^T @ dy`; "active": computed at the active positions
            only (see `sparse_matmul`).
        kernel: `None`, or the kernel variable's value: it then also gets a
            gradient, the dense `x^T @ dy` (`dL/d(W*M)`, for growth rules).
            With "active", only on the steps where `dense_weight_gradient`
            (a boolean tensor) is true, zeros on the others.
        dense_weight_gradient: see `kernel`.

    Returns:
        `[batch, units]`, with gradients for `x`, `values` (and `kernel`).

    Example:

    ```python
    y = values_matmul(x, values, positions, [784, 300])
    ```
    """
    count = tf.shape(positions)[0]
    capacity = tf.shape(values)[0]
    pieces = _chunks(shape[0] * shape[1])

    def product(x, values, *kernel_arg):
        csr = _csr(values[:count], positions, shape)
        y = tf.raw_ops.SparseMatrixMatMul(
            a=csr, b=x, transpose_a=True, transpose_b=True, transpose_output=True)

        def grad(dy):
            dx = tf.raw_ops.SparseMatrixMatMul(
                a=csr, b=dy, transpose_b=True, transpose_output=True)
            pad = [[0, capacity - count]]

            def full():
                return tf.matmul(x, dy, transpose_a=True)

            if weight_gradient == "dense":
                dense = full()
                dvalues = tf.gather_nd(dense, positions)
            else:
                dvalues = _active_weight_gradient(x, dy, positions, pieces)
                if kernel_arg:
                    when = (tf.constant(True) if dense_weight_gradient is None
                            else dense_weight_gradient)
                    dense = tf.cond(when, full, lambda: tf.zeros(shape, dy.dtype))
            grads = (dx, tf.pad(dvalues, pad))
            return grads + ((dense,) if kernel_arg else ())

        return y, grad

    args = (x, values) + (() if kernel is None else (kernel,))
    return tf.custom_gradient(product)(*args)
