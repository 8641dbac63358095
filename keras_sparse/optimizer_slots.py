"""Finds the optimizer variables (slots) that belong to a model variable."""


def _innermost(optimizer):
    # LossScaleOptimizer (mixed precision) keeps the real slots inside.
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def slots_for(optimizer, variable):
    """Every slot of `variable` (momentum, Adam m and v, EMA, ...).

    Keras names a slot `<variable.path with / as _>_<slot name>` and gives it
    the variable's shape (`Optimizer.add_variable_from_reference`).
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    prefix = variable.path.replace("/", "_") + "_"
    return [
        slot
        for slot in _innermost(optimizer).variables
        if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape)
    ]
