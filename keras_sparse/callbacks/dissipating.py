"""Dissipating gradients (Haroon 2022): prune the weights that barely move."""

import keras
import numpy as np
import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.callbacks.base import MaskCallback, log_sparsity
from keras_sparse.masks import num_inactive, topk_mask
from keras_sparse.pruning.base import check_scope
from keras_sparse.utils.argument_validation import check_int, check_number, check_sparsity

__all__ = ["DissipatingGradients"]

INITIAL = "dissipating_init"  # w_0, per weight


@keras.saving.register_keras_serializable(package="keras_sparse")
class DissipatingGradients(MaskCallback):
    """Removes the least-moved weights over the first epochs.

    At the end of each of the epochs `start_epoch .. start_epoch + epochs - 1`
    the active weights whose relative movement `abs(w_t - w_0) / abs(w_0)`
    is below `fraction` are removed, the least moved first, never beyond the
    target count of zeros; at the last of these epochs the remaining budget
    is removed by least movement, so the target is reached exactly. Removed
    weights and their optimizer slots are zeroed.

    `w_0` is the weights at the start of epoch 0, kept as model variables
    (saved with the model, so a resumed run continues exactly). A weight with
    `w_0 = 0` counts as not moved until it moves, then as moved the most.
    Targets per layer come from `distribution` (see `ks.distributions`), or with
    `scope="global"` one count over every weight not kept dense by
    `dense_layers` (as `ks.pruning`'s global scope).

    Combined mode (the paper's best): K-starts picks a mask at a lower
    sparsity, then this callback prunes within it to the final target,
    starting after the selection:

    ```python
    callbacks = [ks.callbacks.KStarts(0.8, selection_epochs=2),
                 ks.callbacks.DissipatingGradients(0.9, epochs=3, start_epoch=2)]
    ```

    interpretation: "during the first couple of epochs" is `epochs` epoch
    ends (default 3), with movement measured from the initialization.

    Logs `dissipating_removed` (weights removed that epoch) during those
    epochs and `sparsity` every epoch.

    Args:
        sparsity: final fraction of zeros, in [0, 1).
        epochs: number of pruning epochs (>= 1, default 3).
        fraction: relative-movement threshold, in (0, 1) (default 0.1).
        start_epoch: first pruning epoch (default 0).
        distribution, scope, dense_layers: layer budgets, as in
            `ks.sparsify` ("erk", "layer", none by default).

    Raises:
        TypeError, ValueError: a bad argument, naming it and what is allowed,
            before training starts; `fit` raises a TypeError if the model is
            not a `ks.SparseModel`.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)
    model.fit(x, y, epochs=10,
              callbacks=[ks.callbacks.DissipatingGradients(0.9, epochs=3)])
    ```
    """

    def __init__(self, sparsity, epochs=3, fraction=0.1, start_epoch=0,
                 distribution="erk", scope="layer", dense_layers=None):
        super().__init__()
        self.sparsity = check_sparsity(sparsity)
        self.epochs = check_int(epochs, "epochs", minimum=1)
        self.fraction = check_number(fraction, "fraction", 0, 1, low_open=True, high_open=True)
        self.start_epoch = check_int(start_epoch, "start_epoch", minimum=0)
        self.distribution = distributions.check_distribution(distribution)
        self.scope = check_scope(scope)
        self.dense_layers = (None if dense_layers is None else
                             distributions.check_names(None, dense_layers, "dense_layers"))
        self._recorded = False

    def get_config(self):
        return {"sparsity": self.sparsity, "epochs": self.epochs,
                "fraction": self.fraction, "start_epoch": self.start_epoch,
                "distribution": self.distribution, "scope": self.scope,
                "dense_layers": self.dense_layers}

    def set_model(self, model):
        super().set_model(model)
        with model.distribute_strategy.scope():
            for mw in model.masked_weights:
                mw.layer.add_mask_state(INITIAL, dtype=mw.weight.dtype)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 and not self._recorded:
            for mw in self.model.masked_weights:
                mw.state(INITIAL).assign(tf.convert_to_tensor(mw.weight))
        self._recorded = True  # later epochs: w_0 was restored with the model

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        index = epoch - self.start_epoch
        if 0 <= index < self.epochs:
            logs["dissipating_removed"] = self._prune(last=index == self.epochs - 1)
        log_sparsity(self.model, logs)

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

    def _prune(self, last):
        """Removes this epoch's weights; returns how many."""
        weights = self.model.masked_weights
        shapes = {mw.path: tuple(mw.weight.shape) for mw in weights}
        movement = self.movement()
        active = {mw.path: tf.convert_to_tensor(mw.mask) > 0 for mw in weights}
        # Keep the most moved; inactive weights rank below every active one.
        keep_score = {p: tf.where(active[p], movement[p], -1.0) for p in movement}
        n_active = {p: int(tf.math.count_nonzero(a)) for p, a in active.items()}
        slow = {p: int(tf.math.count_nonzero(active[p] & (movement[p] < self.fraction)))
                for p in movement}

        def removal(room, candidates):
            room = max(room, 0)
            return room if last else min(room, candidates)

        new_masks, removed = {}, 0
        if self.scope == "layer":
            budgets = distributions.budgets(weights, self.sparsity, self.distribution,
                                            dense_layers=self.dense_layers)
            for mw in weights:
                p = mw.path
                r = removal(n_active[p] - budgets[mw], slow[p])
                new_masks[p] = topk_mask(keep_score[p], n_active[p] - r)
                removed += r
        else:
            pins = distributions.pinned(shapes, self.sparsity, self.dense_layers)
            ranked = [mw for mw in weights if mw.path not in pins]
            if not ranked:
                return 0
            total = sum(mw.size for mw in weights)
            inactive = sum(mw.size - n_active[mw.path] for mw in weights)
            ranked_active = sum(n_active[mw.path] for mw in ranked)
            removed = min(removal(num_inactive(total, self.sparsity) - inactive,
                                  sum(slow[mw.path] for mw in ranked)), ranked_active)
            counts = distributions.rank([keep_score[mw.path] for mw in ranked],
                                        ranked_active - removed)
            new_masks.update({mw.path: topk_mask(keep_score[mw.path], n)
                              for mw, n in zip(ranked, counts)})
        if removed:
            self.model.set_masks({p: np.asarray(m) for p, m in new_masks.items()})
        return removed
