"""Exact-count mask construction shared by every mask rule.

Every rule keeps exactly `round(s * n)` weights inactive for a target
sparsity `s` of `n` weights, halves rounded up (rigl and Synaptic-Flow take
the floor; the difference is at most one weight per layer). Ties are broken
deterministically, so a mask computed twice, or on several replicas, is the
same.
"""

import math
import warnings

import numpy as np
import tensorflow as tf

__all__ = [
    "check_mask",
    "largest_mask",
    "lowest_mask",
    "num_inactive",
    "stateless_uniform",
    "topk_mask",
    "topk_masks_global",
    "warn_non_finite",
]


def num_inactive(size, sparsity):
    """`round(sparsity * size)`, halves rounded up: the exact count of zeros.

    Example:

    >>> num_inactive(10, 0.25)
    3
    """
    return int(math.floor(sparsity * size + 0.5))


def topk_mask(scores, num_active):
    """Binary mask with ones at the `num_active` largest `scores`.

    Exactly `num_active` ones whatever the ties (top_k breaks ties by lower
    flat index, so the result is deterministic). Works in graph mode.

    Args:
        scores: a float tensor of any shape.
        num_active: number of ones (int or int32 tensor), `<= size`.

    Returns:
        A float32 tensor of `scores`' shape holding 0 and 1.

    Example:

    >>> topk_mask(tf.constant([0.3, 0.9, 0.1]), 2).numpy()
    array([1., 1., 0.], dtype=float32)
    """
    flat = tf.reshape(scores, [-1])
    _, indices = tf.math.top_k(flat, k=num_active, sorted=False)
    ones = tf.ones_like(indices, dtype=tf.float32)
    mask = tf.scatter_nd(indices[:, None], ones, tf.shape(flat, out_type=tf.int32))
    return tf.reshape(mask, tf.shape(scores))


# `largest_mask` hands tensors smaller than this to `top_k`, which is faster
# there; above it the radix select wins (about 3x at 235,200 weights).
RADIX_MIN_SIZE = 1 << 16
_BINS = 1 << 16
# A selection of at most this share of a tensor (a round's drop or growth)
# first reads a threshold off a sample of `_SAMPLE` scores.
_FEW = 8
_SAMPLE = 1 << 14


def largest_mask(scores, num_active):
    """The mask of `topk_mask`, found in linear time on large tensors.

    Same result as `topk_mask(scores, num_active)` (exactly `num_active`
    ones, at the largest scores, ties to the lower flat index; -0.0 equals
    0.0), but for tensors of `RADIX_MIN_SIZE` entries or more it avoids
    `top_k`, whose CPU kernel sorts when `num_active` is a large share of
    the tensor (gradual pruning keeps 10-100% of each layer):

    - for a few (at most 1/8 of the entries, as a drop-and-grow round
      picks), a threshold is read off a fixed sample of the scores, set so
      that a little more than `num_active` entries score above it; the
      surplus among those candidates is removed by one small `top_k`;
    - otherwise, or when the sample misjudged, it finds the
      `num_active`-th largest value with a two-pass radix select on the
      float bits (two 65,536-bin histograms), then keeps everything above
      it and the lowest-index ties.

    Works in graph mode.

    Args:
        scores: a float tensor of any shape, without NaN (checked by the
            callers, which skip an update on NaN or Inf scores).
        num_active: number of ones (int or int32 tensor), `<= size`.

    Returns:
        A float32 tensor of `scores`' shape holding 0 and 1.

    Example:

    >>> largest_mask(tf.constant([0.3, 0.9, 0.1, 0.9]), 2).numpy()
    array([0., 1., 0., 1.], dtype=float32)
    """
    scores = tf.convert_to_tensor(scores)
    size = scores.shape.num_elements()
    if size is not None and size < RADIX_MIN_SIZE:
        return topk_mask(scores, num_active)
    flat = tf.reshape(tf.cast(scores, tf.float32), [-1])
    num_active = tf.cast(num_active, tf.int32)
    if size is None:
        keep = _largest_radix(flat, num_active)
    else:
        keep = tf.cond(tf.cast(num_active, tf.int64) * _FEW <= size,  # no int32 overflow
                       lambda: _largest_sampled(flat, num_active),
                       lambda: _largest_radix(flat, num_active))
    return tf.reshape(keep, tf.shape(scores))


