"""`Static`: training with a fixed mask."""

import keras

from keras_sparse.callbacks.base import MaskCallback, log_sparsity

__all__ = ["Static"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class Static(MaskCallback):
    """Trains with a fixed mask; logs the model's sparsity each epoch.

    Training a `SparseModel` with no mask callback is already static; this
    preset makes it explicit, checks the model and logs `sparsity` (so it
    reaches History, CSVLogger and the progress bar).

    Example:

    ```python
    model.fit(x, y, epochs=3, callbacks=[ks.callbacks.Static()])
    ```
    """

    def on_epoch_end(self, epoch, logs=None):
        log_sparsity(self.model, logs)
