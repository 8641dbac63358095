"""`Static`: training with a fixed mask."""

import keras

from keras_sparse.callbacks.base import MaskCallback, log_sparsity, require_inactive_weights

__all__ = ["Static"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class Static(MaskCallback):
    """Trains with a fixed mask; logs the model's sparsity each epoch.

    Training a `SparseModel` with no mask callback is already static; this
    preset makes it explicit, checks the model and logs `sparsity` (so it
    reaches History, CSVLogger and the progress bar).

    Raises:
        TypeError: the model is not a `SparseModel` (when `fit` starts).
        ValueError: at the first step, the model has no inactive weight
            (all masks ones).

    Example:

    ```python
    model.fit(x, y, epochs=3, callbacks=[ks.callbacks.Static()])
    ```
    """

    def on_train_begin(self, logs=None):
        self._checked = False

    def on_train_batch_begin(self, batch, logs=None):
        # At the first step, after BackupAndRestore may have restored masks.
        if not getattr(self, "_checked", False):
            require_inactive_weights(self.model, type(self).__name__)
            self._checked = True

    def on_epoch_end(self, epoch, logs=None):
        log_sparsity(self.model, logs)
