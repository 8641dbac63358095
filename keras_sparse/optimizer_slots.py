"""Finds the optimizer variables (slots) that belong to a model variable."""

import tensorflow as tf


def _innermost(optimizer):
    # LossScaleOptimizer (mixed precision) keeps the real slots inside.
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _prefix(variable):
    return variable.path.replace("/", "_") + "_"


def slots_for(optimizer, variable):
    """Every slot of `variable` (momentum, Adam m and v, EMA, ...).

    Keras names a slot `<variable.path with / as _>_<slot name>` and gives it
    the variable's shape (`Optimizer.add_variable_from_reference`). A slot
    also matching a longer variable prefix (`dense/w_1` vs `dense/w`) belongs
    to that variable.
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    inner = _innermost(optimizer)
    prefix = _prefix(variable)
    longer = [
        p for p in map(_prefix, inner._trainable_variables)
        if len(p) > len(prefix) and p.startswith(prefix)
    ]
    return [
        slot
        for slot in inner.variables
        if slot.name.startswith(prefix)
        and not any(slot.name.startswith(p) for p in longer)
        and tuple(slot.shape) == tuple(variable.shape)
    ]


def initial_value(optimizer, variable, slot):
    """The value a fresh `slot` of `variable` starts from.

    0 for every Keras slot except the `accumulator` of Adagrad and Ftrl,
    which starts at `initial_accumulator_value` (Ftrl divides by a function
    of it, so a zero accumulator would turn inactive weights into NaN).
    """
    inner = _innermost(optimizer)
    if slot.name == _prefix(variable) + "accumulator":
        return float(getattr(inner, "initial_accumulator_value", 0.0))
    return 0.0


def reset_slots(optimizer, variable, keep):
    """Resets the slots of `variable` to their initial value where `keep` is 0.

    interpretation: SPEC §3.2 "reset to 0" means "reset to the state of a
    fresh slot"; that is 0 for momentum, Adam m/v, RMSprop and the like, and
    `initial_accumulator_value` for Adagrad/Ftrl accumulators. Usable inside
    `tf.function`.
    """
    for slot in slots_for(optimizer, variable):
        kept = tf.cast(keep, slot.dtype)
        value = tf.convert_to_tensor(slot) * kept
        init = initial_value(optimizer, variable, slot)
        if init:
            value += init * (1.0 - kept)
        slot.assign(value)
