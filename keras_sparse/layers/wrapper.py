"""`SparseWrapper`: masks the weights a user layer opts in."""

import keras

from keras_sparse.layers.base import SparseLayer

__all__ = ["SparseWrapper"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseWrapper(SparseLayer, keras.layers.Wrapper):
    """Masks the weights a user layer lists in `get_prunable_weights()`.

    The wrapped layer reads its own variables, so the forward pass is masked
    because `SparseModel` keeps inactive weights at exactly 0.0 and masks
    their gradients (the tfmot `PrunableLayer` contract). `sparsify` wraps any
    layer that defines `get_prunable_weights`.

    Args:
        layer: a Keras layer defining `get_prunable_weights() -> list`.

    Raises:
        TypeError: `layer` does not define `get_prunable_weights()`.

    Example:

    ```python
    class MyLayer(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 8))
        def call(self, x):
            return x @ self.w
        def get_prunable_weights(self):
            return [self.w]

    layer = ks.layers.SparseWrapper(MyLayer())
    ```
    """

    # A user layer's weights have no known [..., input, output] layout.
    holds_structure = False

    def __init__(self, layer, **kwargs):
        if not callable(getattr(layer, "get_prunable_weights", None)):
            raise TypeError(
                "SparseWrapper: `layer` must define get_prunable_weights(); "
                f"got {type(layer).__name__} ({layer.name!r})."
            )
        super().__init__(layer, **kwargs)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)

    def prunable_items(self):
        weights = self.layer.get_prunable_weights()
        return [(_weight_key(w), w) for w in weights]

    # No compute_output_shape: Keras infers it by tracing `call`, so wrapped
    # layers need not define one.
    def call(self, inputs, *args, **kwargs):
        return self.layer(inputs, *args, **kwargs)


def _weight_key(variable):
    return variable.path.split("/")[-1]
