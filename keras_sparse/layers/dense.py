"""`SparseDense`: `keras.layers.Dense` with a masked kernel."""

import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer

__all__ = ["SparseDense"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDense(SparseLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a binary mask.

    The mask is the non-trainable variable `kernel_mask`; the bias is never
    masked.

    Args:
        *args, **kwargs: the arguments of `keras.layers.Dense`.
        mask_states: rule state to re-create at build (written by
            `get_config`; mask rules add it with `add_mask_state`).

    Example:

    ```python
    layer = ks.layers.SparseDense(64, activation="relu")
    y = layer(x)   # == relu(x @ (kernel * kernel_mask) + bias)
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()
