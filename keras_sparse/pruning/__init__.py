"""Pruning at initialization: set a model's masks in place.

Every method has the signature
`method(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
dense_layers=None, custom=None, erk_power_scale=1.0, ...) -> model`
and is also reachable as `ks.sparsify(..., mask_init=NAME)`. `snip_scores`,
`grasp_scores` and `synflow_scores` return the per-weight scores;
`lottery_reset` rewinds weights to their initialization under the masks.
"""

from keras_sparse.pruning.base import (
    SCOPES,
    check_scope,
    masks_from_scores,
    prune_with_scores,
    rank_inactive_last,
)
from keras_sparse.pruning.grasp import grasp, grasp_scores
from keras_sparse.pruning.lottery import lottery_reset
from keras_sparse.pruning.simple import magnitude, random
from keras_sparse.pruning.snip import snip, snip_scores
from keras_sparse.pruning.synflow import synflow, synflow_scores
from keras_sparse.utils.argument_validation import check_choice

__all__ = [
    "METHODS",
    "SCOPES",
    "check_scope",
    "get",
    "grasp",
    "grasp_scores",
    "lottery_reset",
    "magnitude",
    "masks_from_scores",
    "prune_with_scores",
    "random",
    "rank_inactive_last",
    "snip",
    "snip_scores",
    "synflow",
    "synflow_scores",
]

METHODS = {"random": random, "magnitude": magnitude, "snip": snip, "grasp": grasp,
           "synflow": synflow}


def get(name):
    """The pruning method called `name`.

    Args:
        name: one of `METHODS` ("random", "magnitude", "snip", "grasp",
            "synflow").

    Returns:
        The pruning function, e.g. `ks.pruning.magnitude`.

    Raises:
        ValueError: `name` is not one of `METHODS`.

    Example:

    >>> get("magnitude").__name__
    'magnitude'
    """
    return METHODS[check_choice(name, "mask_init", tuple(sorted(METHODS)))]
