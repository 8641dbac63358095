"""The examples data-driven pruning scores are computed on.

`data` arguments of `ks.pruning` take a batched `tf.data.Dataset` of
`(x, y)` or an `(x, y)` tuple of arrays; these helpers take the examples a
score needs from either.
"""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["check_data", "examples_per_class", "first_examples", "labels_of", "rows", "size"]


def check_data(data, who):
    """Raises a ValueError if `data` is None (a data-driven method needs it)."""
    if data is None:
        raise ValueError(
            f"{who}: `data` must be a batched tf.data.Dataset of (x, y) or an "
            "(x, y) tuple of arrays; got None."
        )
    return data


def _batches(data, who):
    """`(x, y)` batches of a batched `tf.data.Dataset` or an `(x, y)` tuple."""
    if isinstance(data, tf.data.Dataset):
        for batch in data:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
            yield x, y
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        yield data[0], data[1]
    else:
        raise TypeError(
            f"{who}: `data` must be a batched tf.data.Dataset of (x, y) or an "
            f"(x, y) tuple of arrays; got {type(data).__name__}."
        )


def size(x):
    """Number of examples in `x` (an array or a structure of arrays)."""
    return int(tf.nest.flatten(x)[0].shape[0])


def rows(x, index):
    """Rows `index` (a slice or integer array) of every array in `x`."""
    def take(a):
        if isinstance(a, np.ndarray) or isinstance(index, slice):
            return a[index]
        return tf.gather(a, index)

    return tf.nest.map_structure(take, x)


def _concat(parts, who):
    if not parts:
        raise ValueError(f"{who}: `data` holds no examples; pass at least one (x, y) batch.")
    return tf.nest.map_structure(lambda *a: tf.concat(a, axis=0), *parts)


def first_examples(data, count, who):
    """The first `count` examples of `data` (fewer if it has fewer)."""
    xs, ys, taken = [], [], 0
    for x, y in _batches(data, who):
        part = slice(0, min(size(x), count - taken))
        xs.append(rows(x, part))
        ys.append(rows(y, part))
        taken += part.stop
        if taken >= count:
            break
    xs = [x for x in xs if size(x)]
    ys = [y for y in ys if size(y)]
    return _concat(xs, who), _concat(ys, who)


def labels_of(y):
    """Integer class labels from sparse or one-hot targets."""
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return y.argmax(axis=-1).reshape(-1)
    return y.reshape(-1).astype(np.int64)


def examples_per_class(data, per_class, num_classes, who):
    """Up to `per_class` examples of each class, in data order."""
    counts = np.zeros(num_classes, dtype=np.int64)
    xs, ys, seen = [], [], 0
    for x, y in _batches(data, who):
        labels = labels_of(y)
        picked = []
        for c in range(num_classes):
            found = np.flatnonzero(labels == c)[: per_class - counts[c]]
            counts[c] += len(found)
            picked.append(found)
        picked = np.sort(np.concatenate(picked))
        if len(picked):
            xs.append(rows(x, picked))
            ys.append(rows(y, picked))
        seen += len(labels)
        # A repeated dataset that lacks a class would never fill it.
        if counts.min() >= per_class or seen >= 100 * per_class * num_classes:
            break
    return _concat(xs, who), _concat(ys, who)
