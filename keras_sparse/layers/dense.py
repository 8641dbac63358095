"""`SparseDense`: `keras.layers.Dense` with a masked kernel."""

import keras
import tensorflow as tf

from keras_sparse.layers import sparse_matmul, value_storage
from keras_sparse.layers.base import (
    MaskedAttribute,
    SparseLayer,
    dense_weight_gradients_requested,
    reading_raw_weights,
)
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice, check_int

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

    With `compute="sparse"` (opt-in), training multiplies by the active
    weights only, and inside a `ks.SparseModel` it also stores and
    optimizes only them. Results agree with `compute="masked"` to float
    rounding (the same masks under RigL, SET, DST-EE). Details:

    - in `SparseModel.fit` (one replica), the layer trains a vector of its
      active weights (`kernel_values`, as many entries as the mask has ones
      when training starts: `value_capacity`): the optimizer updates that
      vector and keeps its slots (momentum, Adam m and v) for it alone. The
      kernel stays the layer's weight for everything else (`get_weights`,
      files, mask rules, `ks.strip`, export) and is written from the vector
      when something reads it: each epoch's end and `fit`'s end, before mask
      rules, `get_weights`, saving, `ks.strip`; call
      `model.sync_weights()` before reading it yourself mid-epoch;
    - a mask change through the model (`set_masks`, `assign_mask`, the
      mask-rule callbacks) lays the vector out again: kept weights keep
      their optimizer state, grown ones start fresh. A mask with more ones
      than `value_capacity` is refused (`set_masks`: ValueError, nothing
      changes): the count is fixed when training starts, as for every
      drop-and-grow rule; fewer is fine (the rest is zero padding);
    - the forward pass and the input gradient use a sparse (CSR) matrix of
      the active values; the values' gradient is read out of the dense
      `x^T @ dy`, which is also what growth rules receive on their update
      steps. `weight_gradient="active"` computes it at the active positions
      only (then the dense product runs only on the steps a growth rule
      keeps it); that measured slower on 2 CPU cores at 95% and 98%
      sparsity and about equal at 99%;
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
            is computed: "dense" (default: read out of `x^T @ dy`) or
            "active" (at the active positions only, from gathered rows).
            Read when the train step is traced.
        value_capacity: `None`, or int >= 1: the size of the trained vector
            of active weights (written by `get_config` once training chose
            it, so a saved model restores its optimizer state).
        mask_states: rule state to re-create at build (written by
            `get_config`; mask rules add it with `add_mask_state`).

    Raises:
        ValueError: `compute` is not one of "masked", "sparse";
            `weight_gradient` not one of "dense", "active"; `value_capacity`
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

    def __init__(self, *args, compute="masked", weight_gradient="dense", value_capacity=None,
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
        self._active = None
        self._storage = None
        if compute == "sparse":
            self.supports_jit = False  # CSR ops have no XLA kernels

    def build(self, input_shape):
        super().build(input_shape)
        if self.compute == "sparse":
            self._active = _ActivePositions(self.name)
            if self.value_capacity is not None:
                self.store_values(self.value_capacity)

    # -- training the active values (see value_storage) ----------------------

    @property
    def value_storage(self):
        """The `ValueStorage` whose values this layer trains, or None."""
        return self._storage

    def store_values(self, capacity):
        """From now on, trains a vector of `capacity` values, not the kernel.

        `ks.SparseModel` calls it when `fit` starts (capacity: the active
        count then); a layer loaded from a file re-creates it at build. The
        kernel stays the layer's weight but is no longer optimized itself
        (Keras `trainable` False); the values vector is tracked as a
        variable of the layer (for the optimizer and checkpoints) but is not
        one of its `weights`, so `get_weights`/`set_weights` and files are the
        same as with `compute="masked"`.

        Args:
            capacity: int >= 1, the most active weights the layer can train.

        Returns:
            The `ValueStorage` (the existing one if already created).
        """
        if self._storage is not None:
            return self._storage
        capacity = check_int(capacity, "capacity", minimum=1)
        kernel = self.get_prunable_weights()[0]
        with self._unlocked():
            values = value_storage.add_values_variable(self, capacity, kernel.dtype)
        kernel.trainable = False  # the values are trained instead
        self.value_capacity = capacity
        self._storage = value_storage.ValueStorage(self, kernel, self.kernel_mask, values)
        return self._storage

    @property
    def weights(self):
        weights = super().weights
        if self._storage is None:
            return weights
        return [w for w in weights if w is not self._storage.values]

    def _base_variables(self):
        variables = super()._base_variables()
        if self._storage is None:
            return variables
        return [v for v in variables if v is not self._storage.values]

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if self._storage is not None:
            self._storage.forget_layout()

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
        stateless = keras_compat.in_stateless_scope()
        if self._storage is not None and not stateless:
            if training and reading_raw_weights():
                return self._finish(self._values_product(inputs), inputs)
            self._storage.sync()  # the kernel may lag behind the trained values
        if self._active is None or not training or stateless:
            return super().call(inputs, training=training)
        kernel = self.get_prunable_weights()[0].value  # autocast under mixed precision
        x, work = self._flat_inputs(inputs, kernel.shape[0])
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
        return self._finish(y, inputs)

    def _flat_inputs(self, inputs, n_in):
        # CSR products take float32/float64, not float16.
        dtype = inputs.dtype
        work = dtype if dtype in (tf.float32, tf.float64) else tf.float32
        return tf.cast(tf.reshape(inputs, [-1, n_in]), work), work

    def _values_product(self, inputs):
        """The train step's product from the trained values (see `store_values`)."""
        storage = self._storage
        with tf.control_dependencies([storage.ensure_laid_out()]):
            positions, _ = storage.active()
        x, work = self._flat_inputs(inputs, storage.shape[0])
        when = dense_weight_gradients_requested()
        # The kernel (not read) receives the dense gradient when the step keeps it.
        kernel = None
        if when is not None:
            kernel = tf.convert_to_tensor(keras_compat.backend_variable(storage.kernel))
        return sparse_matmul.values_matmul(
            x, tf.cast(storage.values.value, work), positions, storage.shape,
            weight_gradient=self._weight_gradient, kernel=kernel, dense_weight_gradient=when)

    def _finish(self, y, inputs):
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
        if self.value_capacity is not None:
            config["value_capacity"] = self.value_capacity
        return config
