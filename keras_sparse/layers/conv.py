"""Sparse convolutions: the Keras layers with a masked kernel."""

import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer

__all__ = [
    "SparseConv1D",
    "SparseConv2D",
    "SparseConv3D",
    "SparseDepthwiseConv2D",
    "SparseSeparableConv2D",
]

_ARGS = """
    Args:
        *args, **kwargs: the arguments of `keras.layers.{base}`.
        mask_states: rule state to create at build (read from the configs
            of earlier versions; mask rules add state with `add_mask_state`).
"""


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv1D(SparseLayer, keras.layers.Conv1D):
    __doc__ = """`keras.layers.Conv1D` with a masked kernel (bias never masked).
""" + _ARGS.format(base="Conv1D") + """
    Example:

    ```python
    layer = ks.layers.SparseConv1D(16, 5, padding="same")
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv2D(SparseLayer, keras.layers.Conv2D):
    __doc__ = """`keras.layers.Conv2D` with a masked kernel (bias never masked).
""" + _ARGS.format(base="Conv2D") + """
    Example:

    ```python
    layer = ks.layers.SparseConv2D(32, 3, padding="same")
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseConv3D(SparseLayer, keras.layers.Conv3D):
    __doc__ = """`keras.layers.Conv3D` with a masked kernel (bias never masked).
""" + _ARGS.format(base="Conv3D") + """
    Example:

    ```python
    layer = ks.layers.SparseConv3D(8, 3)
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDepthwiseConv2D(SparseLayer, keras.layers.DepthwiseConv2D):
    __doc__ = """`keras.layers.DepthwiseConv2D` with a masked depthwise kernel.
""" + _ARGS.format(base="DepthwiseConv2D") + """
    Example:

    ```python
    layer = ks.layers.SparseDepthwiseConv2D(3, depth_multiplier=2)
    ```
    """

    # Each input channel is filtered alone: no input dimension to group along.
    holds_structure = False
    prunable = ("kernel",)
    kernel = MaskedAttribute()


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseSeparableConv2D(SparseLayer, keras.layers.SeparableConv2D):
    __doc__ = """`keras.layers.SeparableConv2D` whose pointwise kernel is masked.

    The depthwise kernel is small and stays dense, as in the RigL code base.
""" + _ARGS.format(base="SeparableConv2D") + """
    Example:

    ```python
    layer = ks.layers.SparseSeparableConv2D(64, 3, padding="same")
    ```
    """

    prunable = ("pointwise_kernel",)
    pointwise_kernel = MaskedAttribute()
