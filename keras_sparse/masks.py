"""Exact-count mask construction shared by every mask rule."""

import math

import numpy as np
import tensorflow as tf


def num_inactive(size, sparsity):
    """`round(sparsity * size)`, halves rounded up (SPEC §3.1)."""
    return int(math.floor(sparsity * size + 0.5))


def check_sparsity(sparsity, name="sparsity"):
    """Raises unless `0 <= sparsity < 1`; returns it as a float."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number in [0, 1); got {sparsity!r}.")
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise ValueError(f"`{name}` must be in [0, 1); got {sparsity!r}.")
    return value


def topk_mask(scores, num_active):
    """Binary mask with ones at the `num_active` largest `scores`.

    Exactly `num_active` ones whatever the ties (top_k breaks ties by lower
    flat index, so the result is deterministic). Works in graph mode.
    """
    flat = tf.reshape(scores, [-1])
    _, indices = tf.math.top_k(flat, k=num_active, sorted=False)
    ones = tf.ones_like(indices, dtype=tf.float32)
    mask = tf.scatter_nd(indices[:, None], ones, tf.shape(flat, out_type=tf.int32))
    return tf.reshape(mask, tf.shape(scores))


def stateless_uniform(shape, seed, step, index):
    """Uniform [0, 1) noise keyed by (seed, step, layer index) (SPEC §3.5)."""
    key = tf.stack(
        [
            tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(index, tf.int64),
            tf.cast(step, tf.int64),
        ]
    )
    return tf.random.stateless_uniform(shape, seed=key, dtype=tf.float32)


def random_mask(shape, sparsity, seed=0, index=0):
    """Exactly `round(sparsity * size)` zeros placed uniformly at random."""
    size = int(np.prod(shape))
    scores = stateless_uniform(shape, seed, 0, index)
    return topk_mask(scores, size - num_inactive(size, sparsity))


def magnitude_mask(weight, sparsity):
    """Keeps the largest `abs(weight)`; exactly `round(s * n)` zeros."""
    size = int(np.prod(weight.shape))
    return topk_mask(tf.abs(tf.convert_to_tensor(weight)), size - num_inactive(size, sparsity))


def check_mask(mask, shape, name):
    """Validates a user mask: right shape, values only 0 and 1."""
    array = np.asarray(mask)
    if tuple(array.shape) != tuple(shape):
        raise ValueError(
            f"Mask for {name!r} has shape {tuple(array.shape)}; "
            f"expected {tuple(shape)}."
        )
    if not np.all((array == 0) | (array == 1)):
        bad = array[(array != 0) & (array != 1)].ravel()[:3]
        raise ValueError(
            f"Mask for {name!r} must contain only 0 and 1; found {bad.tolist()}."
        )
    return array
