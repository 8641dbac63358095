"""`SparseDense`: `keras.layers.Dense` with a masked kernel."""

import keras
import tensorflow as tf

from keras_sparse.layers import sparse_matmul
from keras_sparse.layers.base import MaskedAttribute, SparseLayer
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice, check_int

__all__ = ["COMPUTE_MODES", "SparseDense"]

# How SparseDense computes its training steps (see the class docstring).
COMPUTE_MODES = ("masked", "sparse")


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDense(SparseLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a binary mask.

    The mask is the non-trainable variable `kernel_mask`; the bias is never
    masked.

    With `compute="sparse"` (opt-in), training multiplies by the active
    weights only, and inside a `ks.SparseModel` it also stores and
    optimizes only them. Results agree with `compute="masked"` to float
    rounding (the same masks under RigL, SET, DST-EE). Details:

    - in `SparseModel.fit` (one replica), the layer trains a vector of its
      active weights (`kernel_values`, as many entries as the mask has ones
      when training starts: `value_capacity`): the optimizer updates that
      vector and keeps its slots (momentum, Adam m and v) for it alone. The
      kernel stays the layer's weight for everything else (`get_weights`,
      files, mask rules, `ks.strip`, export); it is written from the vector
      when read through its `SparseParameter` (`layer.parameters[0]`:
      `read()`, `.weight`, hence `model.masked_weights`, `layer.kernel`,
      `get_weights`, saving) and when `fit` ends;
    - a mask change through the model (`set_masks`, `assign_mask`, the
      mask-rule callbacks) lays the vector out again: kept weights keep
      their optimizer state, grown ones start fresh. A mask with more ones
      than `value_capacity` is refused (`set_masks`: ValueError, nothing
      changes): the count is fixed when training starts, as for every
      drop-and-grow rule; fewer is fine (the rest is zero padding);
    - the forward pass uses a CSR matrix of the transposed kernel (its
      index order sorted once per mask change), the input gradient one of
      the kernel; the values' gradient is computed at the active positions
      only (a sampled product, SDDMM) when at most 3% of the kernel is
      active, and read out of the dense `x^T @ dy` above that, where the
      dense product is faster (`weight_gradient`). Growth rules receive
      the dense `x^T @ dy` on their update steps;
    - elsewhere (a plain `keras.Model`, several replicas, an optimizer
      built before `fit`) the kernel is trained, with the same sparse
      products and a dense-shaped optimizer update; positions are cached
      and rebuilt after a mask change (call `layer.mask_changed()` after
      assigning `kernel_mask` directly);
    - inference (`training=False`: `predict`, `evaluate`) uses the masked
      dense product; `ks.export.export_for_serving` writes sparse kernels;
    - not XLA-compilable (TensorFlow's CSR ops have no XLA kernels), so the
      layer reports `supports_jit = False`; under mixed precision the sparse
      products run in float32.

    Speed (MLP 784-4096-4096-10, batch 128, 2 CPU cores): see
    `benchmarks/BENCHMARKS.md`, "sparse_train_step".

    Args:
        *args, **kwargs: the arguments of `keras.layers.Dense`.
        compute: "masked" (default: `x @ (kernel * mask)` with dense
            matrices) or "sparse" (see above).
        weight_gradient: with `compute="sparse"`, how the weights' gradient
            is computed: "auto" (default: "active" up to 3% density, else
            "dense"), "dense" (read out of `x^T @ dy`) or "active" (at the
            active positions only, SDDMM). Read when the train step is
            traced.
        value_capacity: `None`, or int >= 1: the size of the trained vector
            of active weights (written by `get_config` once training chose
            it, so a saved model restores its optimizer state).

    Raises:
        ValueError: `compute` is not one of "masked", "sparse";
            `weight_gradient` not one of "auto", "active", "dense"; `value_capacity`
            is not an int >= 1.

    Example:

    ```python
    layer = ks.layers.SparseDense(64, activation="relu")
    y = layer(x)   # == relu(x @ (kernel * kernel_mask) + bias)

    # Training multiplies, stores and optimizes the 2% active weights only.
    fast = ks.layers.SparseDense(4096, sparsity=0.98, compute="sparse")
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()
    SPARSE_ARGUMENTS = SparseLayer.SPARSE_ARGUMENTS + (
        "compute", "weight_gradient", "value_capacity")

    def __init__(self, *args, compute="masked", weight_gradient="auto", value_capacity=None,
                 **kwargs):
        check_choice(compute, "compute", COMPUTE_MODES)
        check_choice(weight_gradient, "weight_gradient", sparse_matmul.WEIGHT_GRADIENTS)
        if value_capacity is not None:
            value_capacity = check_int(value_capacity, "value_capacity", minimum=1,
                                       allowed=" or None")
        super().__init__(*args, **kwargs)
        self.compute = compute
        self._weight_gradient = weight_gradient
        self.value_capacity = value_capacity if compute == "sparse" else None
        if compute == "sparse":
            self.supports_jit = False  # CSR ops have no XLA kernels

    def build(self, input_shape):
        super().build(input_shape)
        if self.value_capacity is not None:
            self.parameters[0].store_values(self.value_capacity)

    def _parameter_options(self, name):
        return {"trains_values": self.compute == "sparse"}

    @property
    def value_storage(self):
        """The `ValueStorage` whose values this layer trains, or None."""
        return self.parameters[0].storage if self.built else None

    @property
    def masks_own_gradients(self):
        return self.compute == "sparse" and self._weight_gradient == "active"

    def call(self, inputs, training=None):
        # Symbolic calls and `stateless_call` (Keras' StatelessScope) see
        # substituted variable values: they take the masked path, as
        # inference does.
        if tf.is_tensor(training):
            training = tf.get_static_value(training)  # unknown: the masked path
        if self.compute != "sparse" or not training or keras_compat.in_stateless_scope():
            return super().call(inputs, training=training)
        # CSR products take float32/float64, not float16.
        work = inputs.dtype if inputs.dtype in (tf.float32, tf.float64) else tf.float32
        x = tf.cast(tf.reshape(inputs, [-1, self.parameters[0].variable.shape[0]]), work)
        y = self.parameters[0].sparse_matmul(x, self._weight_gradient)
        y = tf.reshape(tf.cast(y, inputs.dtype),
                       tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
        if self.bias is not None:
            y = keras.ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self):
        config = super().get_config()
        config["compute"] = self.compute
        if self.compute == "sparse":
            config["weight_gradient"] = self._weight_gradient
        storage = self.value_storage
        capacity = storage.capacity if storage is not None else self.value_capacity
        if capacity is not None:
            config["value_capacity"] = capacity
        return config
