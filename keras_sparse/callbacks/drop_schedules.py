"""Drop-fraction schedules of dynamic sparse training (SPEC §5).

A schedule maps the global step `t` of a mask update to the fraction `f_t`
of each layer's active weights that is dropped (and regrown) there:
`schedule(t, alpha, end_step) -> float`.
"""

import math

import keras

from keras_sparse.callbacks.parts import lookup


class DropSchedule:
    """Base class: `__call__(step, alpha, end_step)` returns `f_t` in [0, 1].

    Subclass it for a custom schedule and implement `__call__` (and
    `get_config` if it takes arguments).

    Example:

    ```python
    class Halving(DropSchedule):
        def __call__(self, step, alpha, end_step):
            return alpha * 0.5 ** (step // 1000)
    ks.callbacks.DynamicSparsity(grow="gradient", schedule=Halving())
    ```
    """

    def __call__(self, step, alpha, end_step):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_sparse")
class CosineDecay(DropSchedule):
    """`f_t = alpha / 2 * (1 + cos(pi * t / end_step))` (RigL's default).

    `t` is the global step (not `t - begin_step`), exactly as SPEC §5 writes
    it; past `end_step` the value stays at 0.

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

    Example:

    ```python
    LinearDecay()(50, alpha=0.3, end_step=100)   # 0.15
    ```
    """

    def __call__(self, step, alpha, end_step):
        return alpha * (1.0 - min(step, end_step) / end_step)


SCHEDULES = {"cosine": CosineDecay, "constant": Constant, "linear": LinearDecay}


def get(schedule):
    """A `DropSchedule` from a name in `SCHEDULES`, an instance or a config."""
    return lookup(schedule, "schedule", SCHEDULES, DropSchedule)
