"""Turning per-weight scores into exact-count masks.

Every pruning method scores each prunable weight and keeps the highest
scores: per layer, `n - round(s_l * n)` entries with `s_l` from the
distribution (`scope="layer"`), or one ranking across layers for the global
budget (`scope="global"`). Scores with NaN or Inf leave that weight's mask
as it was, with a warning.
"""

import numpy as np
import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.layers.registry import masked_weights
from keras_sparse.masks import num_inactive, topk_mask, topk_masks_global, warn_non_finite
from keras_sparse.utils.argument_validation import check_choice, check_sparsity

__all__ = ["SCOPES", "check_scope", "masks_from_scores", "prune_with_scores",
           "rank_inactive_last"]

SCOPES = ("layer", "global")


def check_scope(scope):
    """Returns `scope` if it is one of `SCOPES`.

    Args:
        scope: "layer" (per-layer budgets) or "global" (one ranking).

    Returns:
        `scope`, unchanged.

    Raises:
        ValueError: any other value.

    Example:

    >>> check_scope("global")
    'global'
    """
    return check_choice(scope, "scope", SCOPES)


def masks_from_scores(model, scores, sparsity, distribution="erk", scope="layer",
                      dense_layers=None, custom=None, erk_power_scale=1.0):
    """Masks keeping the highest `scores` (`{path: tensor}`), exact counts.

    With `scope="layer"` each weight keeps `n - round(s_l * n)` entries, `s_l`
    from `distribution`; with `scope="global"` every weight not pinned by
    `dense_layers`/`custom` is ranked together (`distribution` unused) so that
    the model total is `round(s * N)` zeros. Weights whose scores are not
    finite keep their current mask (with a warning).

    Args:
        model: a `ks.SparseModel`.
        scores: `{weight path: tensor}` for every masked weight.
        sparsity: the global target, in [0, 1).
        distribution, dense_layers, custom, erk_power_scale: layer budgets,
            as in `ks.sparsify`.
        scope: "layer" or "global".

    Returns:
        `{path: mask tensor}`.

    Raises:
        ValueError: a bad `sparsity`, `distribution` or `scope`, an unknown
            layer name, or a budget the pinned layers exceed.

    Example:

    ```python
    scores = {mw.path: tf.abs(mw.weight) for mw in model.masked_weights}
    masks = masks_from_scores(model, scores, 0.9, scope="global")
    ```
    """
    check_sparsity(sparsity)
    check_scope(scope)
    weights = masked_weights(model)
    shapes = {mw.path: tuple(mw.weight.shape) for mw in weights}
    targets = distributions.solve(shapes, sparsity, distribution, dense_layers,
                                  custom, erk_power_scale)
    finite = {}
    for mw in weights:
        ok = bool(tf.reduce_all(tf.math.is_finite(scores[mw.path])))
        if not ok:
            warn_non_finite("ks.pruning", mw.path)
        finite[mw.path] = ok
    result = {mw.path: tf.convert_to_tensor(mw.mask) for mw in weights}
    if scope == "layer":
        for mw in weights:
            if finite[mw.path]:
                keep = mw.size - num_inactive(mw.size, targets[mw.path])
                result[mw.path] = topk_mask(tf.cast(scores[mw.path], tf.float32), keep)
        return result
    # One ranking over every weight not pinned by `dense_layers`/`custom`
    # (those get their own exact count); `distribution` plays no part.
    pins = distributions.pinned(shapes, sparsity, dense_layers, custom)
    ranked = [mw for mw in weights if finite[mw.path] and mw.path not in pins]
    for mw in weights:
        if finite[mw.path] and mw.path in pins:
            keep = mw.size - num_inactive(mw.size, pins[mw.path])
            result[mw.path] = topk_mask(tf.cast(scores[mw.path], tf.float32), keep)
    if not ranked:
        return result
    zeros = num_inactive(sum(mw.size for mw in weights), sparsity)
    zeros -= sum(mw.size - int(np.count_nonzero(result[mw.path])) for mw in weights
                 if mw not in ranked)
    size = sum(mw.size for mw in ranked)
    keep = topk_masks_global([scores[mw.path] for mw in ranked],
                             min(max(size - zeros, 0), size))
    result.update({mw.path: mask for mw, mask in zip(ranked, keep)})
    return result


def rank_inactive_last(model, scores):
    """`scores` with every inactive weight ranked below every active one.

    Scoring a masked network: its inactive weights are exactly 0 and not
    parameters, so they stay pruned unless the budget needs them.

    Args:
        model: a `ks.SparseModel`.
        scores: `{weight path: tensor}`.

    Returns:
        `{weight path: float32 tensor}`.

    Example:

    ```python
    scores = rank_inactive_last(model, ks.pruning.snip_scores(model, data))
    ```
    """
    lowest = tf.float32.min  # finite: the NaN/Inf check must not fire
    return {
        mw.path: tf.where(tf.convert_to_tensor(mw.mask) > 0,
                          tf.cast(scores[mw.path], tf.float32), lowest)
        for mw in masked_weights(model)
    }


def prune_with_scores(model, scores, sparsity, **kwargs):
    """Sets the masks from `scores` (see `masks_from_scores`); returns model.

    Args:
        model: a `ks.SparseModel`.
        scores: `{weight path: tensor}`; the highest are kept.
        sparsity: the global target, in [0, 1).
        **kwargs: `distribution`, `scope`, `dense_layers`, `custom`,
            `erk_power_scale` of `masks_from_scores`.

    Returns:
        `model`.

    Raises:
        ValueError: a bad `sparsity`, `distribution` or `scope`, an unknown
            layer name, or a budget the pinned layers exceed.

    Example:

    ```python
    ks.pruning.prune_with_scores(model, scores, 0.9, distribution="erk")
    ```
    """
    model.set_masks(masks_from_scores(model, scores, sparsity, **kwargs))
    return model
