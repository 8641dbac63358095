"""Pruning at initialization: set a model's masks in place.

Every method has the signature
`method(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
dense_layers=None, custom=None, erk_power_scale=1.0, ...) -> model`
and is also reachable as `ks.sparsify(..., mask_init=NAME)`.
"""

from keras_sparse.pruning.base import masks_from_scores, prune_with_scores
from keras_sparse.pruning.simple import magnitude, random

METHODS = {"random": random, "magnitude": magnitude}


def get(name):
    """The pruning method called `name` (ValueError if unknown)."""
    if name not in METHODS:
        raise ValueError(
            f"`mask_init` must be one of {sorted(METHODS)}; got {name!r}."
        )
    return METHODS[name]
