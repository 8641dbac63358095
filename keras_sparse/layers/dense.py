"""`SparseDense`: `keras.layers.Dense` with a masked kernel."""

import keras
import tensorflow as tf

from keras_sparse.layers import sparse_matmul
from keras_sparse.layers.base import (
    MaskedAttribute,
    SparseLayer,
    dense_weight_gradients_requested,
    reading_raw_weights,
)
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice

__all__ = ["COMPUTE_MODES", "SparseDense"]

# How SparseDense computes its training steps (see the class docstring).
COMPUTE_MODES = ("masked", "sparse")


class _ActivePositions:
    """The kernel's active positions, cached until the mask changes.

    A plain object, not tracked by Keras or `tf.train.Checkpoint`: the cache
    is derived from the mask and rebuilt from it (lazily, at the next
    training call after `invalidate`), so files and checkpoints are the same
    whatever `compute` is. `ON_READ` variables, so that each replica of a
    `tf.distribute` strategy rebuilds its own copy from its (identical) mask.
    """

    def __init__(self, name):
        on_read = dict(synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.NONE, trainable=False)
        with tf.init_scope():
            self.positions = tf.Variable(
                tf.zeros([0, 2], tf.int64), shape=tf.TensorShape([None, 2]),
                name=f"{name}_active_positions", **on_read)
            self.ready = tf.Variable(False, name=f"{name}_positions_ready", **on_read)

    def get(self, mask):
        """`active_positions(mask)`, rebuilt if the cache was invalidated."""

        def rebuild():
            positions = sparse_matmul.active_positions(mask)
            self.positions.assign(positions, read_value=False)
            self.ready.assign(True, read_value=False)
            return positions

        return tf.cond(self.ready, lambda: tf.identity(self.positions), rebuild)

    def invalidate(self):
        self.ready.assign(False, read_value=False)


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseDense(SparseLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a binary mask.

    The mask is the non-trainable variable `kernel_mask`; the bias is never
    masked.

    With `compute="sparse"` (opt-in), training calls (`training=True`, as in
    `fit`) multiply by the active weights only: the forward pass and the
    input gradient use a sparse (CSR) copy of the kernel's active entries,
    gathered from the kernel at each step. The kernel and mask variables,
    the optimizer, saving, mask rules and `ks.strip` are the same as with
    `compute="masked"`; only the arithmetic changes, and results agree with
    the masked path to float rounding. Details:

    - the kernel's gradient is the dense `x^T @ dy`, masked by the train
      step as for `compute="masked"` (so growth rules such as RigL read
      `dL/d(W*M)` at every step). Computing it at the active positions only
      (`keras_sparse.layers.sparse_matmul`, `weight_gradient="active"`;
      then dense gradients are computed on the steps a growth rule asks
      for) measured slower on 2 CPU cores at 95% and 98% sparsity, and
      not clearly faster at 99%;
    - the active positions are cached and rebuilt from the mask at the next
      training call after a mask change (`SparseModel.set_masks`,
      `assign_mask`, `fit`, loading); after assigning `kernel_mask`
      directly, call `layer.mask_changed()`;
    - inference (`training=False`: `predict`, `evaluate`, export) uses the
      masked dense product; `ks.export.export_for_serving` writes sparse
      kernels for serving;
    - the optimizer still updates the whole kernel variable (Keras
      optimizers are dense), which bounds the speed-up: see
      `benchmarks/BENCHMARKS.md`, "sparse_train_step";
    - not XLA-compilable (TensorFlow's CSR ops have no XLA kernels), so the
      layer reports `supports_jit = False`; under mixed precision the sparse
      products run in float32.

    Args:
        *args, **kwargs: the arguments of `keras.layers.Dense`.
        compute: "masked" (default: `x @ (kernel * mask)` with dense
            matrices) or "sparse" (see above).
        mask_states: rule state to re-create at build (written by
            `get_config`; mask rules add it with `add_mask_state`).

    Raises:
        ValueError: `compute` is not one of "masked", "sparse".

    Example:

    ```python
    layer = ks.layers.SparseDense(64, activation="relu")
    y = layer(x)   # == relu(x @ (kernel * kernel_mask) + bias)

    # Training multiplies by the 2% active weights only.
    fast = ks.layers.SparseDense(4096, sparsity=0.98, compute="sparse")
    ```
    """

    prunable = ("kernel",)
    kernel = MaskedAttribute()

    # The kernel's gradient in a "sparse" training call: "dense" (`x^T @ dy`,
    # masked by the train step) or "active" (at active positions only, 0
    # elsewhere). "dense" measured faster at 95% and 98% on 2 CPU cores (see
    # the class docstring). Read when the train step is traced.
    _weight_gradient = "dense"

    def __init__(self, *args, compute="masked", **kwargs):
        check_choice(compute, "compute", COMPUTE_MODES)
        super().__init__(*args, **kwargs)
        self.compute = compute
        self._active = None
        if compute == "sparse":
            self.supports_jit = False  # CSR ops have no XLA kernels

    def build(self, input_shape):
        super().build(input_shape)
        if self.compute == "sparse":
            self._active = _ActivePositions(self.name)

    @property
    def masks_own_gradients(self):
        return self._active is not None and self._weight_gradient == "active"

    def mask_changed(self):
        if self._active is not None:
            self._active.invalidate()

    def call(self, inputs, training=None):
        # Symbolic calls and `stateless_call` (Keras' StatelessScope) see
        # substituted variable values: they take the masked path.
        if tf.is_tensor(training):
            training = tf.get_static_value(training)  # unknown: the masked path
        if self._active is None or not training or keras_compat.in_stateless_scope():
            return super().call(inputs, training=training)
        kernel = self.get_prunable_weights()[0].value  # autocast under mixed precision
        n_in = kernel.shape[0]
        dtype = inputs.dtype
        # CSR products take float32/float64, not float16.
        work = dtype if dtype in (tf.float32, tf.float64) else tf.float32
        x = tf.cast(tf.reshape(inputs, [-1, n_in]), work)
        mask = self._masks["kernel"].value
        if reading_raw_weights():
            # SparseModel's train step: it masks the kernel's gradient itself
            # and may want the dense one (see masks_own_gradients).
            options = dict(dense_weight_gradient=dense_weight_gradients_requested())
        else:
            # Elsewhere (a plain keras.Model's fit, a user's GradientTape)
            # the kernel's gradient is masked, as that of `kernel * mask`.
            options = dict(mask=mask)
        y = sparse_matmul.sparse_matmul(
            x, tf.cast(kernel, work), self._active.get(mask),
            weight_gradient=self._weight_gradient, **options)
        y = tf.reshape(tf.cast(y, dtype), tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
        if self.bias is not None:
            y = keras.ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self):
        config = super().get_config()
        config["compute"] = self.compute
        return config
