"""The drop-and-grow round of one large unstructured weight, on indices.

`DropGrowUpdate` ranks every position of a weight twice (drop, then grow)
and rewrites the variable, the mask and every slot. At 98% sparsity a
4096x4096 layer has 335,544 active weights and drops about 100,000 of
16.7 million positions, so most of that work is on positions that cannot
change. This round does the same thing on indices:

- drop: the drop score is read at the active positions only, and the
  lowest are dropped from that short vector;
- grow: a threshold is read off a random sample of the grow scores of the
  inactive positions, set so that more positions than needed score above
  it; those (and the just dropped ones above it) are the candidates, and
  an exact top-k over them picks the grown positions. When too few
  positions score above it (the sample misjudged, or many positions tie,
  e.g. at a zero gradient), the exact selection over every position runs
  instead, so the result never depends on the sample;
- apply: `SparseParameter.swap` writes only the changed entries.

The masks, weights and slots equal the dense round's bit for bit: the same
scores, the same ties (a drop among equal scores takes the higher flat
index, a growth the lower) and the same counts. It assumes what every
mask operation and train step keeps: inactive weights are 0.0 and their
slots fresh. `DropGrowUpdate` uses it for unstructured weights of at least
`MIN_SIZE` positions, without a redistribution, outside `compute="sparse"`.
"""

import functools
import math

import numpy as np
import tensorflow as tf

from keras_sparse.callbacks.drop_schedules import drop_count
from keras_sparse.layers import inplace
from keras_sparse.masks import largest_mask, lowest_mask

__all__ = ["MIN_SIZE", "SAMPLE", "capacity", "indexed_round"]

# Below this many positions the dense round is as fast or faster: measured
# one RigL update, indexed / dense, 784x300 at 95% 1.13, 1024x1024 at 98%
# 0.68, 2048x2048 at 98% 0.36 (2 CPU cores, under load).
MIN_SIZE = 1 << 19
# Grow scores sampled to place the threshold.
SAMPLE = 1 << 16


def capacity(weight):
    """Static index capacity of a weight's round from its active count now
    (on the host), or None where the round on indices does not apply: a
    structured weight, a values vector (`compute="sparse"`), fewer than
    `MIN_SIZE` weights or over half of them active (the dense round is as
    fast there)."""
    if (not weight.structure.is_unstructured or weight.storage is not None
            or weight.size < MIN_SIZE):
        return None
    count = int(np.count_nonzero(np.asarray(weight.mask.numpy())))
    return inplace.capacity_for(count) if 2 * count <= weight.size else None


def _threshold(score_at, flat_mask, fraction):
    """A grow threshold with, very likely, more than the round's growth above it."""
    size = flat_mask.shape.num_elements()
    # A fixed random sample, sorted so that reading it streams through
    # memory; rows and columns of a gradient differ in scale, so a stride
    # would be biased.
    at = tf.constant(np.sort(np.random.default_rng(17).integers(0, size, SAMPLE)), tf.int64)
    free = inplace.get_entries(flat_mask, at, SAMPLE) <= 0
    sample = tf.where(free, score_at(at), -math.inf)
    n_free = tf.reduce_sum(tf.cast(free, tf.int64))
    # The expected growth among the sampled free positions.
    expected = tf.cast(drop_count(fraction, SAMPLE - n_free), tf.float64)
    rank = tf.cast(tf.math.ceil(1.25 * expected + 4.0 * tf.sqrt(expected) + 16.0), tf.int64)
    usable = rank < n_free
    rank = tf.cast(tf.clip_by_value(rank, 1, SAMPLE), tf.int32)
    value = tf.math.top_k(sample, rank, sorted=True).values[rank - 1]
    return tf.where(usable, value, -math.inf)


# What one pass over a weight finds at each position (int8 codes).
_CODES = 5
_BELOW, _ACTIVE, _ABOVE, _NONFINITE, _NONFINITE_ACTIVE = range(_CODES)
# tf.where runs on one thread: pieces of the work run side by side.
_PIECES = 4


def _classify(mask, score, threshold, piece=None):
    """The code of every position (graph code; one fused pass inside XLA):
    all of them, or the `piece`-th of `_PIECES` flat chunks."""
    if piece is not None:
        step = mask.shape.num_elements() // _PIECES
        mask, score = mask[piece * step:(piece + 1) * step], score[piece * step:(piece + 1) * step]
    active = mask > 0
    kind = tf.where(active, _ACTIVE, tf.where(score > threshold, _ABOVE, _BELOW))
    kind = tf.where(tf.math.is_finite(score), kind,
                    tf.where(active, _NONFINITE_ACTIVE, _NONFINITE))
    return tf.cast(kind, tf.int8)


