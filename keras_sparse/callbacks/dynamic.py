"""`DynamicSparsity`: drop-and-grow training of a `SparseModel`."""

import math
import os
import time
import warnings

import keras
import tensorflow as tf

from keras_sparse.callbacks import drop_grow, drop_schedules
from keras_sparse.callbacks.base import MaskCallback, require_inactive_weights
from keras_sparse.layers.registry import value_storages
from keras_sparse.masks import largest_mask, warn_non_finite
from keras_sparse.utils import keras_compat
from keras_sparse.utils import tensorboard
from keras_sparse.utils.argument_validation import check_int, check_number

__all__ = ["ITOP", "DynamicSparsity", "drop_count"]

ITOP = "itop"  # per-weight state: 1 where the weight was ever active


def _take_drop_schedule(drop_schedule, schedule, default, who):
    """Resolves `drop_schedule=` against its old name `schedule=`."""
    if schedule is None:
        return default if drop_schedule is None else drop_schedule
    if drop_schedule is not None:
        raise TypeError(
            f"{who}: pass the drop-fraction schedule once, as `drop_schedule=`; "
            f"got both drop_schedule={drop_schedule!r} and schedule={schedule!r}."
        )
    warnings.warn(
        f"{who}(schedule=...) is deprecated; pass the drop-fraction schedule as "
        "`drop_schedule=` (`schedule=` is the pruning schedule of "
        "GradualMagnitudePruning).",
        DeprecationWarning,
        stacklevel=3,
    )
    return schedule


