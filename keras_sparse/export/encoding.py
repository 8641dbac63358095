"""Compact storage of a sparse kernel's positions, decoded once at load.

The nonzeros of `W^T` (`units x input_dim`, one row per output unit) are
kept in row-major order; their positions are stored in one of two forms,
whichever takes fewer bytes:

- `"delta8"`: one uint8 per nonzero, the gap to the previous nonzero in the
  flattened matrix minus one; a gap of 255 or more is written as escape
  bytes (255 = "skip 255 positions, no value here") before the remainder.
  At 2% density the mean gap is 50, so escapes are rare (0.6% of gaps) and
  positions cost about 1 byte per nonzero: values plus positions take about
  1.25x density x the dense kernel's bytes, close to the entropy limit.
- `"uint16"`: column indices as uint16 (inputs below 65,536) plus int32
  row pointers: 2 bytes per nonzero, better only at extreme sparsity where
  gaps of 255+ are common.

`decode` turns either form back into int64 `(rows, cols)` with TensorFlow
ops only, so a SavedModel can run it at load (see `kernels.LoadTimeTensor`).
"""

import numpy as np
import tensorflow as tf

INDEX_FORMATS = ("delta8", "uint16")
ESCAPE = 255


def nonzeros(kernel):
    """`(rows, cols, values)` of `kernel^T`, row-major (numpy).

    Args:
        kernel: a 2-D array `input_dim x units`.

    Example:

    ```python
    rows, cols, values = nonzeros(np.eye(3, dtype="float32"))
    ```
    """
    transposed = np.asarray(kernel).T
    rows, cols = np.nonzero(transposed)
    return rows, cols, transposed[rows, cols]


def encode_delta8(rows, cols, input_dim):
    """uint8 gap codes with escapes for row-major positions `(rows, cols)`."""
    flat = np.asarray(rows, np.int64) * int(input_dim) + np.asarray(cols, np.int64)
    gaps = np.diff(np.concatenate([[-1], flat])) - 1  # >= 0 for sorted unique positions
    escapes, remainder = np.divmod(gaps, ESCAPE)
    ends = np.cumsum(escapes + 1) - 1  # where each remainder goes
    codes = np.full(int(ends[-1]) + 1 if len(ends) else 0, ESCAPE, np.uint8)
    codes[ends] = remainder
    return {"index_codes": codes}


def encode_uint16(rows, cols, units, input_dim):
    """uint16 column indices and int32 row pointers; needs `input_dim` < 65,536."""
    if input_dim >= 2**16:
        raise ValueError(f"uint16 indices need input_dim < 65536; got {input_dim}.")
    counts = np.bincount(np.asarray(rows, np.int64), minlength=int(units))
    row_ptrs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return {"index_cols": np.asarray(cols, np.uint16), "index_row_ptrs": row_ptrs}


def encode(rows, cols, units, input_dim, index_format=None):
    """`(index_format, {name: array})`, the smaller form unless one is named.

    Example:

    ```python
    fmt, arrays = encode(rows, cols, units=4096, input_dim=784)
    ```
    """
    if index_format not in (None,) + INDEX_FORMATS:
        raise ValueError(f"`index_format` must be one of {INDEX_FORMATS} or None; "
                         f"got {index_format!r}.")
    forms = {"delta8": encode_delta8(rows, cols, input_dim)}
    if input_dim < 2**16:
        forms["uint16"] = encode_uint16(rows, cols, units, input_dim)
    if index_format is not None:
        return index_format, forms[index_format]
    best = min(forms, key=lambda f: sum(a.nbytes for a in forms[f].values()))
    return best, forms[best]


def decode(index_format, arrays, units, input_dim):
    """int64 `(rows, cols)` of the nonzeros, from `encode`'s arrays (TF ops).

    Args:
        index_format: "delta8" or "uint16".
        arrays: `{name: tensor}` as written by `encode`.
        units, input_dim: the shape of `W^T`.
    """
    if index_format == "delta8":
        codes = tf.cast(arrays["index_codes"], tf.int64)
        steps = tf.where(codes == ESCAPE, tf.constant(ESCAPE, tf.int64), codes + 1)
        flat = tf.boolean_mask(tf.cumsum(steps) - 1, codes != ESCAPE)
        return flat // input_dim, flat % input_dim
    if index_format == "uint16":
        row_ptrs = tf.cast(arrays["index_row_ptrs"], tf.int64)
        rows = tf.repeat(tf.range(units, dtype=tf.int64), row_ptrs[1:] - row_ptrs[:-1])
        return rows, tf.cast(arrays["index_cols"], tf.int64)
    raise ValueError(f"unknown index format {index_format!r}; known: {INDEX_FORMATS}.")
