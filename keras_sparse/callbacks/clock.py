"""`UpdateClock`: which optimizer steps a callback acts on, and where a fit is.

Mask rules and loggers that act every few steps share one clock. Steps are
the model's own step counter (`model.optimizer.iterations` after the step),
so a second `fit`, a `fit` after loading a `.keras` file and a run resumed by
`BackupAndRestore` continue where the counter stands. During `fit` the clock
counts steps in Python and reads the device only when a due step may have
passed (and once per epoch, to stay exact when something else moves the
counter), so a batch that is not due costs an integer test.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_end_step, check_int, check_interval

__all__ = ["UpdateClock", "ScheduleClock"]


class UpdateClock:
    """Due steps `begin_step <= t <= end_step` with `t % delta_t == 0`.

    `end_step` is included, as in rigl; step 0 (before any training) is
    never due. Works on Python ints and on traced tensors (`is_due`,
    `captures`), so the train step can ask it too.

    Args:
        delta_t: steps between due steps, an int >= 1, or "epoch" (the steps
            per epoch `fit` gives).
        begin_step: first step that may be due (>= 0).
        end_step: last step that may be due (included), or None.
        default_end: what `end_step=None` means: None (no end), or a
            fraction of the steps the current `fit` plans (`epochs * steps`,
            `epochs` counted from epoch 0).
        who: the owner's name, for messages.

    Raises:
        TypeError, ValueError: a bad `delta_t`, `begin_step` or `end_step`,
            naming it; from `start`, a `delta_t="epoch"` or an
            `end_step=None` that `fit` gives no numbers for.

    Example:

    ```python
    clock = UpdateClock(delta_t=100, end_step=5000)
    clock.is_due(300), clock.rounds(350)        # (True, 3)
    ```
    """

    def __init__(self, delta_t=1, begin_step=0, end_step=None, default_end=None, who=""):
        self.delta_t = check_interval(delta_t, "delta_t")
        self.begin_step = check_int(begin_step, "begin_step", minimum=0)
        self.end_step = check_end_step(end_step, self.begin_step)
        self.default_end = default_end
        self.who = who
        self.params = {}
        self.step = None  # the step counter after the last batch seen
        self._batch_begin = 0
        self._first_epoch = None
        self._epoch_start = False

    # -- which steps are due ----------------------------------------------------

    def bounds(self):
        """`(delta_t, end_step)` with "epoch" and `None` resolved from `fit`'s params.

        `end_step` is None when there is no end.
        """
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        delta = self.delta_t
        if delta == "epoch":
            if not steps:
                raise ValueError(
                    '`delta_t`="epoch" needs the number of steps per epoch; fit on data '
                    "of known size or pass `steps_per_epoch`, or give `delta_t` as an int.")
            delta = steps
        end = self.end_step
        if end is None and self.default_end is not None:
            if not steps or not epochs:
                raise ValueError(
                    f"`end_step`=None means {self.default_end:.0%} of the planned steps, "
                    "which fit does not know here; pass `end_step` as an int.")
            end = int(self.default_end * epochs * steps)
            if end <= self.begin_step:
                raise ValueError(
                    f"`end_step`=None resolves to {end} ({self.default_end:.0%} of {epochs} "
                    f"epochs x {steps} steps), not after `begin_step`={self.begin_step}.")
        return delta, end

    def _first(self):
        return max(self.begin_step, 1)

    def is_due(self, step):
        """True at due steps; works on ints and on traced tensors."""
        delta, end = self.bounds()
        due = (step % delta == 0) & (step >= self._first())
        return due if end is None else due & (step <= end)

    def captures(self, step):
        """For the train step: whether the step of 0-based index `step` ends due.

        The step being run is `step + 1` once done; a rule reading that
        step's dense gradient asks for it exactly then.
        """
        return self.is_due(step + 1)

    def rounds(self, step):
        """Due steps in `[1, step]`: the round counter of an update at `step`."""
        delta, end = self.bounds()
        high = step if end is None else min(step, end)
        return max(0, high // delta - (self._first() - 1) // delta)

    def round_step(self, rounds):
        """The step of due round `rounds` (1-based)."""
        delta, _ = self.bounds()
        return -(-self._first() // delta) * delta + (rounds - 1) * delta

    def next_due(self, step):
        """The first due step after `step`, or None if none is left."""
        delta, end = self.bounds()
        candidate = -(-max(step + 1, self._first()) // delta) * delta
        return candidate if end is None or candidate <= end else None

    def latest_due(self, low, high):
        """The latest due step in `[low, high]`, or None."""
        done, now = self.rounds(low - 1), self.rounds(high)
        return self.round_step(now) if now > done else None

    # -- following a fit ----------------------------------------------------------

    def start(self, params):
        """At `on_train_begin`: takes `fit`'s params; bad settings raise here."""
        self.params = dict(params or {})
        self.bounds()
        self.step, self._first_epoch = None, None

    def epoch_begin(self, epoch):
        """At `on_epoch_begin`: the step counter is read at the epoch's first batch."""
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._epoch_start = True

    def batch_begin(self, batch, model):
        """At `on_train_batch_begin`; True at the first batch of the fit.

        Reads the step counter at each epoch's first batch (after
        `BackupAndRestore` and other callbacks' `on_epoch_begin`).
        """
        first = self.step is None
        if first or self._epoch_start:
            self.step = self.now(model)
            self._epoch_start = False
        self._batch_begin = batch
        return first

    def batch_end(self, batch, model):
        """At `on_train_batch_end`: the latest due step the batch passed, or None.

        With `steps_per_execution > 1` one call may pass several due steps
        (only the latest is returned) or, at a short last execution, be
        reported past the real step: the device is read whenever a due step
        looks passed.
        """
        step = self.step + batch - self._batch_begin + 1
        if self.latest_due(self.step + 1, step) is not None:
            step = self.now(model)
        due = self.latest_due(self.step + 1, step)
        self.step = step
        return due

    @staticmethod
    def now(model):
        """The model's step counter, read from the device."""
        return int(keras_compat.to_numpy(model.optimizer.iterations))

    def warn_if_idle(self, start):
        """Warns, before the first step, if this fit reaches no due step.

        The fit runs steps `start + 1 ...` up to `start` plus the steps of
        its remaining epochs (unknown without `steps`: no warning).
        """
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        if not steps or not epochs or self._first_epoch is None:
            return
        last = start + (epochs - self._first_epoch) * steps
        upcoming = self.next_due(start)
        if upcoming is not None and upcoming <= last:
            return
        delta, end = self.bounds()
        if self.end_step is None:
            how = (f"end_step=None resolved to {end}, {self.default_end:.0%} of the {epochs} "
                   f"epochs x {steps} steps this fit plans counted from epoch 0")
        else:
            how = f"end_step={end}"
        if upcoming is None and start >= self.begin_step:
            reason = (f"the update schedule ended at step {end} ({how}) and the "
                      f"model's step counter (optimizer.iterations) is already {start}")
            advice = ("To continue dynamic sparse training, pass a later `end_step`, or "
                      "continue the run with fit(epochs=<total epochs>, "
                      "initial_epoch=<epochs done>) so that end_step=None covers it.")
        elif upcoming is None:
            reason = (f"this fit ends at step {last}, and the schedule has no update step "
                      f"between begin_step={self.begin_step} and {how}")
            advice = "Check `begin_step`, `end_step` and `delta_t`."
        else:
            reason = (f"this fit runs steps {start + 1} to {last}, and the next update is "
                      f"at step {upcoming} (every delta_t={delta} steps from "
                      f"begin_step={self.begin_step})")
            advice = "Train longer, or pass a smaller `delta_t`."
        warnings.warn(f"{self.who}: this fit will make no mask update: {reason}. {advice}",
                      stacklevel=2)

    def get_config(self):
        return {"delta_t": self.delta_t, "begin_step": self.begin_step,
                "end_step": self.end_step}


