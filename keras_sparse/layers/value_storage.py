"""A kernel's active weights stored as a vector of values, for training.

`SparseDense(compute="sparse")` inside a `ks.SparseModel` trains the values
at the active positions of its kernel, not the kernel: the optimizer's
variable is a vector of `capacity` values, so its update and its slots
(momentum, Adam m and v) cover the active weights only.

Layout: entry `i < count` of the vector is the kernel's `i`-th active
position in row-major order (`tf.where(mask)`); entries from `count` up to
`capacity` are padding, held at 0 with zero gradient. The layout is a
function of the mask, so a file or checkpoint holding the mask, the kernel
and the optimizer state restores it exactly.

The kernel variable stays the layer's weight (what `get_weights`, files,
mask rules, `ks.strip` and export read); it is written from the values
lazily (`sync`), because a scatter into a large kernel at every step costs
more than the step saves (28 ms for a 4096 x 4096 kernel at 98% on 2 CPU
cores). The owning `SparseParameter` syncs whenever the kernel is read
through it (`read()`, `weight`, the layer's own calls, files).

`ActivePositions` caches a mask's active positions (and their `Layout`)
for a layer that trains its kernel with the same sparse products.
"""

import keras
import tensorflow as tf

from keras_sparse.layers import sparse_matmul
from keras_sparse.optimizer_slots import initial_value, slots_for
from keras_sparse.utils import keras_compat

__all__ = ["ActivePositions", "ValueStorage", "add_values_variable"]


class ActivePositions:
    """A kernel's active positions and their `Layout`, cached until the mask changes.

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
            self.t_positions = tf.Variable(
                tf.zeros([0, 2], tf.int64), shape=tf.TensorShape([None, 2]),
                name=f"{name}_transposed_positions", **on_read)
            self.order = tf.Variable(
                tf.zeros([0], tf.int32), shape=tf.TensorShape([None]),
                name=f"{name}_transposed_order", **on_read)
            self.ready = tf.Variable(False, name=f"{name}_positions_ready", **on_read)

    def get(self, mask):
        """`sparse_matmul.layout` of `mask`'s active positions, rebuilt if invalidated."""

        def rebuild():
            lay = sparse_matmul.layout(sparse_matmul.active_positions(mask), mask.shape[0])
            self.positions.assign(lay.positions, read_value=False)
            self.t_positions.assign(lay.t_positions, read_value=False)
            self.order.assign(lay.order, read_value=False)
            self.ready.assign(True, read_value=False)
            return tuple(lay)

        def cached():
            return tuple(tf.identity(v) for v in (self.positions, self.t_positions, self.order))

        return sparse_matmul.Layout(*tf.cond(self.ready, cached, rebuild))

    def invalidate(self):
        self.ready.assign(False, read_value=False)


