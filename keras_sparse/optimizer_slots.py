"""Finds the optimizer variables (slots) that belong to a model variable."""

import keras
import tensorflow as tf

from keras_sparse.utils import keras_compat

__all__ = ["check_elementwise", "initial_value", "reset_slots", "slots_for"]


def check_elementwise(optimizer, who):
    """Refuses an optimizer whose update of a weight reads other weights.

    Inactive weights stay 0.0 only under an element-wise update (SGD,
    momentum, Adam, AdamW, RMSprop, Adagrad, Lion, ...): a zero gradient on a
    zero weight with zero slots gives a zero update.

    Raises:
        TypeError: Muon (it orthogonalizes whole kernel updates).

    Example:

    >>> check_elementwise(keras.optimizers.SGD(), "fit")
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if isinstance(inner, getattr(keras.optimizers, "Muon", ())):  # absent in older Keras
        raise TypeError(
            f"{who}: optimizer Muon updates each kernel as a whole (orthogonalized), "
            "so inactive weights would not stay 0; use an element-wise optimizer "
            "(SGD, Adam, AdamW, RMSprop, Lion, ...)."
        )


def _innermost(optimizer):
    # LossScaleOptimizer (mixed precision) keeps the real slots inside.
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _prefix(variable):
    return variable.path.replace("/", "_") + "_"


def slots_for(optimizer, variable, variables=None):
    """Every slot of `variable` (momentum, Adam m and v, EMA, ...).

    Keras names a slot `<variable.path with / as _>_<slot name>` and gives it
    the variable's shape (`Optimizer.add_variable_from_reference`). A slot
    also matching a longer variable prefix (`dense/w_1` vs `dense/w`) belongs
    to that variable: pass the optimized variables (the model's
    `trainable_variables`) as `variables` to tell them apart.

    Args:
        optimizer: a Keras optimizer (a loss-scale wrapper is looked into),
            or None.
        variable: a model variable.
        variables: the other variables the optimizer updates; None: those
            it was built with.

    Returns:
        A list of optimizer variables (empty before the optimizer is built).

    Example:

    ```python
    slots_for(model.optimizer, mw.weight, model.trainable_variables)
    ```
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    inner = _innermost(optimizer)
    if variables is None:
        variables = keras_compat.optimized_variables(inner)
    prefix = _prefix(variable)
    longer = [
        p for p in map(_prefix, variables)
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


def reset_slots(optimizer, variable, keep, variables=None):
    """Resets the slots of `variable` to their initial value where `keep` is 0.

    interpretation: "the slots of a dropped or grown weight are reset to 0"
    means "reset to the state of a fresh slot"; that is 0 for momentum, Adam
    m/v, RMSprop and the like, and `initial_accumulator_value` for
    Adagrad/Ftrl accumulators. Usable inside `tf.function`. Reset values
    are selected, not multiplied, so a NaN or Inf slot entry is cleared too.

    Args:
        optimizer: a Keras optimizer, or None (nothing to reset).
        variable: a model variable.
        keep: True (or non-zero) where the slots keep their value, False
            (or 0) where they are reset.
        variables: the optimized variables (see `slots_for`).
    """
    slots = slots_for(optimizer, variable, variables)
    if not slots:
        return
    keep = tf.convert_to_tensor(keep)
    if keep.dtype != tf.bool:
        keep = tf.not_equal(keep, tf.zeros_like(keep))
    for slot in slots:
        value = tf.convert_to_tensor(slot)
        init = tf.fill(tf.shape(value), tf.constant(initial_value(optimizer, variable, slot),
                                                     value.dtype))
        # Selection: a NaN or Inf slot value is replaced, not multiplied by 0.
        slot.assign(tf.where(keep, value, init))
