"""Drop-fraction schedules of dynamic sparse training.

A drop schedule maps the step `t` of a mask update to the fraction `f_t` of
each layer's active weights that is dropped (and regrown) there:
`drop_schedule(t, alpha, end_step) -> float`. `DynamicSparsity` calls it
with the step and the end counted from its `begin_step`
(`drop_schedule(t - begin_step, alpha, end_step - begin_step)`), so every
schedule runs over `[begin_step, end_step]` (rigl's TF1 code passes the
unshifted step: the same when `begin_step=0`). It is the `drop_schedule=`
argument of `ks.callbacks.DynamicSparsity` and its presets, not to be
confused with the pruning schedules of `ks.schedules`
(`schedule(step) -> (should_prune, sparsity)`).
"""

import math

import keras
import tensorflow as tf

from keras_sparse.utils.serialization import Configurable, lookup

__all__ = ["SCHEDULES", "Constant", "CosineDecay", "DropSchedule", "LinearDecay", "drop_count", "get"]


class DropSchedule(Configurable):
    """Base class: `__call__(step, alpha, end_step)` returns `f_t` in [0, 1].

    Subclass it for a custom schedule and implement `__call__` (and
    `get_config` if it takes arguments).

    Example:

    ```python
    class Halving(DropSchedule):
        def __call__(self, step, alpha, end_step):
            return alpha * 0.5 ** (step // 1000)
    ks.callbacks.DynamicSparsity(grow="gradient", drop_schedule=Halving())
    ```
    """

    def __call__(self, step, alpha, end_step):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_sparse")
class CosineDecay(DropSchedule):
    """`f_t = alpha / 2 * (1 + cos(pi * t / end_step))` (RigL's default).

    `DynamicSparsity` passes `t` and `end_step` counted from its
    `begin_step`, so the decay spans `[begin_step, end_step]`. (rigl's TF1
    code decays the unshifted step over `end_step - begin_step`, reaching 0
    at step `end_step - begin_step`; the same when `begin_step=0`.)
    Past `end_step` the value stays at 0.

    Example:

    ```python
    CosineDecay()(50, alpha=0.3, end_step=100)   # 0.15
    ```
    """

    def __call__(self, step, alpha, end_step):
        progress = min(step, end_step) / end_step
        return alpha / 2.0 * (1.0 + math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="keras_sparse")
class Constant(DropSchedule):
    """`f_t = alpha` at every update (SET's original schedule).

    Example:

    ```python
    Constant()(50, alpha=0.3, end_step=100)   # 0.3
    ```
    """

    def __call__(self, step, alpha, end_step):
        return float(alpha)


@keras.saving.register_keras_serializable(package="keras_sparse")
class LinearDecay(DropSchedule):
    """`f_t = alpha * (1 - t / end_step)`, 0 from `end_step` on.

    Like every schedule, called with `t` and `end_step` counted from the
    callback's `begin_step`.

    Example:

    ```python
    LinearDecay()(50, alpha=0.3, end_step=100)   # 0.15
    ```
    """

    def __call__(self, step, alpha, end_step):
        return alpha * (1.0 - min(step, end_step) / end_step)


SCHEDULES = {"cosine": CosineDecay, "constant": Constant, "linear": LinearDecay}


def get(drop_schedule, argument="drop_schedule"):
    """A `DropSchedule` from a name in `SCHEDULES`, an instance or a config.

    Args:
        drop_schedule: a name, a `DropSchedule` or a config.
        argument: the argument's name, for messages.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name, a config nor a `DropSchedule`.

    Example:

    >>> get("cosine")(0, alpha=0.3, end_step=100)
    0.3
    """
    return lookup(drop_schedule, argument, SCHEDULES, DropSchedule)


# Products within this relative distance below an integer count as that
# integer: float64 `0.7 * 90` is 62.99999999999999, yet 63 weights are meant.
# Rounding errors of a float64 product are ~1e-16 relative; 1e-12 leaves a
# wide margin and changes nothing for fractions given with up to ~11
# significant digits.
_COUNT_EPSILON = 1e-12


def drop_count(fraction, n_active):
    """`floor(fraction * n_active)`, robust to float64 rounding (graph code).

    Args:
        fraction: the drop fraction, a float64 scalar tensor or a float.
        n_active: the number of active weights, an int64 tensor or an int.

    Returns:
        An int64 tensor.

    Example:

    >>> int(drop_count(0.7, 90))    # float64 0.7 * 90 is 62.99999999999999
    63
    """
    # convert_to_tensor, not cast: casting a Python float goes through float32.
    fraction = (tf.cast(fraction, tf.float64) if tf.is_tensor(fraction)
                else tf.convert_to_tensor(fraction, tf.float64))
    product = fraction * tf.cast(n_active, tf.float64)
    return tf.cast(tf.floor(product * (1.0 + _COUNT_EPSILON)), tf.int64)
