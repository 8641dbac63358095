"""Data-free pruning at initialization: random and magnitude."""

import tensorflow as tf

from keras_sparse.layers.registry import masked_weights
from keras_sparse.masks import stateless_uniform
from keras_sparse.model import require_sparse_model
from keras_sparse.pruning.base import check_structure, prune_with_scores

__all__ = ["magnitude", "random"]


def random(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
           dense_layers=None, custom=None, erk_power_scale=1.0,
           structure=None):
    """Random masks: exactly `round(s_l * n_l)` zeros per layer, uniform.

    Random numbers are stateless, keyed by (seed, layer index), so every
    replica draws the same mask. `data` is ignored.

    Args:
        model: a `ks.SparseModel`.
        sparsity: target fraction of zeros, in [0, 1).
        distribution, scope, dense_layers, custom, erk_power_scale: layer
            budgets, as in `ks.sparsify`.
        structure: None (the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure;
            masks keep it (see `ks.structures`).
        seed: seed of the stateless random numbers.

    Returns:
        `model`, with its masks set.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`.
        ValueError: a bad `sparsity`, `distribution`, `scope` or layer name.

    Example:

    ```python
    ks.pruning.random(model, 0.9, distribution="erk", seed=1)
    ```
    """
    require_sparse_model(model, "ks.pruning.random")
    check_structure(model, structure, "ks.pruning.random")
    scores = {
        mw.path: stateless_uniform(mw.weight.shape, seed, 0, i)
        for i, mw in enumerate(masked_weights(model))
    }
    return prune_with_scores(model, scores, sparsity, distribution=distribution,
                             scope=scope, dense_layers=dense_layers, custom=custom,
                             erk_power_scale=erk_power_scale)


def magnitude(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
              dense_layers=None, custom=None, erk_power_scale=1.0,
              structure=None):
    """Keeps the largest `abs(w)`; the smallest are dropped.

    Args:
        model: a `ks.SparseModel`.
        sparsity: target fraction of zeros, in [0, 1).
        distribution, scope, dense_layers, custom, erk_power_scale: layer
            budgets, as in `ks.sparsify`.
        structure: None (the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure;
            masks keep it (see `ks.structures`).
        data, seed: unused (the common signature of `ks.pruning` methods).

    Returns:
        `model`, with its masks set.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`.
        ValueError: a bad `sparsity`, `distribution`, `scope` or layer name.

    Example:

    ```python
    ks.pruning.magnitude(model, 0.8, scope="global")
    ```
    """
    require_sparse_model(model, "ks.pruning.magnitude")
    check_structure(model, structure, "ks.pruning.magnitude")
    scores = {mw.path: tf.abs(tf.convert_to_tensor(mw.weight)) for mw in masked_weights(model)}
    return prune_with_scores(model, scores, sparsity, distribution=distribution,
                             scope=scope, dense_layers=dense_layers, custom=custom,
                             erk_power_scale=erk_power_scale)
