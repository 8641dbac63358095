import keras

from keras_sparse.callbacks.base import MaskCallback
from keras_sparse.conversion import sparsity_report


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
        if logs is not None:
            logs["sparsity"] = sparsity_report(self.model)[-1]["sparsity"]