def _pieces(size):
    """The chunks a pass is made in: `_PIECES` when they divide the weight."""
    return [None] if size % _PIECES else list(range(_PIECES))


def _nonzero(chunks, capacity):
    """`(positions, codes)` of the nonzero codes of consecutive `chunks`,
    positions flat and ascending; `capacity` bounds the whole count."""
    step = chunks[0].shape.num_elements()
    found = [tf.where(chunk)[:, 0] for chunk in chunks]
    # A chunk holds about 1/len(chunks) of them; a fuller one reads uncompiled.
    bound = inplace.capacity_for(max(capacity // len(chunks), 1) * 2 - 1)
    return (tf.concat([f + i * step for i, f in enumerate(found)], 0),
            tf.concat([inplace.get_entries(chunk, f, bound)
                       for chunk, f in zip(chunks, found)], 0))


def indexed_round(weight, drop, grow, updates, fraction, grow_init, optimizer, union,
                  capacity, dense_round):
    """One drop-and-grow round of `weight` on indices (graph code).

    Args:
        weight: the `SparseParameter` (unstructured, no values vector).
        drop, grow: the rules.
        updates: `updates(mask) -> (drop_up, grow_up)`, the rules' `LayerUpdate`s.
        fraction: the drop fraction (float64 tensor).
        grow_init: value of grown weights.
        optimizer: the model's optimizer.
        union: the weight's ever-active state variable.
        capacity: static bound on the active count (see `capacity`).
        dense_round: `() -> stats`, the dense round, for a weight more
            active than `capacity`.

    Returns:
        The per-layer statistics of `DropGrowUpdate`.
    """
    # Nothing runs beside the round's long reads: each is two launches.
    with inplace.reads_in_halves():
        return _round(weight, drop, grow, updates, fraction, grow_init, optimizer, union,
                      capacity, dense_round)


def _round(weight, drop, grow, updates, fraction, grow_init, optimizer, union, capacity,
           dense_round):
    size = weight.size
    mask = tf.cast(tf.convert_to_tensor(weight.mask), tf.float32)
    drop_up, grow_up = updates(mask)
    for up in (drop_up, grow_up):  # the rules' reads at positions compile up to this many
        up.capacity = max(capacity, SAMPLE)
    flat_mask = tf.reshape(mask, [-1])

    def flat_grow_score():
        return tf.reshape(tf.cast(grow.score(grow_up), tf.float32), [-1])

    if grow.fusion:  # the score is never written out whole
        def grow_at(positions):
            return tf.cast(grow.score_at(grow_up, positions), tf.float32)

        # "close": XLA's score may differ from TensorFlow's in the last bits,
        # so the pass keeps a margin below the threshold and the positions it
        # finds are re-scored (exactly) below.
        margin = 1e-3 if grow.fusion == "close" else 0.0

        def classify(t, piece):
            return _classify(flat_mask, flat_grow_score(), t - margin * tf.abs(t), piece)
    else:
        flat_grow = flat_grow_score()

        def grow_at(positions):
            return inplace.get_entries(flat_grow, positions, grow_up.capacity)

        def classify(t, piece):
            return _classify(flat_mask, flat_grow, t, piece)
    threshold = _threshold(grow_at, flat_mask, fraction)
    # One compiled launch per chunk: XLA runs a launch on one thread,
    # TensorFlow runs independent launches side by side.
    chunks = [tf.function(functools.partial(classify, piece=piece), jit_compile=True)(threshold)
              for piece in _pieces(size)]
    positions, kinds = _nonzero(chunks, capacity)
    # One pass splits them by code, each part in order (two boolean masks
    # took twice as long). Active positions with a non-finite score come
    # last; they exist only when the round is skipped.
    parts = tf.dynamic_partition(positions, tf.cast(kinds, tf.int32), _CODES)
    active = tf.concat([parts[_ACTIVE], parts[_NONFINITE_ACTIVE]], 0)
    free = parts[_ABOVE]
    free_scores = grow_at(free)
    if grow.fusion == "close":
        above = free_scores > threshold
        free, free_scores = tf.boolean_mask(free, above), tf.boolean_mask(free_scores, above)
    grow_finite = tf.reduce_all(kinds < _NONFINITE)
    n_active = tf.size(active, tf.int64)
    # Read while the pass above runs: the union after the round is this
    # plus what the round adds to it.
    ever_before = tf.cast(tf.reduce_sum(tf.convert_to_tensor(union)), tf.int64)

    def indexed():
        drop_score = tf.cast(drop.score_at(drop_up, active), tf.float32)
        finite = grow_finite & tf.reduce_all(tf.math.is_finite(drop_score))
        # A fully dense weight could only regrow what it dropped: leave it alone.
        n_drop = tf.where(finite & (n_active < size), drop_count(fraction, n_active),
                          tf.constant(0, tf.int64))
        lowest = lowest_mask(drop_score, tf.cast(n_drop, tf.int32)) > 0
        kept, dropped = tf.dynamic_partition(active, tf.cast(lowest, tf.int32), 2)
        grown = _grow(flat_mask, flat_grow_score, grow_at, threshold, free, free_scores,
                      dropped, tf.cast(n_drop, tf.int32))

        union_before = tf.reshape(tf.convert_to_tensor(union), [-1])
        # A round changes a fraction of the active weights: its edits are
        # padded to a smaller capacity when they fit (XLA's scatter and
        # gather visit every padded index).
        changes = _changes_capacity(capacity)
        regrown = tf.reduce_sum(
            tf.cast(inplace.get_entries(union_before, grown, changes) > 0, tf.int64))
        back = inplace.get_entries(flat_mask, grown, changes) > 0  # grown where just dropped
        # Kept weights join the union (a maximum): only those not in it yet are written.
        kept_new = tf.boolean_mask(kept, inplace.get_entries(union_before, kept, capacity) <= 0)

        def swap(bound):
            def edit():
                weight.swap(dropped, grown, grow_init=grow_init, optimizer=optimizer,
                            capacity=bound, also=[(union, [(kept_new, 1.0), (grown, 1.0)])])
                return tf.constant(0)
            return edit

        fits = (tf.size(dropped) <= changes) & (tf.size(kept_new) <= changes)
        # Every read above is done before the entries change in place.
        with tf.control_dependencies([regrown, back, kept_new, dropped]):
            edited = tf.cond(fits, swap(changes), swap(capacity))
        with tf.control_dependencies([edited]):
            new = tf.cast(tf.convert_to_tensor(weight.mask), tf.float32)
        for up in (drop_up, grow_up):
            up.active, up.capacity = active, capacity
        drop.update_state(drop_up, new)
        grow.update_state(grow_up, new)
        return dict(
            dropped=n_drop,
            grown=n_drop,
            regrown=regrown,
            changed=n_drop - tf.reduce_sum(tf.cast(back, tf.int64)),
            active=n_active,
            ever=ever_before + tf.size(kept_new, tf.int64) + n_drop - regrown,
            finite=finite,
        )

    # The indices are padded to a static capacity: a mask grown denser since takes the dense round.
    return tf.cond(n_active < capacity, indexed, dense_round)


def _changes_capacity(capacity):
    """The static capacity of a round's changed positions: a quarter of the
    active capacity, which holds a drop of at least a quarter of the active
    weights (RigL's default fraction is 0.3 at most); a larger round takes
    the full capacity."""
    return max(capacity // 4, inplace.capacity_for(0))


def _grow(flat_mask, flat_grow_score, grow_at, threshold, free, free_scores, dropped, count):
    """The `count` positions the dense round grows, as indices (graph code)."""
    # Candidates: every position (free or just dropped) scoring above the threshold.
    dropped_scores = grow_at(dropped)
    above = dropped_scores > threshold
    candidates = tf.concat([free, tf.boolean_mask(dropped, above)], 0)
    scores = tf.concat([free_scores, tf.boolean_mask(dropped_scores, above)], 0)

    def from_candidates():
        chosen = largest_mask(scores, count) > 0
        last = tf.reduce_min(tf.boolean_mask(scores, chosen))  # the count-th largest score
        above = scores > last
        # Among the scores equal to the last one, the lowest flat indices, as the dense round.
        ties = tf.boolean_mask(candidates, tf.equal(scores, last))
        wanted = count - tf.reduce_sum(tf.cast(above, tf.int32))
        return tf.concat([tf.boolean_mask(candidates, above),
                          -tf.math.top_k(-ties, wanted, sorted=False).values], 0)

    def from_all():  # too few above the threshold: rank every position
        kept_mask = tf.tensor_scatter_nd_update(
            flat_mask, dropped[:, None], tf.zeros_like(dropped, flat_mask.dtype))
        pool = tf.where(kept_mask > 0, -math.inf, flat_grow_score())
        return tf.where(largest_mask(pool, count) > 0)[:, 0]

    def none():
        return tf.zeros([0], tf.int64)

    enough = tf.size(candidates) >= count
    return tf.cond(count > 0, lambda: tf.cond(enough, from_candidates, from_all), none)
