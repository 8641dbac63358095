"""The weight gradient at the active positions only: a sampled dense-dense product.

`sddmm(x, dy, rows, cols)[k] = sum_b x[b, rows[k]] * dy[b, cols[k]]`: the
entries of `x^T @ dy` at the `nnz` active positions of a kernel, with
`nnz * batch` multiply-adds instead of `n_in * units * batch`.

TensorFlow has no SDDMM op, so it is gathered rows multiplied and summed.
Gathering all rows at once writes `nnz x batch` floats twice (345 MB at 98%
on a 4096 x 4096 kernel, batch 128), so the product runs in `pieces` parts
whose intermediates stay a few MB; the parts are separate ops the executor
runs in parallel. With more than one piece, each piece is one small
function compiled by XLA (`jit_compile=True`), which fuses the gathers, the
product and the sum so that no intermediate is written: measured 1.8x
faster than the same pieces as TensorFlow ops on 2 CPU cores, where the
whole product compiled as one XLA function measured 4-12x slower (XLA does
not parallelize one gather-reduce; the executor runs the pieces side by
side). `python -m benchmarks.sparse_training_kernels` times each form
against the dense `x^T @ dy`. A piece's length is rounded up (to within
1/8) so that XLA compiles a few shapes however the active count moves.
"""

import tensorflow as tf

__all__ = ["pieces_for", "sddmm"]

# Kernel entries per piece: about 5k active weights a piece at 98%.
_ENTRIES_PER_PIECE = 2**18
_MAX_PIECES = 64


def pieces_for(size):
    """How many parts the product for a `size`-entry kernel is cut into.

    Fixed at trace time (the active count is not), so the parts are
    separate ops without a loop; a `tf.map_fn` over them measured 2-3x
    slower.

    Example:

    >>> pieces_for(784 * 300), pieces_for(4096 * 4096)
    (1, 64)
    """
    return int(min(max(size // _ENTRIES_PER_PIECE, 1), _MAX_PIECES))


def sddmm(x, dy, rows, cols, pieces=1):
    """`sum_b x[b, rows[k]] * dy[b, cols[k]]` for each `k`, in `pieces` parts.

    Args:
        x: float `[batch, n_in]`.
        dy: float `[batch, units]`.
        rows, cols: int32/int64 `[nnz]`, the active positions.
        pieces: int >= 1, fixed at trace time (see `pieces_for`).

    Returns:
        `[nnz]`, in the order of `rows` and `cols` (empty when `nnz` is 0).

    Example:

    ```python
    dvalues = sddmm(x, dy, positions[:, 0], positions[:, 1])
    # == tf.gather_nd(tf.transpose(x) @ dy, positions)
    ```
    """
    rows, cols = tf.cast(rows, tf.int32), tf.cast(cols, tf.int32)
    x_t, dy_t = tf.transpose(x), tf.transpose(dy)
    if pieces == 1:
        return _product(x_t, dy_t, rows, cols)
    n = tf.shape(rows)[0]
    size = _rounded_up((n + pieces - 1) // pieces)
    pad = pieces * size - n  # padding reads row/column 0, then is cut off
    rows = tf.reshape(tf.pad(rows, [[0, pad]]), [pieces, -1])
    cols = tf.reshape(tf.pad(cols, [[0, pad]]), [pieces, -1])
    parts = [_compiled_product(x_t, dy_t, rows[k], cols[k]) for k in range(pieces)]
    return tf.reshape(tf.stack(parts), [-1])[:n]


def _product(x_t, dy_t, rows, cols):
    return tf.reduce_sum(tf.gather(x_t, rows) * tf.gather(dy_t, cols), 1)


_compiled_product = tf.function(_product, jit_compile=True, autograph=False)


def _rounded_up(size):
    """`size` (int32 scalar tensor) rounded up to 8 steps per power of two,
    at least 1024: XLA compiles one shape per value."""
    size = tf.maximum(size, 1024)
    step = tf.bitwise.left_shift(1, tf.cast(tf.math.floor(
        tf.math.log(tf.cast(size, tf.float32)) / tf.math.log(2.0)), tf.int32) - 3)
    return (size + step - 1) // step * step