def _sample_positions(size):
    """A fixed random sample of flat positions, ascending (memory is read in order)."""
    rng = np.random.default_rng(size)
    return np.sort(rng.choice(size, min(_SAMPLE, size), replace=False)).astype(np.int32)


def _largest_sampled(flat, num_active):
    """`largest_mask` of a few: candidates above a sampled threshold (graph code)."""
    size = flat.shape.num_elements()
    at = _sample_positions(size)
    sample = tf.gather(flat, at)
    # How many of the sample rank among the `num_active` largest, plus a
    # margin of three standard deviations and 5%: short only by bad luck.
    expected = tf.cast(num_active, tf.float32) * (len(at) / size)
    rank = tf.cast(tf.math.ceil(1.05 * expected + 3.0 * tf.sqrt(expected) + 8.0), tf.int32)
    rank = tf.minimum(rank, len(at))
    threshold = tf.reduce_min(tf.math.top_k(sample, rank, sorted=False).values)
    candidates = tf.where(flat > threshold)[:, 0]
    surplus = tf.size(candidates) - num_active

    def pick():
        # The last `surplus` candidates in the dense ranking: the lowest
        # scores, of equal ones the higher index (reversed, the lower).
        values = tf.gather(flat, candidates)
        _, last = tf.math.top_k(tf.reverse(-values, [0]), surplus, sorted=False)
        last = tf.size(candidates) - 1 - last
        keep = tf.tensor_scatter_nd_update(
            tf.ones_like(values), last[:, None], tf.zeros_like(last, tf.float32))
        return tf.scatter_nd(candidates[:, None], keep, tf.shape(flat, out_type=tf.int64))

    # Too few above the threshold (the sample misjudged, or ties at it), or
    # so many that the small top_k would not be small: the radix select.
    fits = (surplus >= 0) & (surplus <= tf.maximum(num_active, 1024))
    return tf.cond(fits, pick, lambda: _largest_radix(flat, num_active))


