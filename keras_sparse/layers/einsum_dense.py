import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseEinsumDense(SparseLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with a masked kernel.

    Example:

    ```python
    layer = ks.layers.SparseEinsumDense("ab,bc->ac", output_shape=64)
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()
