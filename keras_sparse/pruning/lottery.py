"""Lottery-ticket reset: the current masks over the saved initial weights."""

import numpy as np

from keras_sparse.layers.registry import without_masks
from keras_sparse.model import require_sparse_model
from keras_sparse.utils.argument_validation import pair_by_path

__all__ = ["lottery_reset"]


def lottery_reset(model, initial_weights):
    """Rewinds every weight to its initial value, keeping the current masks.

    The "lottery" baseline of Evci et al. (2019): train (e.g. with gradual
    magnitude pruning) to get a mask, then restart from the initialization
    with that mask. Masks in `initial_weights` are ignored; inactive weights
    end exactly 0. The optimizer is not touched: compile the model again to
    retrain from the reset with a fresh optimizer.

    Args:
        model: a `ks.SparseModel`.
        initial_weights: `model.get_weights()` taken at initialization (same
            variables, same order), or `{variable path: array}` for some or
            all variables (`{v.path: v.numpy() for v in model.weights}`).
            Use the dict form if variables were added since (mask-rule
            state such as dense-gradient buffers).

    Returns:
        `model`.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`.
        ValueError: unknown paths, a list of the wrong length or a wrong
            shape; nothing changes then.

    Example:

    ```python
    init = model.get_weights()
    model.fit(x, y, epochs=10, callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    ks.pruning.lottery_reset(model, init)
    model.compile("sgd", loss)   # fresh optimizer
    ```
    """
    require_sparse_model(model, "ks.pruning.lottery_reset")
    pairs = pair_by_path(
        [(v.path, v) for v in model.weights], initial_weights,
        "lottery_reset", "initial_weights arrays", "variable",
    )
    kept = {id(v) for v in without_masks(model.weights, model)}
    pairs = [(v, np.asarray(value)) for v, value in pairs if id(v) in kept]
    for variable, value in pairs:
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"lottery_reset: `initial_weights` for {variable.path!r} has shape "
                f"{tuple(value.shape)}; expected {tuple(variable.shape)}."
            )
    for variable, value in pairs:
        variable.assign(value)
    model.apply_masks()
    return model
