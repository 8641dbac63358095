"""The products of `SparseDense(compute="sparse")`, with TensorFlow's own ops.

`y = x @ W` for a kernel `W` (`[n_in, units]`) of which only the entries at
`positions` are active (the others are exactly 0), computed from those
entries alone:

- forward `y^T = W^T @ x^T`: a CSR matrix of `W^T`, whose indices (the
  `Layout`) are sorted once per mask change; per step only the values are
  gathered into that order and wrapped (`SparseTensorToCSRSparseMatrix` is
  TensorFlow's only way to make a CSR matrix; from sorted indices it is one
  pass). The CSR product with `transpose_a=True` measured 2-5x slower:
  on CPU it zeroes and sums one copy of the output per thread;
- input gradient `dx^T = W @ dy^T`: a CSR matrix of `W` (row-major order);
- weight gradient, `"active"`: only at the active positions (`sddmm`),
  exactly 0 elsewhere; `"dense"`: `x^T @ dy` at every position; `"auto"`:
  "active" up to `SDDMM_MAX_DENSITY`, "dense" above it.

`python -m benchmarks.sparse_training_kernels` times each product alone.
The CSR ops have no XLA kernels, so this path is not `jit_compile`d.

`values_matmul` is the same product for a layer that trains a vector of
its active weights (`value_storage`): the gradient goes to that vector.

On request (`dense_weight_gradient`, a boolean tensor) the weight gradient
is the dense `x^T @ dy`: the gradient `dL/d(W*M)` a dense weight would
receive, which growth rules (RigL, DST-EE) read at inactive positions.
"""

import collections

import tensorflow as tf

from keras_sparse.layers import inplace
from keras_sparse.layers.sddmm import pieces_for, sddmm

__all__ = ["WEIGHT_GRADIENTS", "Layout", "active_positions", "layout", "sparse_matmul",
           "values_matmul"]

WEIGHT_GRADIENTS = ("auto", "active", "dense")
# "auto" computes the weight gradient by SDDMM at densities up to this; above
# it the dense x^T @ dy is faster (its cost does not depend on the density;
# the SDDMM's grows with it). Break-even measured on 2 CPU cores for a 4096
# x 4096 kernel at batch 128 (`benchmarks.sparse_training_kernels`; with
# the compiled pieces, dense time over SDDMM time: 1.06x [0.88-1.28] at 97%
# sparsity, 0.69x at 95%, 0.45x at 93%).
SDDMM_MAX_DENSITY = 0.03

Layout = collections.namedtuple("Layout", ["positions", "t_positions", "order"])
Layout.__doc__ = """A mask's active positions, in the orders the products read.

- `positions`: int64 `[nnz, 2]` (row, column), row-major: the order of
  the values;
- `t_positions`: int64 `[nnz, 2]` (column, row) in row-major order of
  `W^T`: the CSR of `W^T`;
- `order`: int32 `[nnz]`, `t_positions[k] == reverse(positions[order[k]])`.
"""


def active_positions(mask):
    """`int64 [nnz, 2]` (row, column) of the nonzeros of `mask`, row-major.

    The order `SparseTensorToCSRSparseMatrix` expects.

    Example:

    >>> active_positions(tf.constant([[1.0, 0.0], [1.0, 1.0]])).numpy().tolist()
    [[0, 0], [1, 0], [1, 1]]
    """
    return tf.where(mask > 0)


def layout(positions, n_in):
    """The `Layout` of row-major `positions` in a kernel of `n_in` rows.

    One sort (run once per mask change, not per step); two scans of the
    mask and a binary search per position measured slower.

    Example:

    >>> lay = layout(tf.constant([[0, 1], [1, 0], [1, 1]], tf.int64), 2)
    >>> lay.t_positions.numpy().tolist(), lay.order.numpy().tolist()
    ([[0, 1], [1, 0], [1, 1]], [1, 0, 2])
    """
    positions = tf.convert_to_tensor(positions, tf.int64)
    order = tf.argsort(positions[:, 1] * n_in + positions[:, 0], stable=True)
    return Layout(positions, tf.gather(tf.reverse(positions, [1]), order), order)


def _as_layout(positions, n_in):
    return positions if isinstance(positions, Layout) else layout(positions, n_in)


def _csr(values, positions, shape):
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=positions, values=values, dense_shape=tf.constant(shape, tf.int64))


