"""Pruning at initialization: set a model's masks in place.

Every method has the signature
`method(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
dense_layers=None, custom=None, erk_power_scale=1.0, ...) -> model`
and is also reachable as `ks.sparsify(..., mask_init=NAME)`. `snip_scores`,
`grasp_scores` and `synflow_scores` return the per-weight scores;
`lottery_reset` rewinds weights to their initialization under the masks.
"""

from keras_sparse.pruning.base import masks_from_scores, prune_with_scores
from keras_sparse.pruning.grasp import grasp, grasp_scores
from keras_sparse.pruning.lottery import lottery_reset
from keras_sparse.pruning.simple import magnitude, random
from keras_sparse.pruning.snip import snip, snip_scores
from keras_sparse.pruning.synflow import synflow, synflow_scores

METHODS = {"random": random, "magnitude": magnitude, "snip": snip, "grasp": grasp,
           "synflow": synflow}


def get(name):
    """The pruning method called `name` (ValueError if unknown)."""
    if name not in METHODS:
        raise ValueError(
            f"`mask_init` must be one of {sorted(METHODS)}; got {name!r}."
        )
    return METHODS[name]