@keras.saving.register_keras_serializable(package="keras_sparse")
class DynamicSparsity(MaskCallback):
    """Drop-and-grow training: the general form of SET, RigL, SNFS, DST-EE.

    Every `delta_t` steps while `begin_step <= t <= end_step` (`end_step`
    included, as in rigl; `t` the model's own step counter
    `model.optimizer.iterations` after the step), each layer drops the
    `n = floor(f_t * n_active)` active weights with the lowest `drop` score
    (computed so that float rounding cannot lose one: `f_t = 0.7` of 90
    drops 63; see `drop_count`) and
    grows the `n` highest-`grow`-scored positions among those inactive after
    the drop (a just-dropped weight may come back; it restarts from
    `grow_init`). Sparsity never changes, except that a `redistribution`
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

    - `dst/drop_fraction`: `f_t` of the epoch's last update (0 if none);
    - `dst/updates`: mask updates in the epoch;
    - `dst/changed`: connections moved (grown where there was none) in the
      epoch, summed over updates and layers;
    - `dst/churn`: `dst/changed` over the active connections of those
      updates (the mean fraction replaced per update);
    - `dst/itop`: in-time over-parameterization rate, the fraction of
      prunable weights active at any time since training began;
    - `dst/regrown_fraction`: of the connections grown in the epoch, the
      fraction that had been active before (in the ever-active union before
      their update; a weight dropped and regrown in one update counts), 0
      if none grew;
    - `dst/grown_ever`: distinct connections ever grown that were not
      active when training began (the ever-active union minus the active
      count: drop-and-grow keeps the total active count);
    - `dst/update_ms`: mean wall time of one update, in milliseconds (the
      first update of a `fit` also pays the graph's one-off set-up).

    Repeated fits: the schedule follows the model's step counter, not the
    fit, so a second `fit`, a `fit` after `keras.saving.load_model` (the
    `.keras` file holds the optimizer's step counter) or a run resumed by
    `BackupAndRestore` continues it where it stopped; a new callback
    instance with the same arguments continues it the same way. With
    `end_step=None` the end is 75% of `epochs * steps` of the current fit,
    with `epochs` counted from epoch 0 as Keras does: continue a run with
    `fit(epochs=total, initial_epoch=done)` (as for Keras learning-rate
    schedules), or give `end_step` as an int. A fit that will make no update
    (the schedule has ended, has not begun, or the fit is shorter than the
    wait for the next update) says so with a warning before its first step.

    With `log_dir`, every update also writes these (and `changed`, `itop`,
    `sparsity` per weight path) to TensorBoard (needs `tensorboard`).

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
        schedule: deprecated name of `drop_schedule` (DeprecationWarning).

    Raises:
        TypeError, ValueError: a bad argument, naming it (before training).
        ValueError: before the first step of `fit`, a model with no
            inactive weight (all masks ones: set a sparsity first).

    Example:

    ```python
    cb = ks.callbacks.DynamicSparsity(
        drop="magnitude",
        grow=ks.callbacks.Gradient() + ks.callbacks.Exploration(c=1e-4),
        drop_schedule="cosine", delta_t=100, alpha=0.3)
    model.fit(x, y, epochs=10, callbacks=[cb])
    ```
    """

    _default_drop_schedule = "cosine"

    # One per fit: two would both rewrite the masks (SparseModel.fit refuses).
    exclusive_group = "dynamic sparse training"

    def __init__(self, drop="magnitude", grow="gradient", drop_schedule=None,
                 delta_t=100, begin_step=0, end_step=None, alpha=0.3,
                 grow_init="zeros", redistribution=None, seed=0, log_dir=None,
                 schedule=None):
        super().__init__()
        drop_schedule = _take_drop_schedule(drop_schedule, schedule,
                                            self._default_drop_schedule, type(self).__name__)
        self.drop = drop_grow.get_rule(drop, "drop")
        self.grow = drop_grow.get_rule(grow, "grow")
        self.drop_schedule = drop_schedules.get(drop_schedule)
        self.redistribution = drop_grow.get_redistribution(redistribution)
        if isinstance(delta_t, str) and delta_t != "epoch":
            raise ValueError(f'`delta_t` must be an integer >= 1 or "epoch"; got {delta_t!r}.')
        if delta_t != "epoch":
            delta_t = check_int(delta_t, "delta_t", minimum=1, allowed=' or "epoch"')
        self.delta_t = delta_t
        self.begin_step = check_int(begin_step, "begin_step", minimum=0)
        if end_step is not None:
            end_step = check_int(end_step, "end_step", minimum=1, allowed=" or None")
            if end_step <= self.begin_step:
                raise ValueError(
                    f"`end_step` must be greater than `begin_step`={begin_step}; "
                    f"got {end_step!r}."
                )
        self.end_step = end_step
        self.alpha = check_number(alpha, "alpha", 0, 1)
        if isinstance(grow_init, str) and grow_init != "zeros":
            raise ValueError(f'`grow_init` must be a number or "zeros"; got {grow_init!r}.')
        if grow_init != "zeros":
            grow_init = check_number(grow_init, "grow_init", allowed=' (or "zeros")')
        self.grow_init = grow_init
        self._grow_value = 0.0 if grow_init == "zeros" else float(grow_init)
        self.seed = check_int(seed, "seed", minimum=0)
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"`log_dir` must be None or a path; got {log_dir!r}.")
        self.log_dir = log_dir
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
        self._update_fn, self._fn_key = None, None
        self._last_step = self._batch_begin = self._first_epoch = None
        self._writer = None
        self._itop = 0.0
        self._grown_ever = 0
        self._epoch = self._empty_epoch()

    # -- set-up ---------------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        weights = model.masked_weights
        if not weights:
            raise ValueError(
                f"{type(self).__name__}: model {model.name!r} has no built "
                "prunable weights; build it (call it on data) first."
            )
        layers = {id(mw.layer): mw.layer for mw in weights}.values()
        with model.distribute_strategy.scope():
            for layer in layers:
                layer.add_mask_state(ITOP)
            self.drop.build(model)
            self.grow.build(model)
        if self._reads_gradient:
            model.request_dense_gradients(when=self._captures, owner=self)
        elif self._momentum:
            model.request_dense_gradients(momentum=self._momentum, owner=self)
        # Retrace: the update must see state variables added just now.
        self._update_fn = self._fn_key = self._last_step = None

    def _captures(self, step):
        # Traced into the train step: `step` is the 0-based index being run,
        # so the gradient is kept exactly for steps after which we update.
        return self._is_update(step + 1)

    def _bounds(self):
        """`(delta_t, end_step)` with "epoch" and `None` resolved from `params`."""
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        delta = self.delta_t
        if delta == "epoch":
            if not steps:
                raise ValueError(
                    '`delta_t`="epoch" needs the number of steps per epoch; '
                    "fit on data of known size or pass `steps_per_epoch`, or "
                    "give `delta_t` as an int."
                )
            delta = steps
        end = self.end_step
        if end is None:
            if not steps or not epochs:
                raise ValueError(
                    "`end_step`=None means 75% of the planned steps, which fit "
                    "does not know here; pass `end_step` as an int."
                )
            end = 3 * epochs * steps // 4
            if end <= self.begin_step:
                raise ValueError(
                    f"`end_step`=None resolves to {end} (75% of {epochs} epochs "
                    f"x {steps} steps), not after `begin_step`={self.begin_step}."
                )
        return delta, end

    def _is_update(self, step):
        """True at update steps; works on ints and on traced tensors."""
        delta, end = self._bounds()
        return (step % delta == 0) & (step >= max(self.begin_step, 1)) & (step <= end)

    def _rounds(self, step):
        """Number of update steps in [1, step]: the round counter `t`."""
        delta, end = self._bounds()
        low, high = max(self.begin_step, 1), min(step, end)
        return max(0, high // delta - (low - 1) // delta)

    def _next_update(self, step):
        """The first update step after `step`, or None if the schedule ended."""
        delta, end = self._bounds()
        first = max(step + 1, self.begin_step, 1)
        candidate = -(-first // delta) * delta
        return candidate if candidate <= end else None

    def _fraction(self, step):
        """The drop fraction at `step`: the schedule run from `begin_step`.

        The schedule sees the step and the end counted from `begin_step`,
        so a decay spans `end_step - begin_step` (as in rigl).
        """
        _, end = self._bounds()
        begin = self.begin_step
        return float(self.drop_schedule(max(step - begin, 0), self.alpha, end - begin))

    def _round_step(self, rounds):
        """The global step of update round `rounds` (1-based)."""
        delta, _ = self._bounds()
        first = -(-max(self.begin_step, 1) // delta) * delta
        return first + (rounds - 1) * delta

    # -- training hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._bounds()  # bad settings fail before the first step
        self._check_fixed_counts()
        self._last_step = self._first_epoch = None

    def _check_fixed_counts(self):
        """Redistribution moves weights between layers; a layer that trains a
        vector of its active weights (`compute="sparse"`) has a fixed count."""
        fixed = [s.layer.name for s in value_storages(self.model)]
        if self.redistribution is not None and fixed:
            raise ValueError(
                f"{type(self).__name__}: `redistribution` moves active weights between "
                f"layers, but layers {fixed} (SparseDense compute='sparse') train a fixed "
                "number of them. Use redistribution=None, or compute='masked'."
            )

    def on_train_batch_begin(self, batch, logs=None):
        if self._last_step is None:
            # After every on_train_begin, so BackupAndRestore has restored.
            # Checked here, after BackupAndRestore may have restored masks.
            require_inactive_weights(self.model, type(self).__name__)
            self._last_step = self._global_step()
            self._start_union()
            self._warn_if_idle(self._last_step)
        self._batch_begin = batch

    def _warn_if_idle(self, start):
        """Warns, before the first step, if this fit will make no update.

        The steps this fit runs are `start + 1 ...` up to `start` plus the
        steps of its remaining epochs (unknown without `steps`: no warning).
        """
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps or not epochs or self._first_epoch is None:
            return
        last = start + (epochs - self._first_epoch) * steps
        upcoming = self._next_update(start)
        if upcoming is not None and upcoming <= last:
            return
        delta, end = self._bounds()
        name = type(self).__name__
        if self.end_step is None:
            how = (f"end_step=None resolved to {end}, 75% of the {epochs} epochs x "
                   f"{steps} steps this fit plans counted from epoch 0")
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
        warnings.warn(f"{name}: this fit will make no mask update: {reason}. {advice}",
                      stacklevel=2)

    def on_train_batch_end(self, batch, logs=None):
        # Count steps in Python (no device sync per batch); read the real
        # step only when an update looks due.
        step = self._last_step + batch - self._batch_begin + 1
        done = self._rounds(self._last_step)
        if self._rounds(step) > done:
            step = self._global_step()
        due = self._rounds(step)
        self._last_step = step
        if due > done:  # steps_per_execution > 1 may jump past the step
            self._update(self._round_step(due), due)

    def on_epoch_begin(self, epoch, logs=None):
        if self._last_step is None:  # the first epoch of this fit
            self._first_epoch = epoch
        self._epoch = self._empty_epoch()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        e = self._epoch
        logs["dst/drop_fraction"] = e["fraction"]
        logs["dst/updates"] = e["updates"]
        logs["dst/changed"] = e["changed"]
        logs["dst/churn"] = e["changed"] / e["active"] if e["active"] else 0.0
        logs["dst/itop"] = self._itop
        logs["dst/regrown_fraction"] = e["regrown"] / e["grown"] if e["grown"] else 0.0
        logs["dst/grown_ever"] = self._grown_ever
        logs["dst/update_ms"] = e["ms"] / e["updates"] if e["updates"] else 0.0
        if self._writer:
            self._writer.flush()

    def on_train_end(self, logs=None):
        self._last_step = self._first_epoch = None
        # A later fit may use another rule; `set_model` asks again if this one is reused.
        self.model.release_dense_gradients(owner=self)

    def _global_step(self):
        return int(keras_compat.to_numpy(self.model.optimizer.iterations))

    @staticmethod
    def _empty_epoch():
        return dict(fraction=0.0, updates=0, changed=0, active=0, ms=0.0, grown=0, regrown=0)

    def _start_union(self):
        weights = self.model.masked_weights
        with self.model.distribute_strategy.scope():
            for mw in weights:
                union = mw.state(ITOP)
                union.assign(tf.maximum(union, tf.cast(mw.mask, union.dtype)))
        ever = sum(float(tf.reduce_sum(mw.state(ITOP))) for mw in weights)
        active = sum(float(tf.reduce_sum(tf.cast(mw.mask, tf.float32))) for mw in weights)
        self._itop = ever / sum(mw.size for mw in weights)
        self._grown_ever = int(round(ever - active))

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
            step = self._global_step()
        step = check_int(step, "step", minimum=0)
        rounds = max(self._rounds(step), 1)  # bad settings raise here, first
        self._start_union()
        return self._update(step, rounds)

    def _update(self, step, rounds):
        fraction = self._fraction(step)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"`drop_schedule` {type(self.drop_schedule).__name__} gave drop fraction "
                f"{fraction} at step {step}; it must be in [0, 1]."
            )
        self.model.sync_weights()  # kernels trained as value vectors (compute="sparse")
        with self.model.distribute_strategy.scope():
            update = self._function()
            start = time.perf_counter()
            out = update(tf.constant(step, tf.int64), tf.constant(fraction, tf.float64),
                         tf.constant(rounds, tf.float64))
        out = {k: v.numpy() for k, v in out.items()}  # small per-layer vectors
        elapsed_ms = 1000.0 * (time.perf_counter() - start)

        weights = self.model.masked_weights
        stats = {}
        for i, mw in enumerate(weights):
            if not out["finite"][i]:
                warn_non_finite(type(self).__name__, mw.path, when=f" at step {step}")
            stats[mw.path] = {k: out[k][i].item() for k in out}
        changed = int(out["changed"].sum())
        self._itop = float(out["ever"].sum()) / sum(mw.size for mw in weights)
        self._grown_ever = int(out["ever"].sum() - out["active"].sum())
        e = self._epoch
        e["grown"] += int(out["grown"].sum())
        e["regrown"] += int(out["regrown"].sum())
        e["fraction"] = fraction
        e["updates"] += 1
        e["changed"] += changed
        e["active"] += int(out["active"].sum())
        e["ms"] += elapsed_ms
        self._summaries(step, fraction, changed, elapsed_ms, weights, out)
        return stats

    def _function(self):
        # Retrace when optimizer slots appear: the update must reset them.
        optimizer = getattr(self.model, "optimizer", None)
        key = (id(self.model), id(optimizer), len(getattr(optimizer, "variables", [])))
        if self._fn_key != key:
            specs = [tf.TensorSpec([], tf.int64)] + [tf.TensorSpec([], tf.float64)] * 2
            # Traced here, so `dst/update_ms` times the update, not tracing.
            self._update_fn = tf.function(self._compute).get_concrete_function(*specs)
            self._fn_key = key
        return self._update_fn

    def _compute(self, step, fraction, rounds):
        weights = self.model.masked_weights
        reads = self._reads_gradient or self._momentum
        gradients = self.model.dense_gradients() if reads else [None] * len(weights)
        layers = [self._drop(i, mw, gradient, step, fraction, rounds)
                  for i, (mw, gradient) in enumerate(zip(weights, gradients))]
        stats = [self._grow(layer, count)
                 for layer, count in zip(layers, self._grow_counts(layers))]
        return {k: tf.stack([s[k] for s in stats]) for k in stats[0]}

    def _drop(self, index, mw, gradient, step, fraction, rounds):
        """Scores one weight and keeps its top active weights (graph code)."""
        mask = tf.cast(tf.convert_to_tensor(mw.mask), tf.float32)
        if gradient is not None:
            gradient = tf.cast(gradient, tf.float32)
        common = dict(weight=mw, index=index, mask=mask, gradient=gradient, step=step,
                      round=rounds)
        drop_up = drop_grow.LayerUpdate(**common, seed=-(self.seed + 1))
        grow_up = drop_grow.LayerUpdate(**common, seed=self.seed)
        drop_score = tf.cast(self.drop.score(drop_up), tf.float32)
        grow_score = tf.cast(self.grow.score(grow_up), tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(drop_score)) & tf.reduce_all(
            tf.math.is_finite(grow_score))
        active = mask > 0
        n_active = tf.reduce_sum(tf.cast(active, tf.int64))
        n_drop = drop_count(fraction, n_active)
        # Without redistribution a fully dense weight could only regrow what
        # it dropped, resetting it: leave it alone.
        movable = finite if self.redistribution else finite & (n_active < mw.size)
        n_drop = tf.where(movable, n_drop, tf.zeros_like(n_drop))
        kept = mask - _lowest(tf.where(active, -drop_score, -math.inf),
                              tf.cast(n_drop, tf.int32))
        return dict(mw=mw, drop_up=drop_up, grow_up=grow_up, mask=mask, kept=kept,
                    grow_score=tf.where(finite, grow_score, 0.0), finite=finite,
                    n_drop=n_drop, room=mw.size - n_active + n_drop)

    def _grow_counts(self, layers):
        """Connections each layer grows: what it dropped, or redistributed."""
        dropped = [layer["n_drop"] for layer in layers]
        if self.redistribution is None:
            return dropped
        shares = [self.redistribution.layer_weight(layer["grow_up"], layer["grow_score"])
                  for layer in layers]
        room = [tf.where(layer["finite"], layer["room"], tf.constant(0, tf.int64))
                for layer in layers]
        return tf.unstack(self.redistribution.allocate(
            tf.add_n(dropped), tf.stack(shares), tf.stack(room)))

    def _grow(self, layer, count):
        """Grows `count` positions, applies the mask, advances rule state."""
        mw, mask, finite = layer["mw"], layer["mask"], layer["finite"]
        pool = tf.where(layer["kept"] > 0, -math.inf, layer["grow_score"])
        grown = largest_mask(pool, tf.cast(count, tf.int32))
        kept = tf.where(finite, layer["kept"], mask)
        new = tf.where(finite, layer["kept"] + grown, mask)
        # `keep`: a weight dropped and regrown restarts from grow_init.
        self.model.assign_mask(mw, new, self._grow_value, keep=kept)
        union = mw.state(ITOP)
        before = tf.convert_to_tensor(union)
        union.assign(tf.maximum(before, tf.cast(new, union.dtype)))
        regrown = tf.reduce_sum(tf.where(finite, grown, 0.0) * tf.cast(before, grown.dtype))
        self.drop.update_state(layer["drop_up"], new)
        self.grow.update_state(layer["grow_up"], new)
        return dict(
            dropped=layer["n_drop"],
            grown=tf.cast(count, tf.int64),
            regrown=tf.cast(regrown, tf.int64),
            changed=tf.cast(tf.reduce_sum(new * (1.0 - mask)), tf.int64),
            active=tf.cast(tf.reduce_sum(new), tf.int64),
            ever=tf.cast(tf.reduce_sum(tf.convert_to_tensor(union)), tf.int64),
            finite=finite,
        )

    # -- TensorBoard ------------------------------------------------------------

    def _summaries(self, step, fraction, changed, elapsed_ms, weights, out):
        if self.log_dir is None:
            return
        if self._writer is None:
            self._writer = tensorboard.summary_writer(self.log_dir, type(self).__name__) or False
        if not self._writer:
            return
        with self._writer.as_default(step=step):
            tf.summary.scalar("dst/drop_fraction", fraction)
            tf.summary.scalar("dst/changed", changed)
            tf.summary.scalar("dst/itop", self._itop)
            tf.summary.scalar("dst/update_ms", elapsed_ms)
            for i, mw in enumerate(weights):
                tf.summary.scalar(f"dst/changed/{mw.path}", out["changed"][i])
                tf.summary.scalar(f"dst/itop/{mw.path}", out["ever"][i] / mw.size)
                tf.summary.scalar(f"dst/sparsity/{mw.path}", 1.0 - out["active"][i] / mw.size)

    # -- config -------------------------------------------------------------------

    @property
    def schedule(self):
        """Deprecated name of `drop_schedule`."""
        return self.drop_schedule

    @classmethod
    def from_config(cls, config):
        """Builds the callback from `get_config()`'s output.

        Configs written before `drop_schedule` was named so (with
        `schedule`) load too, without a warning.
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
        )


def _lowest(negated_scores, count):
    """Mask of the `count` lowest scores, given negated scores.

    Equals the complement of keeping the top `n - count` (ties kept at the
    lower flat index), but selects only the small `count`. Reversing makes
    ties go to the higher index. `largest_mask` (the same mask as `top_k`,
    by a linear-time radix select on large layers): alone, `top_k` took 313
    ms for 100,000 of 16.7M scores, the radix select 110 ms (2 CPU cores).
    """
    flat = tf.reverse(tf.reshape(negated_scores, [-1]), [0])
    return tf.reshape(tf.reverse(largest_mask(flat, count), [0]), tf.shape(negated_scores))


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
