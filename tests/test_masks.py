"""keras_sparse.masks: the sampled and the radix select give exactly top_k's mask."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sparse import masks
from keras_sparse.masks import largest_mask, topk_mask


def _scores(kind, size, rng):
    x = rng.normal(size=size).astype("float32")
    if kind == "magnitudes with pruned zeros":  # what gradual pruning ranks
        x = np.abs(x)
        x[rng.random(size) < 0.4] = 0.0
    elif kind == "ties, negatives and -0.0":
        x = np.round(x * 4) / 4
        x[rng.random(size) < 0.2] = -0.0
    elif kind == "infinities and subnormals":
        x[rng.random(size) < 0.01] = np.inf
        x[rng.random(size) < 0.01] = -np.inf
        x[:64] = 1e-40
        x[64:128] = -1e-40
    return x


@pytest.mark.parametrize("kind", ["normal", "magnitudes with pruned zeros",
                                  "ties, negatives and -0.0", "infinities and subnormals"])
def test_largest_mask_equals_topk_mask_on_large_tensors(kind):
    rng = np.random.default_rng(len(kind))
    shape = (300, 240)  # 72,000 entries: the radix path
    assert np.prod(shape) >= masks.RADIX_MIN_SIZE
    scores = tf.constant(_scores(kind, shape, rng))
    radix = tf.function(largest_mask)
    for keep in (0, 1, 7, 900, 9_000, 36_000, 50_000, 71_999, 72_000, int(rng.integers(72_000))):
        got = radix(scores, tf.constant(keep)).numpy()
        want = topk_mask(scores, keep).numpy()
        assert got.shape == shape and got.dtype == np.float32
        assert int(got.sum()) == keep, (kind, keep)
        np.testing.assert_array_equal(got, want, err_msg=f"{kind}, keep={keep}")


@pytest.mark.parametrize("kind", ["normal", "magnitudes with pruned zeros"])
def test_a_few_are_picked_above_a_sampled_threshold(kind, monkeypatch):
    # A selection of at most 1/8 of the entries comes from the candidates
    # above a sampled threshold: with the radix select replaced by a wrong
    # answer, the result is still top_k's, so the sampled pick made it.
    rng = np.random.default_rng(len(kind) + 1)
    scores = tf.constant(_scores(kind, (300, 240), rng))
    monkeypatch.setattr(masks, "_largest_radix", lambda flat, k: tf.fill(tf.shape(flat), -1.0))
    sampled = tf.function(largest_mask)
    for keep in (1, 7, 900, 5_000, 72_000 // masks._FEW):
        got = sampled(scores, tf.constant(keep)).numpy()
        np.testing.assert_array_equal(got, topk_mask(scores, keep).numpy(),
                                      err_msg=f"{kind}, keep={keep}")


def test_a_sample_that_misjudges_falls_back_to_the_radix_select(monkeypatch):
    # Ties at the sampled threshold leave too few strictly above it.
    scores = np.zeros(masks.RADIX_MIN_SIZE, "float32")
    scores[:100] = 1.0
    want = topk_mask(tf.constant(scores), 5_000).numpy()
    np.testing.assert_array_equal(largest_mask(tf.constant(scores), 5_000).numpy(), want)
    monkeypatch.setattr(masks, "_largest_radix", lambda flat, k: tf.fill(tf.shape(flat), -1.0))
    assert (largest_mask(tf.constant(scores), 5_000).numpy() == -1.0).all()


def test_ties_at_the_threshold_go_to_the_lower_flat_index():
    scores = np.zeros(masks.RADIX_MIN_SIZE, "float32")
    scores[::2] = 1.0  # 32,768 ones, then the zeros tie
    got = largest_mask(tf.constant(scores), 32_768 + 10).numpy()
    zeros_kept = np.flatnonzero((got == 1) & (scores == 0))
    np.testing.assert_array_equal(zeros_kept, np.arange(1, 21, 2))


def test_small_tensors_use_top_k_and_agree():
    scores = tf.constant([0.3, -0.0, 0.9, 0.0, 0.9])
    np.testing.assert_array_equal(largest_mask(scores, 3).numpy(), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(largest_mask(scores, 4).numpy(), topk_mask(scores, 4).numpy())