class ValueStorage:
    """The values vector of one kernel, its positions and its bookkeeping.

    Only `values` is a Keras variable (trainable, created by the layer so
    that Keras tracks it and the optimizer updates it). Positions, count and
    the two flags are derived from the mask and the kernel, so they are
    plain, untracked variables: files and checkpoints do not depend on them.

    Args:
        layer: the owning layer (built).
        kernel: its kernel variable.
        mask: its mask variable.
        values: the layer's trainable `[capacity]` variable.

    Example:

    ```python
    storage = ValueStorage(layer, kernel, layer.kernel_mask, values)
    storage.relayout()            # values := kernel at the mask's positions
    ```
    """

    def __init__(self, layer, kernel, mask, values):
        self.layer, self.kernel, self.mask, self.values = layer, kernel, mask, values
        self.capacity = int(values.shape[0])
        self.shape = list(kernel.shape)
        with tf.init_scope():
            self.positions = tf.Variable(tf.zeros([self.capacity, 2], tf.int64), trainable=False,
                                         name=f"{layer.name}_value_positions")
            # The layout's W^T order (see sparse_matmul.Layout), padded like positions.
            self.t_positions = tf.Variable(tf.zeros([self.capacity, 2], tf.int64),
                                           trainable=False,
                                           name=f"{layer.name}_value_t_positions")
            self.order = tf.Variable(tf.zeros([self.capacity], tf.int32), trainable=False,
                                     name=f"{layer.name}_value_order")
            self.count = tf.Variable(0, dtype=tf.int32, trainable=False,
                                     name=f"{layer.name}_value_count")
            # True while positions/count describe the values and their slots.
            self.laid_out = tf.Variable(False, trainable=False, name=f"{layer.name}_laid_out")
            # True while the kernel lags behind the values (set by each step).
            self.dirty = tf.Variable(False, trainable=False, name=f"{layer.name}_kernel_dirty")

    def active(self):
        """`(positions[:count], count)`: the current layout."""
        count = tf.convert_to_tensor(self.count)
        return self.positions[:count], count

    def layout(self):
        """The current layout as a `sparse_matmul.Layout` (sorted at `relayout`)."""
        count = tf.convert_to_tensor(self.count)
        return sparse_matmul.Layout(self.positions[:count], self.t_positions[:count],
                                    self.order[:count])

    def sync(self):
        """Writes the values into the kernel if it lags behind them."""

        def write():
            positions, count = self.active()
            values = tf.convert_to_tensor(keras_compat.backend_variable(self.values))
            keras_compat.backend_variable(self.kernel).scatter_nd_update(positions, values[:count])
            self.dirty.assign(False)
            return tf.constant(True)

        return tf.cond(self.dirty, write, lambda: tf.constant(False))

    def mark_trained(self):
        """Called after each optimizer step on the values."""
        self.dirty.assign(True)

    def discard_pending(self):
        """The kernel is being overwritten: values trained since the last sync are dropped."""
        self.dirty.assign(False)

    def forget_layout(self):
        """The mask, kernel and slots were loaded: the old layout is gone."""
        self.laid_out.assign(False)
        self.dirty.assign(False)

    def check_capacity(self, mask):
        """An op failing if `mask` has more active entries than `capacity`."""
        count = tf.math.count_nonzero(tf.convert_to_tensor(mask) > 0, dtype=tf.int32)
        return tf.debugging.assert_less_equal(
            count, self.capacity,
            message=(f"SparseDense {self.layer.name!r} (compute='sparse') trains at most "
                     f"{self.capacity} active weights (its count when training started); "
                     "the new mask has more. Create the model again with the new masks "
                     "(or use compute='masked') to train a denser kernel."))

    def relayout(self, optimizer=None, variables=(), keep=None, checked=False):
        """Lays the values (and their optimizer slots) out for the current mask.

        Call it after the kernel and mask changed (the kernel must be current:
        `sync` first if training ran since). Values are read from the kernel.
        Each slot of `values` keeps its entry for a position active in the old
        layout and starts fresh (see `optimizer_slots.initial_value`) for a
        position that was not; padding is fresh. Without an old layout (after
        loading) the slots are taken as laid out for the current mask already.

        Args:
            optimizer: the model's optimizer, or None.
            variables: the optimized variables (see `optimizer_slots.slots_for`).
            keep: `None`, or a boolean tensor of the kernel's shape: slots
                carry over only where it is true (a weight dropped and
                regrown in one update starts fresh).
            checked: the caller already ran `check_capacity` on this mask
                (skips a second count over the kernel).
        """
        mask = tf.convert_to_tensor(self.mask)
        with tf.control_dependencies([] if checked else [self.check_capacity(mask)]):
            new = tf.where(mask > 0)
        count = tf.shape(new, out_type=tf.int32)[0]
        pad = [[0, self.capacity - count]]
        kernel = tf.convert_to_tensor(keras_compat.backend_variable(self.kernel))
        self.values.assign(tf.pad(tf.gather_nd(kernel, new), pad))
        slots = slots_for(optimizer, self.values, variables)
        old, old_count = self.active()
        was_laid_out = tf.convert_to_tensor(self.laid_out)
        for slot in slots:
            fresh = tf.constant(initial_value(optimizer, self.values, slot), slot.dtype)
            value = tf.convert_to_tensor(slot)

            def remapped(value=value, fresh=fresh):
                # Through the kernel's shape: kept positions keep their entry.
                dense = tf.scatter_nd(old, value[:old_count], self.shape)
                present = tf.scatter_nd(old, tf.ones([old_count], tf.bool), self.shape)
                kept = tf.gather_nd(present, new)
                if keep is not None:
                    kept = kept & tf.gather_nd(keep, new)
                return tf.where(kept, tf.gather_nd(dense, new), fresh)

            def aligned(value=value, fresh=fresh):
                return value[:count]

            laid = tf.cond(was_laid_out, remapped, aligned)
            slot.assign(tf.pad(laid, pad, constant_values=fresh))
        lay = sparse_matmul.layout(new, self.shape[0])
        self.positions.assign(tf.pad(new, pad + [[0, 0]]))
        self.t_positions.assign(tf.pad(lay.t_positions, pad + [[0, 0]]))
        self.order.assign(tf.pad(lay.order, pad))
        self.count.assign(count)
        self.laid_out.assign(True)
        self.dirty.assign(False)

    def ensure_laid_out(self):
        """Lays out from the kernel if no layout exists (e.g. after loading)."""

        def lay_out():
            self.relayout()
            return tf.constant(True)

        return tf.cond(self.laid_out, lambda: tf.constant(False), lay_out)


def add_values_variable(layer, capacity, dtype):
    """The layer's trainable `kernel_values` vector of `capacity` zeros."""
    return layer.add_weight(name="kernel_values", shape=(int(capacity),),
                            initializer=keras.initializers.Zeros(), dtype=dtype, trainable=True)