class ScheduleClock(UpdateClock):
    """An `UpdateClock` whose due steps are those a schedule selects.

    For pruning schedules (`schedule(step) -> (should_prune, sparsity)`):
    the schedules of `ks.schedules` answer `prunes_at(step)` in Python;
    any other (a tfmot instance, say) is evaluated for `window` steps at a
    time in one vectorized compiled call, since asking step by step costs a
    device round trip per step.

    Args:
        schedule: the pruning schedule.
        window: steps evaluated per compiled call for schedules without
            `prunes_at` (1,024).

    Example:

    ```python
    clock = ScheduleClock(ks.schedules.ConstantSparsity(0.5, 0, frequency=100))
    clock.is_due(200)      # True
    ```
    """

    def __init__(self, schedule, window=1024, who=""):
        super().__init__(who=who)
        self.schedule = schedule
        self.window = window
        self._flags = self._window = None

    def bounds(self):
        return 1, None

    def is_due(self, step):
        if hasattr(self.schedule, "prunes_at"):
            return self.schedule.prunes_at(step)
        start = step - step % self.window
        if self._window is None or self._window[0] != start:
            if self._flags is None:
                self._flags = tf.function(lambda steps: tf.vectorized_map(
                    lambda s: tf.cast(self.schedule(s)[0], tf.bool), steps))
            flags = self._flags(tf.range(start, start + self.window, dtype=tf.int64))
            self._window = (start, frozenset(start + int(i) for i in np.flatnonzero(flags)))
        return step in self._window[1]

    def latest_due(self, low, high):
        return next((s for s in range(high, low - 1, -1) if self.is_due(s)), None)