def _forward(x, values, lay, shape, t_values=None):
    """`(x @ W, input_gradient(dy))` for `W` given by `values` in `lay.positions` order
    (`t_values`: the same in `lay.t_positions` order, if already read)."""
    n_in, units = shape
    if t_values is None:
        t_values = tf.gather(values, lay.order)
    transposed = _csr(t_values, lay.t_positions, [units, n_in])
    y = tf.raw_ops.SparseMatrixMatMul(a=transposed, b=x, transpose_b=True,
                                      transpose_output=True)

    def input_gradient(dy):
        csr = _csr(values, lay.positions, shape)
        return tf.raw_ops.SparseMatrixMatMul(a=csr, b=dy, transpose_b=True,
                                             transpose_output=True)

    return y, input_gradient


def _sddmm_wins(count, shape):
    """Whether "auto" takes the SDDMM for `count` active weights (int or tensor)."""
    limit = int(SDDMM_MAX_DENSITY * shape[0] * shape[1])
    return count <= limit if isinstance(count, int) else tf.less_equal(count, limit)


def _active_gradient(x, dy, lay, shape):
    return sddmm(x, dy, lay.positions[:, 0], lay.positions[:, 1], pieces_for(shape[0] * shape[1]))


def sparse_matmul(x, kernel, positions, weight_gradient="active", dense_weight_gradient=None,
                  mask=None):
    """`x @ kernel` from the active entries of `kernel` only.

    Args:
        x: float32 `[batch, n_in]`.
        kernel: float32 `[n_in, units]`; entries outside `positions` are
            not read (the caller keeps them at 0).
        positions: `active_positions(mask)` of the kernel's mask, or its
            `layout` (cached by the caller across steps).
        weight_gradient: "active" (the kernel's gradient is computed at
            `positions` only and is exactly 0 elsewhere), "dense" (`x^T @
            dy` everywhere) or "auto" (either, by the active count).
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
    shape = [kernel.shape[0], kernel.shape[1]]
    lay = _as_layout(positions, shape[0])
    # Position of each active weight in the flattened kernel (ascending).
    flat = lay.positions[:, 0] * shape[1] + lay.positions[:, 1]

    @tf.custom_gradient
    def product(x, kernel):
        y, input_gradient = _forward(x, tf.gather(tf.reshape(kernel, [-1]), flat), lay, shape)

        def grad(dy):
            def active():
                return tf.scatter_nd(lay.positions, _active_gradient(x, dy, lay, shape), shape)

            def dense():
                full = tf.matmul(x, dy, transpose_a=True)
                if mask is None:
                    return full
                return tf.math.multiply_no_nan(full, tf.cast(mask, full.dtype))

            def sampled():
                if weight_gradient == "active":
                    return active()
                wins = _sddmm_wins(tf.shape(lay.positions)[0], shape)
                return tf.cond(wins, active, dense)

            dx = input_gradient(dy)
            if weight_gradient == "dense":
                return dx, dense()
            static = None if dense_weight_gradient is None else tf.get_static_value(
                dense_weight_gradient)
            if dense_weight_gradient is None or static is not None:
                return dx, dense() if static else sampled()
            return dx, tf.cond(dense_weight_gradient, dense, sampled)

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
        positions: int64 `[count, 2]`, row-major (`active_positions`), or
            their `layout`.
        shape: `[n_in, units]`.
        weight_gradient: "dense": the values' gradient is read out of the
            dense `x^T @ dy`; "active": computed at the active positions
            only (`sddmm`); "auto": "active" when `values` holds at most
            `SDDMM_MAX_DENSITY` of the kernel, else "dense".
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
    lay = _as_layout(positions, shape[0])
    count = tf.shape(lay.positions)[0]
    capacity = tf.shape(values)[0]
    if weight_gradient == "auto":  # the capacity bounds the count and is static
        weight_gradient = "active" if _sddmm_wins(int(values.shape[0]), shape) else "dense"

    def product(x, values, *kernel_arg):
        # A compiled gather from the whole vector, whose length is static.
        t_values = inplace.get_entries(values, lay.order, values.shape[0])
        y, input_gradient = _forward(x, values[:count], lay, shape, t_values)

        def grad(dy):
            pad = [[0, capacity - count]]

            def full():
                return tf.matmul(x, dy, transpose_a=True)

            if weight_gradient == "dense":
                dense = full()
                dvalues = tf.gather_nd(dense, lay.positions)
            else:
                dvalues = _active_gradient(x, dy, lay, shape)
                if kernel_arg:
                    when = (tf.constant(True) if dense_weight_gradient is None
                            else dense_weight_gradient)
                    dense = tf.cond(when, full, lambda: tf.zeros(shape, dy.dtype))
            grads = (input_gradient(dy), tf.pad(dvalues, pad))
            return grads + ((dense,) if kernel_arg else ())

        return y, grad

    args = (x, values) + (() if kernel is None else (kernel,))
    return tf.custom_gradient(product)(*args)
