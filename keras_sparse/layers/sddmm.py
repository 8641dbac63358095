"""The weight gradient at the active positions only: a sampled dense-dense product.

`sddmm(x, dy, rows, cols)[k] = sum_b x[b, rows[k]] * dy[b, cols[k]]`: the
entries of `x^T @ dy` at the `nnz` active positions of a kernel, with
`nnz * batch` multiply-adds instead of `n_in * units * batch`.

TensorFlow has no SDDMM op, so it is gathered rows multiplied and summed.
Gathering all rows at once writes `nnz x batch` floats twice (345 MB at 98%
on a 4096 x 4096 kernel, batch 128), so the product runs in `pieces` parts
whose intermediates stay a few MB; the parts are separate ops the executor
runs in parallel. `python -m benchmarks.sparse_training_kernels` times it
against the dense `x^T @ dy` and against the same product compiled by XLA
(`jit_compile=True`), which measured 4-12x slower on 2 CPU cores (it does not
parallelize the gather-reduce).
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
        return tf.reduce_sum(tf.gather(x_t, rows) * tf.gather(dy_t, cols), 1)
    n = tf.shape(rows)[0]
    size = (n + pieces - 1) // pieces
    pad = pieces * size - n  # padding reads row/column 0, then is cut off
    rows = tf.reshape(tf.pad(rows, [[0, pad]]), [pieces, -1])
    cols = tf.reshape(tf.pad(cols, [[0, pad]]), [pieces, -1])
    parts = [tf.reduce_sum(tf.gather(x_t, rows[k]) * tf.gather(dy_t, cols[k]), 1)
             for k in range(pieces)]
    return tf.reshape(tf.stack(parts), [-1])[:n]
