"""Pruning schedules with tensorflow-model-optimization's protocol.

A schedule is called with the training step and returns two tensors,
`(should_prune, sparsity)`. The classes here have tfmot's signatures and
semantics (`ConstantSparsity`, `PolynomialDecay`, the same names and
arguments); any object following the protocol, a tfmot schedule instance
included, can be used wherever a schedule is taken.
"""

import keras
import tensorflow as tf

from keras_sparse.utils.argument_validation import check_int, check_sparsity
from keras_sparse.utils.serialization import Configurable

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "check_schedule",
    "deserialize",
    "serialize",
]


class PruningSchedule(Configurable):
    """Base of the schedules: `schedule(step) -> (should_prune, sparsity)`.

    Pruning happens at steps `begin_step, begin_step + frequency, ...` up to
    `end_step` included (`end_step=-1`: forever), as in tfmot.

    Args:
        begin_step: first step at which masks are updated (>= 0).
        end_step: last step at which they may be updated (>= begin_step),
            or -1 for no end where the schedule allows it.
        frequency: steps between updates (>= 1).

    Raises:
        TypeError, ValueError: `begin_step` < 0, `end_step` before
            `begin_step`, or `frequency` < 1, naming it.

    Example:

    ```python
    class Step(PruningSchedule):          # 0.5 until step 1000, then 0.9
        def __call__(self, step):
            sparsity = tf.where(step < 1000, 0.5, 0.9)
            return self._should_prune(step), sparsity
    ```
    """

    _allow_no_end = False

    def __init__(self, begin_step, end_step, frequency):
        check_int(begin_step, "begin_step", minimum=0)
        check_int(frequency, "frequency", minimum=1)
        if not (self._allow_no_end and end_step == -1):
            check_int(end_step, "end_step", minimum=begin_step,
                      allowed=" (the begin_step)" + (" or -1 (no end)" if self._allow_no_end else ""))
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def prunes_at(self, step):
        """Python `should_prune` for an integer step (no TensorFlow op)."""
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def _should_prune(self, step):
        step = tf.convert_to_tensor(step)
        in_range = tf.logical_and(
            step >= self.begin_step,
            tf.logical_or(step <= self.end_step, self.end_step < 0),
        )
        turn = tf.equal(tf.math.floormod(step - self.begin_step, self.frequency), 0)
        return tf.logical_and(in_range, turn)

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="keras_sparse")
class ConstantSparsity(PruningSchedule):
    """The same sparsity at every pruning step (tfmot's `ConstantSparsity`).

    Args:
        target_sparsity: sparsity in [0, 1).
        begin_step: first pruning step.
        end_step: last pruning step; -1 (default) prunes until training ends.
        frequency: steps between pruning steps (100).

    Raises:
        TypeError, ValueError: a sparsity outside [0, 1), `begin_step` < 0,
            `end_step` before `begin_step`, or `frequency` < 1, naming it.

    Example:

    ```python
    schedule = ks.schedules.ConstantSparsity(0.8, begin_step=0, frequency=100)
    should_prune, sparsity = schedule(tf.constant(200))   # True, 0.8
    ```
    """

    _allow_no_end = True

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        check_sparsity(target_sparsity, "target_sparsity")
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = target_sparsity

    def __call__(self, step):
        return self._should_prune(step), tf.constant(self.target_sparsity, tf.float32)

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_sparse")
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` (Zhu & Gupta).

    `s_t = s_f + (s_i - s_f) * (1 - clip((t - t0) / (t1 - t0), 0, 1))**power`,
    computed in float32 as tfmot does; masks are updated every `frequency`
    steps from `begin_step` (t0) to `end_step` (t1) included.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first pruning step (>= 0).
        end_step: last pruning step (>= begin_step; no -1 here).
        power: exponent of the decay (3, the cubic schedule).
        frequency: steps between pruning steps (100).

    Raises:
        TypeError, ValueError: a sparsity outside [0, 1), `begin_step` < 0,
            `end_step` before `begin_step`, or `frequency` < 1, naming it.

    Example:

    ```python
    schedule = ks.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
    callback = ks.callbacks.GradualMagnitudePruning(schedule)
    ```
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        check_sparsity(initial_sparsity, "initial_sparsity")
        check_sparsity(final_sparsity, "final_sparsity")
        super().__init__(begin_step, end_step, frequency)
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power

    def __call__(self, step):
        step = tf.convert_to_tensor(step)
        # end_step == begin_step: tfmot divides by zero; here the step is final.
        span = max(self.end_step - self.begin_step, 1)
        progress = tf.minimum(1.0, tf.maximum(
            0.0, tf.cast(step - self.begin_step, tf.float32) / span))
        sparsity = (self.initial_sparsity - self.final_sparsity) * tf.pow(
            1.0 - progress, self.power) + self.final_sparsity
        return self._should_prune(step), sparsity

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity, "power": self.power,
                **super().get_config()}


_TFMOT_NAMES = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def check_schedule(schedule, name="schedule"):
    """Returns `schedule` if it is callable as `schedule(step) -> (bool, sparsity)`.

    Args:
        schedule: a pruning schedule (this package's or tfmot's).
        name: the argument's name, for the message.

    Returns:
        `schedule`, unchanged.

    Raises:
        TypeError: `schedule` is not callable.

    Example:

    ```python
    check_schedule(ks.schedules.ConstantSparsity(0.5, begin_step=0))
    ```
    """
    if not callable(schedule):
        raise TypeError(
            f"`{name}` must be a pruning schedule, callable as schedule(step) -> "
            f"(should_prune, sparsity) (e.g. ks.schedules.PolynomialDecay); "
            f"got {schedule!r}."
        )
    return schedule


def serialize(schedule):
    """Config of any schedule; tfmot's two classes map to the ones here.

    Args:
        schedule: a pruning schedule with `get_config`.

    Returns:
        A dict for `deserialize` (and `keras.saving.deserialize_keras_object`).

    Example:

    ```python
    config = serialize(ks.schedules.PolynomialDecay(0.0, 0.9, 0, 1000))
    ```
    """
    config = schedule.get_config()
    if (not isinstance(schedule, PruningSchedule)
            and type(schedule).__name__ in _TFMOT_NAMES
            and set(config) == {"class_name", "config"}):
        # Same signature and semantics: restore without importing tfmot.
        schedule = _TFMOT_NAMES[type(schedule).__name__](**config["config"])
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config):
    """Inverse of `serialize`.

    Args:
        config: what `serialize` returned.

    Returns:
        The schedule object.

    Example:

    ```python
    schedule = deserialize(serialize(schedule))
    ```
    """
    return keras.saving.deserialize_keras_object(config)
