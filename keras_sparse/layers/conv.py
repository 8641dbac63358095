import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv1D(SparseLayer, keras.layers.Conv1D):
    """`keras.layers.Conv1D` with a masked kernel (bias never masked)."""

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv2D(SparseLayer, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a masked kernel (bias never masked).

    Example:

    ```python
    layer = ks.layers.SparseConv2D(32, 3, padding="same")
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv3D(SparseLayer, keras.layers.Conv3D):
    """`keras.layers.Conv3D` with a masked kernel (bias never masked)."""

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDepthwiseConv2D(SparseLayer, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with a masked depthwise kernel."""

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseSeparableConv2D(SparseLayer, keras.layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D` whose pointwise kernel is masked.

    The depthwise kernel is small and stays dense, as in the RigL code base.
    """

    prunable = ("pointwise_kernel",)
    pointwise_kernel = MaskedAttribute()
