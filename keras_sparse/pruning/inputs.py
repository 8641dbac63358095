"""The examples, loss and model state that data-driven pruning scores use."""

import contextlib
import numbers

import keras
import numpy as np
import tensorflow as tf


def check_data(data, who):
    if data is None:
        raise ValueError(
            f"{who}: `data` must be a batched tf.data.Dataset of (x, y) or an "
            "(x, y) tuple of arrays; got None."
        )
    return data


def check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    return int(value)


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


def loss_function(model, loss):
    """`fn(x, y, y_pred) -> scalar`: `loss`, else the compiled loss, else SCCE.

    The compiled loss is `model.compute_loss` (regularization losses
    included); the default is sparse categorical cross-entropy from logits.
    """
    if loss is not None:
        loss = keras.losses.get(loss)
        return lambda x, y, y_pred: tf.reduce_mean(loss(y, y_pred))
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return lambda x, y, y_pred: model.compute_loss(x=x, y=y, y_pred=y_pred)
    default = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return lambda x, y, y_pred: default(y, y_pred)


def scored_variables(model):
    """The raw prunable variables (tf.Variables) of `model`, watched by tapes."""
    return [mw.weight.value for mw in model.masked_weights]


def dense_grads(grads, model):
    """Gradients with `None` (weights the output does not use) as zeros."""
    return [
        tf.zeros(mw.weight.shape, mw.weight.dtype) if g is None else g
        for g, mw in zip(grads, model.masked_weights)
    ]


@contextlib.contextmanager
def state_restored(model):
    """Restores non-trainable state (BatchNorm statistics, RNG seeds) on exit.

    Scores are computed with `training=True`, which moves BatchNorm moving
    statistics; masks are excluded, the caller changes them.
    """
    masks = {id(mw.mask) for mw in model.masked_weights}
    saved = [(v, tf.identity(v.value)) for v in model.non_trainable_variables
             if id(v) not in masks]
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)
