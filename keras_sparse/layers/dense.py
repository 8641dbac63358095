import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDense(SparseLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a binary mask.

    Takes the arguments of `Dense`. The mask is the non-trainable variable
    `kernel_mask`; the bias is never masked.

    Example:

    ```python
    layer = ks.layers.SparseDense(64, activation="relu")
    y = layer(x)   # == relu(x @ (kernel * kernel_mask) + bias)
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()