def _largest_radix(flat, num_active):
    """`largest_mask` by a radix select on the float bits (graph code)."""
    bits = tf.bitcast(flat, tf.int32)
    # An int32 key in the floats' order: -|bits| for negatives, so that
    # -0.0 and 0.0 (equal for top_k) share the key 0.
    key = tf.where(bits < 0, tf.int32.min - bits, bits)

    # The highest bin b of `counts` with (entries in bins >= b) + offset >=
    # num_active, and (entries in bins > b) + offset. In two levels of 256:
    # a cumulative sum over 65,536 bins is slow on CPU.
    def last_bin_reaching(counts, offset):
        def last_reaching(row, offset):
            at_or_above = tf.cumsum(row, reverse=True) + offset
            index = tf.reduce_max(tf.where(at_or_above >= num_active, tf.range(256), -1))
            index = tf.maximum(index, 0)  # only when num_active > size
            return index, at_or_above[index] - row[index]

        grid = tf.reshape(counts, [256, 256])
        row, offset = last_reaching(tf.reduce_sum(grid, axis=1), offset)
        column, offset = last_reaching(grid[row], offset)
        return row * 256 + column, offset

    high = tf.bitwise.right_shift(key, 16) + _BINS // 2  # in [0, 65536)
    counts = tf.math.bincount(high, minlength=_BINS, maxlength=_BINS)
    top, above_top = last_bin_reaching(counts, 0)
    # Second pass: the low 16 bits of the keys in bin `top` (the others are
    # given the value _BINS, which bincount's maxlength skips).
    low = tf.where(tf.equal(high, top), tf.bitwise.bitwise_and(key, 0xFFFF), _BINS)
    low_counts = tf.math.bincount(low, minlength=_BINS, maxlength=_BINS)
    last, above = last_bin_reaching(low_counts, above_top)
    threshold = (top - _BINS // 2) * _BINS + last
    # Of the entries equal to the threshold, the `wanted` lowest-index ones
    # are kept; usually that is all of them, and one comparison does.
    wanted = num_active - above

    def split_ties():
        ties = tf.equal(key, threshold)
        rank = tf.cumsum(tf.cast(ties, tf.int32))  # 1 for the lowest-index tie
        return tf.where(ties, rank <= wanted, key > threshold)

    keep = tf.cond(tf.equal(wanted, low_counts[last]), lambda: key >= threshold, split_ties)
    return tf.cast(keep, tf.float32)


def lowest_mask(scores, count):
    """Mask of the `count` lowest `scores`; among equal scores, the higher flat index first.

    The complement of keeping the top `size - count` (ties kept at the
    lower flat index), but it selects only the small `count`: reversed,
    the lowest are the largest negated scores, found by `largest_mask`
    (alone, `top_k` took 313 ms for 100,000 of 16.7M scores, the radix
    select 110 ms, on 2 CPU cores). Works in graph mode.

    Args:
        scores: a float tensor of any shape, without NaN.
        count: number of ones (int or int32 tensor), `<= size`.

    Returns:
        A float32 tensor of `scores`' shape holding 0 and 1.

    Example:

    >>> lowest_mask(tf.constant([0.3, 0.1, 0.1]), 1).numpy()
    array([0., 0., 1.], dtype=float32)
    """
    flat = tf.reverse(-tf.reshape(scores, [-1]), [0])
    return tf.reshape(tf.reverse(largest_mask(flat, count), [0]), tf.shape(scores))


def topk_masks_global(scores, num_active):
    """One ranking over several tensors: ones at the `num_active` largest.

    The tensors are ranked together as if concatenated (ties to the earlier
    tensor, then the lower index), so layers compete for one budget.

    Args:
        scores: a list of float tensors (any shapes).
        num_active: total number of ones, `<= sum of sizes`.

    Returns:
        A list of float32 masks, one per tensor, of their shapes.

    Example:

    >>> a, b = topk_masks_global([tf.constant([0.5, 0.1]), tf.constant([0.9])], 2)
    >>> a.numpy(), b.numpy()
    (array([1., 0.], dtype=float32), array([1.], dtype=float32))
    """
    flat = tf.concat([tf.reshape(tf.cast(s, tf.float32), [-1]) for s in scores], 0)
    keep = topk_mask(flat, num_active)
    masks, offset = [], 0
    for s in scores:
        size = int(np.prod(s.shape))
        masks.append(tf.reshape(keep[offset:offset + size], tf.shape(s)))
        offset += size
    return masks


def stateless_uniform(shape, seed, step, index):
    """Uniform [0, 1) noise keyed by (seed, step, layer index).

    Stateless, so every replica of a `tf.distribute` strategy, and a run
    resumed from a checkpoint, draws the same numbers.

    Example:

    >>> noise = stateless_uniform((2, 3), seed=0, step=100, index=1)
    """
    key = tf.stack(
        [
            tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(index, tf.int64),
            tf.cast(step, tf.int64),
        ]
    )
    return tf.random.stateless_uniform(shape, seed=key, dtype=tf.float32)


def warn_non_finite(who, path, what="scores", when=""):
    """The one warning for a mask update skipped because of NaN or Inf.

    Mask rules never turn NaN or Inf into a mask: the weight keeps its
    previous mask, and this warning says so.

    Example:

    ```python
    warn_non_finite("DynamicSparsity", "dense/kernel", when=" at step 100")
    ```
    """
    warnings.warn(
        f"{who}: {what} of {path} contain NaN or Inf{when}; its mask is kept.",
        stacklevel=3,
    )


def check_mask(mask, shape, name):
    """Validates a user mask: right shape, values only 0 and 1.

    Returns:
        The mask as a numpy array.

    Raises:
        ValueError: wrong shape, or a value other than 0 and 1.

    Example:

    >>> check_mask([[1, 0]], (1, 2), "dense/kernel")
    array([[1, 0]])
    """
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
