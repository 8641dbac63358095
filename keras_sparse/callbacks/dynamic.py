"""`DynamicSparsity`: drop-and-grow training of a `SparseModel`.

The callback composes the parts: an `UpdateClock` (which steps update), a
drop rule, a grow rule and an optional redistribution (`DropGrowUpdate`,
one compiled update of every layer), a drop-fraction schedule, and an
`UpdateLog` (the `dst/*` logs).
"""

import os

import keras

from keras_sparse import structures
from keras_sparse.callbacks import drop_grow, drop_schedules
from keras_sparse.callbacks.base import MaskCallback, require_inactive_weights
from keras_sparse.callbacks.clock import UpdateClock
from keras_sparse.callbacks.drop_grow_update import ITOP, DropGrowUpdate, drop_count
from keras_sparse.callbacks.update_log import UpdateLog
from keras_sparse.utils.argument_validation import (
    check_int, check_number, check_number_or_word, check_path)

__all__ = ["ITOP", "DynamicSparsity", "drop_count"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class DynamicSparsity(MaskCallback):
    """Drop-and-grow training: the general form of SET, RigL, SNFS, DST-EE.

    Every `delta_t` steps while `begin_step <= t <= end_step` (`end_step`
    included, as in rigl; `t` the model's step counter
    `model.optimizer.iterations` after the step), each layer drops the
    `n = floor(f_t * n_active)` active weights with the lowest `drop` score
    (exactly: `f_t = 0.7` of 90 drops 63; see `drop_count`) and grows the
    `n` highest-`grow`-scored positions among those inactive after the drop
    (a just-dropped weight may come back; it restarts from `grow_init`). Sparsity never changes, except that a `redistribution`
    moves regrowth between layers while keeping the global count. Dropped
    weights and their optimizer slots become 0; grown weights become
    `grow_init` and their slots 0. A layer whose scores contain NaN or Inf
    keeps its mask (with a warning). With `steps_per_execution > 1` an
    update runs at the first batch end at or after its step (once, if
    several update steps fall in one execution).

    All layers' masks are computed in one compiled `tf.function` from the
    mirrored weights and the all-reduced dense gradients, in cross-replica
    context, so replicas agree by construction. Rule state (the ever-active
    union for ITOP, DST-EE counters, the SNFS gradient momentum) lives in
    model variables, saved by `.keras` files, checkpoints and
    `BackupAndRestore`; the round counter `t` is derived from the step.

    Logged into `logs` at each epoch end (History, CSVLogger, progress bar,
    and a `keras.callbacks.TensorBoard` listed after this callback):
    `dst/drop_fraction` (`f_t` of the epoch's last update, 0 if none),
    `dst/updates` (updates in the epoch), `dst/changed` (connections grown
    where there was none, summed over updates and layers), `dst/churn`
    (`dst/changed` over the active connections of those updates),
    `dst/itop` (in-time over-parameterization: the fraction of prunable
    weights active at any time since training began),
    `dst/regrown_fraction` (of the connections grown in the epoch, the
    fraction in the ever-active union before their update; 0 if none grew),
    `dst/grown_ever` (the union minus the active count) and `dst/update_ms`
    (mean wall time of one update; the first of a `fit` also pays tracing).

    Repeated fits: the schedule follows the model's step counter, not the
    fit, so a second `fit`, a `fit` after `keras.saving.load_model` (the
    `.keras` file holds the optimizer's step counter) or a run resumed by
    `BackupAndRestore` continues it where it stopped; a new callback
    instance with the same arguments continues it the same way. With
    `end_step=None` the end is 75% of `epochs * steps` of the current fit,
    `epochs` counted from epoch 0: continue a run with `fit(epochs=total,
    initial_epoch=done)`, or give `end_step` as an int. A fit that will make no update
    (the schedule has ended, has not begun, or the fit is shorter than the
    wait for the next update) says so with a warning before its first step.

    With `log_dir`, every update also writes these (and `changed`, `itop`,
    `sparsity` per weight path) to TensorBoard (needs `tensorboard`).

    Structured weights (`ks.structures`) keep their structure: with blocks
    the round drops and grows whole blocks scored by their summed scores;
    with N:M every group regrows within itself what the layer's drop took
    from it (see `DropGrowUpdate` for the reading and the papers).

    Args:
        drop: drop rule: a name in `drop_grow.RULES` ("magnitude") or a
            `drop_grow.Rule`; the lowest scores are dropped.
        grow: grow rule: "random" (SET), "gradient" (RigL), "momentum"
            (SNFS), or a `Rule` such as `Gradient() + Exploration(c)`.
        drop_schedule: drop-fraction schedule `f_t`: "cosine" (default),
            "constant", "linear" or a `ks.callbacks.DropSchedule`. It is
            called with the step and the end counted from `begin_step`, so
            the cosine decays over `end_step - begin_step`:
            `f_t = alpha / 2 * (1 + cos(pi * (t - begin_step) / (end_step - begin_step)))`.
        delta_t: steps between updates (int >= 1), or "epoch" for the
            number of steps per epoch given by `fit`.
        begin_step: first step at which an update may happen (>= 0).
        end_step: last step at which an update may happen (included, as in
            rigl); `None` means 75% of the steps the current `fit` plans,
            `epochs * steps` with `epochs` counted from epoch 0 (continue a
            run with `initial_epoch`; see "Repeated fits" above).
        alpha: initial drop fraction, in [0, 1].
        grow_init: value of grown weights: "zeros" or a number.
        redistribution: `None` (each layer regrows what it dropped) or
            "mean_score" (SNFS: regrowth in proportion to each layer's
            mean grow score over its active weights).
        seed: seed of the stateless RNG, keyed by (seed, step, layer).
        log_dir: directory for per-update TensorBoard summaries, or `None`.
        structure: `None` (default: each weight's own structure, set by
            `ks.sparsify(..., structure=...)`) or a structure the model's
            weights must hold (a ValueError at `fit` otherwise).

    Raises:
        TypeError, ValueError: a bad argument, naming it (before training).
        ValueError: before the first step of `fit`, a model with no
            inactive weight (all masks ones: set a sparsity first), or a
            `drop_schedule` giving a fraction outside [0, 1] at the fit's
            first update step.

    Example:

    ```python
    cb = ks.callbacks.DynamicSparsity(
        drop="magnitude",
        grow=ks.callbacks.Gradient() + ks.callbacks.Exploration(c=1e-4),
        drop_schedule="cosine", delta_t=100, alpha=0.3)
    model.fit(x, y, epochs=10, callbacks=[cb])
    ```
    """

    _default_drop_schedule = "cosine"  # what drop_schedule=None means (SET: "constant")

    # One per fit: two would both rewrite the masks (SparseModel.fit refuses).
    exclusive_group = "dynamic sparse training"

    def __init__(self, drop="magnitude", grow="gradient", drop_schedule=None,
                 delta_t=100, begin_step=0, end_step=None, alpha=0.3,
                 grow_init="zeros", redistribution=None, seed=0, log_dir=None,
                 structure=None):
        super().__init__()
        self.structure = None if structure is None else structures.get(structure)
        if drop_schedule is None:
            drop_schedule = self._default_drop_schedule
        self.drop = drop_grow.get_rule(drop, "drop")
        self.grow = drop_grow.get_rule(grow, "grow")
        self.drop_schedule = drop_schedules.get(drop_schedule)
        self.redistribution = drop_grow.get_redistribution(redistribution)
        self.clock = UpdateClock(delta_t, begin_step, end_step, default_end=0.75,
                                 who=type(self).__name__)
        self.alpha = check_number(alpha, "alpha", 0, 1)
        self.grow_init = check_number_or_word(grow_init, "grow_init", "zeros")
        self.seed = check_int(seed, "seed", minimum=0)
        self.log_dir = check_path(log_dir, "log_dir")
        parts = self.drop.parts() + self.grow.parts()
        self._reads_gradient = any(p.needs_gradient for p in parts)
        momenta = {p.momentum for p in parts if p.momentum}
        if len(momenta) > 1 or (momenta and self._reads_gradient):
            raise ValueError(
                "`drop`/`grow`: the model keeps one dense-gradient buffer, so "
                "rules cannot mix the step's gradient and gradient momenta "
                f"{sorted(momenta)}; got drop={drop!r}, grow={grow!r}."
            )
        self._momentum = momenta.pop() if momenta else 0.0
        self._config = dict(drop=drop, grow=grow, drop_schedule=drop_schedule,
                            redistribution=redistribution)
        grow_value = 0.0 if grow_init == "zeros" else float(grow_init)
        self.update = DropGrowUpdate(self.drop, self.grow, self.redistribution, grow_value,
                                     self.seed)
        self.log = UpdateLog(type(self).__name__, log_dir)

    delta_t = property(lambda self: self.clock.delta_t)
    begin_step = property(lambda self: self.clock.begin_step)
    end_step = property(lambda self: self.clock.end_step)

    def set_model(self, model):
        super().set_model(model)
        if not model.masked_weights:
            raise ValueError(
                f"{type(self).__name__}: model {model.name!r} has no built "
                "prunable weights; build it (call it on data) first."
            )
        structures.check_agrees(model.masked_weights, self.structure, type(self).__name__)
        with model.distribute_strategy.scope():
            self.update.build(model)
        if self._reads_gradient:
            model.request_dense_gradients(when=self.clock.captures, owner=self)
        elif self._momentum:
            model.request_dense_gradients(momentum=self._momentum, owner=self)

    def set_params(self, params):
        super().set_params(params)
        self.clock.params = dict(params or {})

    # -- training hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.clock.start(self.params)  # bad settings fail before the first step
        fixed = [p.layer.name for p in self.model.masked_weights if p.storage is not None]
        if self.redistribution is not None and fixed:
            raise ValueError(
                f"{type(self).__name__}: `redistribution` moves active weights between "
                f"layers, but layers {fixed} (SparseDense compute='sparse') train a fixed "
                "number of them. Use redistribution=None, or compute='masked'."
            )
        upcoming = self.clock.next_due(self.clock.now(self.model))
        if upcoming is not None:  # a bad custom schedule fails before any step
            self._fraction(upcoming)

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.epoch_begin(epoch)
        self.log.new_epoch()

    def on_train_batch_begin(self, batch, logs=None):
        if self.clock.batch_begin(batch, self.model):
            # After every on_train_begin, so BackupAndRestore has restored.
            require_inactive_weights(self.model, type(self).__name__)
            self.log.union(*self.update.union(self.model), self._size())
            self.clock.warn_if_idle(self.clock.step)

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.batch_end(batch, self.model)
        if step is not None:
            self._update(step, self.clock.rounds(step))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            self.log.write(logs)

    def on_train_end(self, logs=None):
        self.clock.step = None
        # A later fit may use another rule; `set_model` asks again if this one is reused.
        self.model.release_dense_gradients(owner=self)

    # -- the update ---------------------------------------------------------------

    def update_masks(self, step=None):
        """Runs one drop-and-grow update now; returns per-layer statistics.

        The callback calls this at update steps; it is public for manual
        schedules and tests. The drop fraction is the schedule's at `step`
        (default: the optimizer's current step); the round counter is the
        number of scheduled updates up to `step` (at least 1). Growth reads
        the dense gradients the model stored last.

        Returns:
            `{weight path: {"dropped", "grown", "regrown", "changed",
            "active", "ever", "finite"}}` for this update (`regrown`: grown
            positions that had been active before).
        """
        if step is None:
            step = self.clock.now(self.model)
        step = check_int(step, "step", minimum=0)
        rounds = max(self.clock.rounds(step), 1)  # bad settings raise here, first
        self.log.union(*self.update.union(self.model), self._size())
        return self._update(step, rounds)

    @property
    def reads_dense_gradients(self):
        """Whether the update reads the dense gradients the model keeps
        (the step's gradient for RigL, its momentum for SNFS; not SET's)."""
        return bool(self._reads_gradient or self._momentum)

    def _size(self):
        return sum(mw.size for mw in self.model.masked_weights)

    def _fraction(self, step):
        """The drop fraction at `step`: the schedule run from `begin_step`.

        The schedule sees the step and the end counted from `begin_step`,
        so a decay spans `end_step - begin_step` (see drop_schedules).
        """
        _, end = self.clock.bounds()
        begin = self.begin_step
        fraction = float(self.drop_schedule(max(step - begin, 0), self.alpha, end - begin))
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"`drop_schedule` {type(self.drop_schedule).__name__} gave drop fraction "
                f"{fraction} at step {step}; it must be in [0, 1]."
            )
        return fraction

    def _update(self, step, rounds):
        fraction = self._fraction(step)
        out, elapsed_ms = self.update(self.model, step, fraction, rounds,
                                      self.reads_dense_gradients)
        return self.log.record(self.model.masked_weights, step, fraction, out, elapsed_ms)

    # -- config -------------------------------------------------------------------

    @classmethod
    def from_config(cls, config):
        """Builds the callback from `get_config()`'s output.

        Configs saved before `drop_schedule` had its name (as `schedule`)
        load too.
        """
        config = dict(config)
        if "schedule" in config and "drop_schedule" not in config:
            config["drop_schedule"] = config.pop("schedule")
        return cls(**config)

    def get_config(self):
        def spec(name, value):
            original = self._config[name]
            if original is None or isinstance(original, str):
                return original
            return keras.saving.serialize_keras_object(value)

        return dict(
            drop=spec("drop", self.drop), grow=spec("grow", self.grow),
            drop_schedule=spec("drop_schedule", self.drop_schedule), delta_t=self.delta_t,
            begin_step=self.begin_step, end_step=self.end_step, alpha=self.alpha,
            grow_init=self.grow_init,
            redistribution=spec("redistribution", self.redistribution),
            seed=self.seed,
            log_dir=None if self.log_dir is None else os.fspath(self.log_dir),
            structure=None if self.structure is None else keras.saving.serialize_keras_object(
                self.structure),
        )
