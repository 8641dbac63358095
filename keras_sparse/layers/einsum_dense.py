"""`SparseEinsumDense`: `keras.layers.EinsumDense` with a masked kernel."""

import keras

from keras_sparse.layers.base import MaskedAttribute, SparseLayer

__all__ = ["SparseEinsumDense"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseEinsumDense(SparseLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` with a masked kernel.

    Args:
        *args, **kwargs: the arguments of `keras.layers.EinsumDense`.
        mask_states: rule state to create at build (read from the configs
            of earlier versions; mask rules add state with `add_mask_state`).

    Example:

    ```python
    layer = ks.layers.SparseEinsumDense("ab,bc->ac", output_shape=64)
    ```
    """

    # Which kernel axis is the input depends on the equation.
    holds_structure = False
    prunable = ("kernel",)
    kernel = MaskedAttribute()
