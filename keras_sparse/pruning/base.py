"""Turning per-weight scores into exact-count masks.

Every pruning method scores each prunable weight and keeps the highest
scores: per layer, `n - round(s_l * n)` entries with `s_l` from the
distribution (`scope="layer"`), or one ranking across layers for the global
budget (`scope="global"`). Scores with NaN or Inf leave that weight's mask
as it was, with a warning.

A weight with a structure (`mw.structure`, see `ks.structures`) is pruned in
its units: blocks ranked by the sum of their scores (the scores each method
ranks by: `abs(w)`, SNIP's `abs(g * w)`, SynFlow's `abs(w * dR/dw)` are
already absolute values; GraSP's signed score is summed as it is, since its
sign is what the method ranks), N:M groups keeping their `n` best scores.
The budgets count whole units (`ks.distributions.budgets`).
"""

import numpy as np
import tensorflow as tf

from keras_sparse import distributions, structures
from keras_sparse.distributions import SCOPES, check_scope
from keras_sparse.layers.registry import masked_weights
from keras_sparse.masks import topk_mask, warn_non_finite
from keras_sparse.utils.argument_validation import check_sparsity

__all__ = ["SCOPES", "check_scope", "check_structure", "masks_from_scores",
           "prune_with_scores", "rank_inactive_last"]


def check_structure(model, structure, who):
    """Refuses a `structure=` other than the one the model's weights hold.

    The structure belongs to the weights (`ks.sparsify(..., structure=...)`);
    a method's `structure=None` reads it there.

    Args:
        model: a `ks.SparseModel`.
        structure: None or anything `ks.structures.get` takes.
        who: the method, for the message.

    Returns:
        The structures (other than `Unstructured`) the weights hold.

    Raises:
        ValueError: `structure` differs from the weights' structure.

    Example:

    ```python
    check_structure(model, "2:4", "ks.pruning.snip")
    ```
    """
    if structure is not None:
        structure = structures.get(structure)
    return structures.check_agrees(masked_weights(model), structure, who)


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
    finite = {}
    for mw in weights:
        ok = bool(tf.reduce_all(tf.math.is_finite(scores[mw.path])))
        if not ok:
            warn_non_finite("ks.pruning", mw.path)
        finite[mw.path] = ok
    result = {mw.path: tf.convert_to_tensor(mw.mask) for mw in weights}
    # A weight whose scores are not finite keeps its mask (and its count).
    fixed = {mw.path: int(np.count_nonzero(result[mw.path])) for mw in weights
             if not finite[mw.path]}
    counts = distributions.budgets(weights, sparsity, distribution, scope, scores=scores,
                                   fixed=fixed, dense_layers=dense_layers, custom=custom,
                                   erk_power_scale=erk_power_scale)
    for mw in weights:
        if finite[mw.path]:
            score = tf.cast(scores[mw.path], tf.float32)
            if mw.structure.is_unstructured:
                result[mw.path] = topk_mask(score, counts[mw])
            else:  # whole blocks by summed score, or the top n of each N:M group
                result[mw.path] = mw.structure.mask(score, counts[mw])
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
