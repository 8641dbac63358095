"""Gradual magnitude pruning (Zhu & Gupta 2017) during `fit`."""

import keras
import numpy as np
import tensorflow as tf

from keras_sparse import distributions, structures
from keras_sparse.callbacks.base import MaskCallback, log_sparsity
from keras_sparse.callbacks.clock import ScheduleClock
from keras_sparse.masks import largest_mask, warn_non_finite
from keras_sparse.schedules import pruning_schedules
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_sparsity

__all__ = ["GradualMagnitudePruning"]

# Steps whose `should_prune` a schedule without `prunes_at` (a tfmot instance,
# say) gives in one compiled call; asking step by step costs a device round
# trip per step (about a third of a LeNet-300-100 step).
_WINDOW = 1024


@keras.saving.register_keras_serializable(package="keras_sparse")
class GradualMagnitudePruning(MaskCallback):
    """Prunes a dense-initialised `SparseModel` by weight magnitude on a schedule.

    Before every step `t` (counted by `model.optimizer.iterations`) for which
    `schedule(t)` says to prune, each layer keeps its largest `abs(w)` so
    that exactly `round(s_l * n_l)` weights are inactive, `s_l` from the
    scheduled sparsity and `distribution`; already pruned weights score 0.
    Dropped weights and their optimizer slots are zeroed. As in
    tfmot, the mask for step `t` is computed from the weights after `t`
    steps; it is applied at the end of step `t - 1` (at the start of `fit`
    for the first step), so a schedule ending at the last step also prunes
    the final model. With `steps_per_execution > 1` the latest scheduled
    step of each execution is applied at its end.

    The update is one compiled function over all layers; layers of 65,536
    weights or more rank them with a linear-time radix select
    (`keras_sparse.masks.largest_mask`, the same mask as `top_k`). Non-pruning
    steps cost a Python set or integer test: the schedules of
    `ks.schedules` answer `prunes_at(step)` in Python, and other schedules (a
    tfmot instance, say) are evaluated for 1,024 steps at a time in one
    vectorized compiled call.

    Logs `sparsity` (the model's overall sparsity) at each epoch end.

    Structured weights (`ks.structures`, the structure each weight holds)
    are pruned in their units. With `Block((r, c))` whole blocks go, ranked
    by the sum of their `abs(w)` (tfmot's `block_size` averages, which ranks
    the same), each layer keeping `B - round(s_l * B)` of its `B` blocks.
    With `NM(n, m)` there is no sparsity between 0 and `1 - n/m` in whole
    groups: the first scheduled step with a sparsity above 0 keeps each
    group's `n` largest `abs(w)`, and later steps keep that mask (pruned
    weights score 0). tfmot's `sparsity_m_by_n` likewise prunes once, from
    the initial weights whatever the schedule; a schedule beginning at step
    0 gives its masks. The schedule's final sparsity must be `1 - n/m`.

    Args:
        schedule: `schedule(step) -> (should_prune, sparsity)`, e.g.
            `ks.schedules.PolynomialDecay` or a tfmot schedule.
        distribution: per-layer split of the scheduled sparsity: "uniform"
            (default, as tfmot: every layer gets it), "erk" or "er".
        dense_layers: layer names kept dense (default none). Names that
            match no prunable layer of the model are refused when the
            callback is attached.
        structure: `None` (default: the structure the model's weights
            hold) or a structure (`ks.structures.get`), which must be the
            model's; it cannot change a model's structure (set that with
            `ks.sparsify(..., structure=...)`).

    Raises:
        ValueError: (when `fit` starts) the schedule's final sparsity
            (`final_sparsity` or `target_sparsity`) is below the model's
            current sparsity: pruning to it would bring pruned weights
            back. Start from `ks.sparsify(dense, 0.0)` or from a schedule
            that begins at the model's sparsity.

    Raises:
        TypeError: `schedule` is not callable; from `fit`, the model is not a
            `ks.SparseModel`.
        ValueError: an unknown `distribution`; during `fit`, a scheduled
            sparsity outside [0, 1) or a budget the `dense_layers` exceed.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)          # masks all ones
    schedule = ks.schedules.PolynomialDecay(0.0, 0.9, begin_step=0,
                                            end_step=steps, frequency=100)
    model.fit(x, y, epochs=5,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    ```
    """

    def __init__(self, schedule, distribution="uniform", dense_layers=None, structure=None):
        super().__init__()
        self.structure = None if structure is None else structures.get(structure)
        self.schedule = pruning_schedules.check_schedule(schedule)
        self.clock = ScheduleClock(self.schedule, window=_WINDOW, who=type(self).__name__)
        self.distribution = distributions.check_distribution(distribution)
        self.dense_layers = (None if dense_layers is None else
                             distributions.check_names(None, dense_layers, "dense_layers"))

    def get_config(self):
        return {"schedule": pruning_schedules.serialize(self.schedule),
                "distribution": self.distribution, "dense_layers": self.dense_layers,
                "structure": None if self.structure is None else
                keras.saving.serialize_keras_object(self.structure)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = pruning_schedules.deserialize(config["schedule"])
        return cls(**config)

    def set_model(self, model):
        super().set_model(model)
        held = structures.check_agrees(model.masked_weights, self.structure,
                                       type(self).__name__)
        fixed = {s.fixed_sparsity for s in held if s.fixed_sparsity is not None}
        if len(fixed) > 1:
            raise ValueError(f"GradualMagnitudePruning: the model's N:M weights hold several "
                             f"sparsities {sorted(fixed)}; prune them with one at a time.")
        self._fixed = fixed.pop() if fixed else None
        self._check_final_sparsity(model)

    def _check_final_sparsity(self, model):
        """Refuses a schedule ending below the model's sparsity (see Raises)."""
        final = getattr(self.schedule, "final_sparsity",
                        getattr(self.schedule, "target_sparsity", None))
        weights = model.masked_weights
        if final is None or not weights:  # a custom schedule: no final value to read
            return
        budgets = distributions.budgets(weights, float(final), self.distribution,
                                        dense_layers=self.dense_layers)
        wanted = sum(mw.size - active for mw, active in budgets.items())
        total = sum(mw.size for mw in weights)
        now = total - sum(int(np.count_nonzero(keras_compat.to_numpy(mw.mask)))
                          for mw in weights)
        if wanted < now:
            current = now / total
            raise ValueError(
                f"GradualMagnitudePruning: the schedule's final sparsity {float(final)} "
                f"is below the model's current sparsity {current:.4g} ({now} of "
                f"{total} prunable weights inactive); pruning to it would bring "
                f"{now - wanted} pruned weights back. Use a schedule that ends at "
                f"{current:.4g} or above (e.g. PolynomialDecay(initial_sparsity="
                f"{current:.4g}, final_sparsity=...)), or start from a dense model "
                "(ks.sparsify(model, 0.0))."
            )

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if not optimizer.built:  # the compiled update must see every slot
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        self._weights = self.model.masked_weights
        self._update = tf.function(self._update_masks)
        if not hasattr(self.schedule, "prunes_at"):
            self._evaluate = tf.function(lambda step: self.schedule(step))
        self.clock.start(self.params)
        step = self.clock.now(self.model)
        if self.clock.is_due(step):
            self._prune(step)

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.epoch_begin(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.batch_begin(batch, self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.batch_end(batch, self.model)
        if step is not None:  # the latest scheduled step of the batch
            self._prune(step)

    def on_epoch_end(self, epoch, logs=None):
        log_sparsity(self.model, logs)

    def _prune(self, step):
        """Prunes to the schedule's sparsity at `step`."""
        if hasattr(self.schedule, "prunes_at"):
            sparsity = self.schedule(step)[1]
        else:
            sparsity = self._evaluate(tf.constant(step, tf.int64))[1]
        sparsity = check_sparsity(float(sparsity), "schedule sparsity")
        if self._fixed is not None and sparsity > 0:
            sparsity = self._fixed  # N:M: no sparsity in between
        budgets = distributions.budgets(self._weights, sparsity, self.distribution,
                                        dense_layers=self.dense_layers)
        keep = list(budgets.values())
        finite = self._update(tf.constant(keep, tf.int32))
        for mw, ok in zip(self._weights, np.asarray(finite)):
            if not ok:
                warn_non_finite(type(self).__name__, mw.path, what="weights")

    def _update_masks(self, keep):
        optimizer, finite = self.model.optimizer, []
        for i, mw in enumerate(self._weights):
            old = tf.convert_to_tensor(mw.mask)
            weight = tf.cast(mw.read(), tf.float32)
            # Pruned weights score 0, selected (never `w * mask`: NaN * 0 is NaN).
            score = tf.where(old > 0, tf.abs(weight), tf.zeros_like(weight))
            ok = tf.reduce_all(tf.math.is_finite(score))
            if mw.structure.is_unstructured:
                choose = largest_mask
            else:
                choose = mw.structure.mask
            new = tf.cond(ok, lambda: tf.cast(choose(score, keep[i]), old.dtype),
                          lambda: old)
            mw.assign_mask(new, optimizer=optimizer)
            finite.append(ok)
        return tf.stack(finite)
