"""Dissipating gradients (Haroon 2022): prune the weights that barely move."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_sparse import distributions, structures
from keras_sparse.callbacks import dissipating_units
from keras_sparse.callbacks.base import MaskCallback, log_sparsity
from keras_sparse.masks import num_inactive, topk_mask
from keras_sparse.pruning.base import check_scope
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import (check_choice, check_int, check_number,
                                                    check_sparsity)

__all__ = ["FILLS", "DissipatingGradients"]

INITIAL = "dissipating_init"  # w_0, per weight
FILLS = (None, "last")


@keras.saving.register_keras_serializable(package="keras_sparse")
class DissipatingGradients(MaskCallback):
    """Removes the weights that barely moved, epoch after epoch, until the target.

    From `start_epoch` on, at each epoch end, the active weights whose
    relative movement `abs(w_t - w_0) / abs(w_0)` is below `fraction` are
    removed, the least moved first, never beyond the target count of zeros.
    This repeats epoch after epoch until the target is reached, as the paper
    describes the method: it "takes the most epochs to achieve higher
    sparsity". Only weights below the threshold are ever removed, so the
    target may not be reached: `max_epochs` caps the pruning epochs, and a
    run that ends (or hits the cap) below the target warns with the sparsity
    it reached and goes on training with that mask. Removed weights and
    their optimizer slots are zeroed.

    `fill="last"` is the option that reaches the target on a fixed epoch: at
    the last capped epoch the rest of the budget is removed by least
    movement, below the threshold or not. `epochs=N` is the short form of
    `max_epochs=N, fill="last"` (this callback's behaviour before the
    threshold-only default).

    `w_0` is the weights when training starts (before any callback changes
    them at epoch 0, so within a K-starts combination it is the dense
    initialization every candidate shares), kept as model variables (saved
    with the model, so a resumed run continues exactly). A weight with
    `w_0 = 0` counts as not moved until it moves, then as moved the most.

    The criterion is per weight, so the default scope is `"global"`: one
    count over every weight not kept dense by `dense_layers`. With
    `scope="layer"` every layer gets its own target from `distribution` (see
    `ks.distributions`), and pruning stops in a layer once it reaches its
    target.

    Combined mode (the paper's best): K-starts picks a mask at a lower
    sparsity, then this callback prunes within it to the final target,
    starting after the selection (`k * selection_epochs` epochs):

    ```python
    callbacks = [ks.callbacks.KStarts(0.8, k=5, selection_epochs=2),
                 ks.callbacks.DissipatingGradients(0.9, start_epoch=10)]
    ```

    interpretation: movement is measured from the initialization, and the
    threshold is relative to each weight's own initial magnitude.

    Logs `dissipating_removed` (weights removed that epoch, 0 outside the
    pruning epochs) and `sparsity` every epoch.

    Args:
        sparsity: final fraction of zeros, in [0, 1).
        epochs: short form of `max_epochs=epochs, fill="last"`, or None.
        fraction: relative-movement threshold, in (0, 1) (default 0.1).
        start_epoch: first pruning epoch (default 0).
        distribution: layer budgets with `scope="layer"` ("erk" default).
        scope: "global" (default: one ranking over all weights) or "layer".
        dense_layers: names of weights kept dense (none by default).
        max_epochs: most pruning epochs (>= 1), or None (until the target is
            reached or training ends).
        fill: None (default: only weights below the threshold are removed)
            or "last" (at the last of `max_epochs`, remove the rest of the
            budget by least movement; needs `max_epochs`).
        structure: None (default: the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure.
            Blocks are removed whole, by the mean movement of their
            weights; N:M weights go to `n` per group at the first pruning
            epoch (see `keras_sparse.callbacks.dissipating_units`).

    Raises:
        TypeError, ValueError: a bad argument, naming it and what is allowed,
            before training starts; `fit` raises a TypeError if the model is
            not a `ks.SparseModel`.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)
    model.fit(x, y, epochs=30,
              callbacks=[ks.callbacks.DissipatingGradients(0.9, max_epochs=20)])
    ```
    """

    def __init__(self, sparsity, epochs=None, fraction=0.1, start_epoch=0,
                 distribution="erk", scope="global", dense_layers=None, max_epochs=None,
                 fill=None, structure=None):
        super().__init__()
        self.structure = None if structure is None else structures.get(structure)
        self.sparsity = check_sparsity(sparsity)
        self.epochs = None if epochs is None else check_int(epochs, "epochs", minimum=1)
        self.fraction = check_number(fraction, "fraction", 0, 1, low_open=True, high_open=True)
        self.start_epoch = check_int(start_epoch, "start_epoch", minimum=0)
        self.distribution = distributions.check_distribution(distribution)
        self.scope = check_scope(scope)
        self.dense_layers = (None if dense_layers is None else
                             distributions.check_names(None, dense_layers, "dense_layers"))
        self.max_epochs = (None if max_epochs is None else
                           check_int(max_epochs, "max_epochs", minimum=1))
        self.fill = check_choice(fill, "fill", FILLS)
        if self.epochs is not None and (self.max_epochs is not None or self.fill is not None):
            raise ValueError(
                f"`epochs={self.epochs}` is the short form of `max_epochs={self.epochs}, "
                f"fill='last'`; give either `epochs` or `max_epochs`/`fill`, not both "
                f"(got max_epochs={max_epochs!r}, fill={fill!r})."
            )
        if self.fill == "last" and self.max_epochs is None:
            raise ValueError("`fill='last'` fills the budget at the last of `max_epochs`; "
                             "give `max_epochs` (an int >= 1); got max_epochs=None.")
        self._recorded = False

    @property
    def _cap(self):
        return self.epochs if self.epochs is not None else self.max_epochs

    @property
    def _fills(self):
        return self.epochs is not None or self.fill == "last"

    def get_config(self):
        return {"sparsity": self.sparsity, "epochs": self.epochs,
                "fraction": self.fraction, "start_epoch": self.start_epoch,
                "distribution": self.distribution, "scope": self.scope,
                "dense_layers": self.dense_layers, "max_epochs": self.max_epochs,
                "fill": self.fill,
                "structure": None if self.structure is None else
                keras.saving.serialize_keras_object(self.structure)}

    def set_model(self, model):
        super().set_model(model)
        self._structured = bool(structures.check_agrees(
            model.masked_weights, self.structure, type(self).__name__))
        if self._structured:  # a target not reachable in whole units fails here
            distributions.budgets(model.masked_weights, self.sparsity, self.distribution,
                                  dense_layers=self.dense_layers)
        with model.distribute_strategy.scope():
            for mw in model.masked_weights:
                mw.layer.add_mask_state(INITIAL, dtype=mw.weight.dtype)

    def on_train_begin(self, logs=None):
        # Read before any callback's epoch-0 hook changes the weights (K-starts
        # loads its first candidate there); kept only until epoch 0 begins.
        self._start_weights = ([keras_compat.to_numpy(mw.weight)
                                for mw in self.model.masked_weights]
                               if not self._recorded else None)
        self._warned = False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 and not self._recorded:
            for mw, value in zip(self.model.masked_weights, self._start_weights):
                mw.state(INITIAL).assign(value)
        self._recorded, self._start_weights = True, None  # later: w_0 came with the model

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        index = epoch - self.start_epoch
        cap, removed = self._cap, 0
        if index >= 0 and (cap is None or index < cap) and not self._target_reached():
            last = cap is not None and index == cap - 1
            removed = self._prune(fill=last and self._fills)
            if last and not self._target_reached():
                self._warn(f"its cap of {cap} pruning epochs ended")
        logs["dissipating_removed"] = removed  # every epoch, so CSVLogger keeps the column
        log_sparsity(self.model, logs)

    def on_train_end(self, logs=None):
        # With a cap, the cap epoch warns; a fit that ends before it can be continued.
        if self._cap is None and self._recorded and not self._target_reached():
            self._warn("training ended")

    def _warn(self, what):
        self._warned = True
        reached = 1.0 - self._active_count() / self._total()
        warnings.warn(
            f"DissipatingGradients: {what} at sparsity {reached:.4f}, below the target "
            f"{self.sparsity} (only weights that moved less than fraction={self.fraction} "
            f"of their initial value are removed); training goes on with this mask. "
            f"Give a larger `max_epochs`, or `fill='last'` to remove the rest at the cap.",
            stacklevel=2,
        )

    def movement(self):
        """`{path: abs(w - w_0) / abs(w_0)}` of every prunable weight."""
        result = {}
        for mw in self.model.masked_weights:
            w = tf.cast(tf.convert_to_tensor(mw.weight), tf.float32)
            w0 = tf.cast(tf.convert_to_tensor(mw.state(INITIAL)), tf.float32)
            delta, base = tf.abs(w - w0), tf.abs(w0)
            moved_from_zero = tf.where(delta > 0, tf.float32.max, 0.0)
            result[mw.path] = tf.where(base > 0, delta / tf.where(base > 0, base, 1.0),
                                       moved_from_zero)
        return result

    # -- budgets ----------------------------------------------------------------

    def _inactive(self):
        return {mw.path: mw.size - int(np.count_nonzero(keras_compat.to_numpy(mw.mask)))
                for mw in self.model.masked_weights}

    def _total(self):
        return sum(mw.size for mw in self.model.masked_weights)

    def _active_count(self):
        return self._total() - sum(self._inactive().values())

    def _room(self, inactive):
        """Zeros still to add: `{path: n}` with `scope="layer"`, else `{None: n}`."""
        weights = self.model.masked_weights
        if self.scope == "layer":
            budgets = distributions.budgets(weights, self.sparsity, self.distribution,
                                            dense_layers=self.dense_layers)
            return {mw.path: max(mw.size - inactive[mw.path] - budgets[mw], 0)
                    for mw in weights}
        return {None: max(num_inactive(self._total(), self.sparsity)
                          - sum(inactive.values()), 0)}

    def _target_reached(self):
        if self._structured:  # in whole units: nothing left to remove
            return not dissipating_units.plan(self, fill=True)[1]
        return not any(self._room(self._inactive()).values())

    def _prune(self, fill):
        """Removes this epoch's weights; returns how many."""
        if self._structured:
            new_masks, removed = dissipating_units.plan(self, fill)
            if new_masks:
                self.model.set_masks({p: np.asarray(m) for p, m in new_masks.items()})
            return removed
        weights = self.model.masked_weights
        movement = self.movement()
        active = {mw.path: tf.convert_to_tensor(mw.mask) > 0 for mw in weights}
        # Keep the most moved; inactive weights rank below every active one.
        keep_score = {p: tf.where(active[p], movement[p], -1.0) for p in movement}
        n_active = {p: int(tf.math.count_nonzero(a)) for p, a in active.items()}
        slow = {p: int(tf.math.count_nonzero(active[p] & (movement[p] < self.fraction)))
                for p in movement}
        room = self._room({mw.path: mw.size - n_active[mw.path] for mw in weights})

        new_masks, removed = {}, 0
        if self.scope == "layer":
            for mw in weights:
                p = mw.path
                r = room[p] if fill else min(room[p], slow[p])
                new_masks[p] = topk_mask(keep_score[p], n_active[p] - r)
                removed += r
        else:
            shapes = {mw.path: tuple(mw.weight.shape) for mw in weights}
            pins = distributions.pinned(shapes, self.sparsity, self.dense_layers)
            ranked = [mw for mw in weights if mw.path not in pins]
            if not ranked:
                return 0
            ranked_active = sum(n_active[mw.path] for mw in ranked)
            wanted = room[None] if fill else min(room[None],
                                                 sum(slow[mw.path] for mw in ranked))
            removed = min(wanted, ranked_active)
            counts = distributions.rank([keep_score[mw.path] for mw in ranked],
                                        ranked_active - removed)
            new_masks.update({mw.path: topk_mask(keep_score[mw.path], n)
                              for mw, n in zip(ranked, counts)})
        if removed:
            self.model.set_masks({p: np.asarray(m) for p, m in new_masks.items()})
        return removed
