"""`SparseParameter`: the one owner of a prunable weight.

A sparse layer holds one `SparseParameter` per masked weight. It owns:

- the weight's variable and its binary mask (same shape and dtype);
- its per-weight rule state (`add_state`: the ever-active union, DST-EE
  counters, the dense-gradient buffer, ...), variables of the layer saved
  by files and checkpoints but never written into the layer's config;
- the optimizer slots of what it trains (reset where a weight is dropped
  or grown);
- its storage: the masked kernel, or, for `SparseDense(compute="sparse")`
  inside `ks.SparseModel.fit`, a vector of the active values
  (`value_storage`), which the optimizer trains instead of the kernel.

Everything that changes or reads a prunable weight goes through it:
`assign_mask(new, keep=...)`, `read()` (always the current value, whatever
the storage), the gradient mask and the dense-gradient capture of the train
step (`step_gradient`, `store_dense_gradient`), and the values' relayout
after a mask change.
"""

import math

import keras
import tensorflow as tf

from keras_sparse import structures
from keras_sparse.layers import inplace, sparse_matmul, value_storage
from keras_sparse.masks import check_mask
from keras_sparse.optimizer_slots import initial_value, reset_slots, slots_for
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_int

__all__ = ["DENSE_GRAD", "SparseParameter"]

DENSE_GRAD = "dense_grad"  # state: the dense gradient dL/d(W*M) the train step keeps

# State whose variables need more than the default (each replica writes its own).
_SPECS = {DENSE_GRAD: dict(synchronization="on_read", aggregation="sum")}


class SparseParameter:
    """One prunable weight of a sparse layer, with its mask, state and storage.

    Layers create their parameters at build; `model.masked_weights` lists
    them in model order (`ks.layers.MaskedWeight` is the same class).

    Args:
        layer: the sparse layer holding the weight.
        name: the weight's name in the layer (`"kernel"`).
        variable: the weight's variable.
        mask: its mask variable.
        trains_values: whether `ks.SparseModel.fit` may train a vector of
            the active values instead of `variable` (`compute="sparse"`).
        structure: its mask structure (`ks.structures`), which every mask
            rule reads and keeps; default `Unstructured()`.

    Attributes:
        layer, name, variable, mask, structure: as given.
        mask_version: an int64 variable counting the mask's changes (each
            `assign_mask`, `apply_mask`, load or `layer.mask_changed()`).
        path: the variable's path (`"dense/kernel"`), unique in the model.
        storage: the `ValueStorage` while a values vector is trained, or None.

    Example:

    ```python
    p = model.masked_weights[0]
    density = float(keras.ops.mean(p.mask))
    p.assign_mask(new_mask, optimizer=model.optimizer)   # drops, grows, resets slots
    magnitudes = tf.abs(p.read())
    ```
    """

    def __init__(self, layer, name, variable, mask, trains_values=False, structure=None):
        self.layer, self.name, self.variable, self.mask = layer, name, variable, mask
        self.structure = structures.get(structure)
        self.path = variable.path
        self.trains_values = trains_values
        self.states = {}  # state name -> variable, in creation order
        self.storage = None
        self.positions = (value_storage.ActivePositions(f"{layer.name}_{name}")
                          if trains_values else None)
        self._when = None  # see raw_reads
        self._depth = 0
        # Not a layer weight (files stay as they are); like `optimizer.iterations`,
        # one value for every replica, so it can be bumped in any context.
        with tf.init_scope():
            self.mask_version = tf.Variable(
                0, dtype=tf.int64, trainable=False, name=f"{layer.name}_{name}_mask_version",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @property
    def size(self):
        """Number of entries of the weight."""
        return math.prod(self.variable.shape)

    @property
    def weight(self):
        """The weight's variable, brought up to date with what training wrote."""
        if self.storage is not None:
            self.storage.sync()
        return self.variable

    def read(self):
        """The weight's current value, a tensor (usable inside `tf.function`)."""
        if self.storage is None:
            return tf.convert_to_tensor(self.variable)
        with tf.control_dependencies([self.storage.sync()]):
            return tf.convert_to_tensor(self.variable)

    def value(self):
        """`read()` as a layer computes with it (autocast under mixed precision)."""
        if self.storage is None:
            return self.variable.value
        with tf.control_dependencies([self.storage.sync()]):
            return tf.identity(self.variable.value)

    def __repr__(self):
        return f"<SparseParameter {self.path} shape={tuple(self.variable.shape)}>"

    # -- rule state -----------------------------------------------------------

    def state(self, name):
        """The state variable `name` (see `add_state`)."""
        return self.states[name]

    def has_state(self, name):
        return name in self.states

    def add_state(self, name, dtype="float32", initializer="zeros", synchronization="auto",
                  aggregation="none"):
        """Adds a per-weight state variable `<weight>_<name>`; idempotent.

        A variable of the layer (saved by `.keras` and weight files under
        its own name, by checkpoints and `BackupAndRestore`), not part of
        the layer's config: a file holding it re-creates it when loaded.

        Args:
            name: suffix of the variable (`"count"` -> `kernel_count`).
            dtype: its dtype.
            initializer: a Keras initializer (name or object).
            synchronization, aggregation: as for `keras.Variable` (for
                per-replica buffers under `tf.distribute`).

        Returns:
            The variable.

        Raises:
            ValueError: `<weight>_<name>` would shadow a layer attribute.

        Example:

        ```python
        counts = parameter.add_state("count")     # zeros of the weight's shape
        ```
        """
        if name in self.states:
            return self.states[name]
        attribute = f"{self.name}_{name}"
        if hasattr(self.layer, attribute):
            raise ValueError(
                f"add_state: `name`={name!r} would shadow [{attribute!r}] of layer "
                f"{self.layer.name!r} (e.g. the mask or kernel_initializer); choose another.")
        with keras.name_scope(self.layer.name, caller=self.layer):
            variable = keras.Variable(
                initializer=keras.initializers.get(initializer), shape=self.variable.shape,
                dtype=dtype, trainable=False, name=attribute, synchronization=synchronization,
                aggregation=aggregation)
        with keras_compat.unlocked(self.layer):
            keras_compat.track_variable(self.layer, variable)
            # An attribute too, so tf.train.Checkpoint finds it.
            setattr(self.layer, attribute, variable)
        self.states[name] = variable
        return variable

    def restore_state(self, name, value):
        """Sets state `name` from a file, creating it if needed."""
        spec = dict(_SPECS.get(name, {}), dtype=str(getattr(value, "dtype", "float32")))
        self.add_state(name, **spec).assign(value)

    # -- masks ------------------------------------------------------------------

    def check_mask(self, mask):
        """Validates a user mask for this weight; returns it as a numpy array.

        Raises:
            ValueError: the wrong shape, values other than 0 and 1, a mask
                that breaks the weight's structure (all ones, the dense
                start, is allowed), or more ones than a values vector being
                trained holds (its count when training started).
        """
        mask = check_mask(mask, self.variable.shape, self.path)
        active = int((mask > 0).sum())
        if (not self.structure.is_unstructured and active < mask.size
                and not bool(self.structure.validate(mask))):
            raise ValueError(
                f"set_masks: the mask for {self.path!r} (shape {mask.shape}) does not hold "
                f"its structure {self.structure!r} (see ks.structures); pass a mask that "
                "does, e.g. from structure.mask(scores, count).")
        if self.storage is not None and active > self.storage.capacity:
            raise ValueError(
                f"set_masks: the mask for {self.path!r} has {active} active weights; "
                f"its layer (compute='sparse') trains at most {self.storage.capacity} "
                "(its count when training started). Pass a mask with at most that "
                "many ones, or build the model again with the new masks."
            )
        return mask

    def assign_mask(self, mask, keep=None, grow_init=0.0, optimizer=None, variables=None):
        """Sets the mask from a tensor, keeping the weight and its slots consistent.

        No validation; works inside `tf.function`. Weights where `mask` is 0
        become 0.0; weights that become active take `grow_init` (whatever
        was stored there, NaN included); every optimizer slot of a dropped
        or grown weight is reset to its fresh value. Masks are applied by
        selection, never by multiplication (`Inf * 0` is NaN).

        Args:
            mask: a tensor of the weight's shape holding only 0 and 1.
            keep: `None`, or a tensor of the weight's shape: the positions
                whose weight and slots carry over (nonzero; a subset of the
                old mask). Default: those active in the old mask and `mask`.
                Drop-and-grow rules pass their mask after the drop, so a
                weight dropped and regrown restarts from `grow_init`.
            grow_init: value given to newly active weights.
            optimizer: the model's optimizer (its slots are reset), or None.
            variables: the variables it optimizes (see
                `optimizer_slots.slots_for`); default: those it was built with.

        Example:

        ```python
        parameter.assign_mask(tf.ones(parameter.variable.shape), optimizer=model.optimizer)
        ```
        """
        storage = self.storage
        new = tf.cast(mask, self.mask.dtype)
        if storage is not None:
            storage.sync()
            storage.check_capacity(new)  # before anything changes
        active = new > 0
        kept = active & (tf.convert_to_tensor(self.mask) > 0)
        if keep is not None:
            kept = kept & (tf.convert_to_tensor(keep) > 0)
        weight = tf.convert_to_tensor(self.variable)
        # Selection, not arithmetic: whatever the variable held at a grown or
        # dropped position (even NaN) is replaced, never multiplied by 0.
        grown_value = tf.where(active, tf.cast(grow_init, weight.dtype), tf.zeros_like(weight))
        self.variable.assign(tf.where(kept, weight, grown_value))
        reset_slots(optimizer, self.variable, kept, variables)
        self.mask.assign(new)
        self.mask_changed()
        if storage is not None:
            storage.relayout(optimizer, variables, keep=kept, checked=True)

    def swap(self, dropped, grown, grow_init=0.0, optimizer=None, capacity=None, also=()):
        """Drops and grows a few weights in place, by flat index (graph code).

        The same result as `assign_mask(mask - dropped + grown, keep=mask -
        dropped, ...)` while the weight is in the state every mask
        operation and train step leaves it in (inactive weights 0.0, their
        slots fresh): only the named entries of the variable, the mask and
        each slot are written (one compiled call per variable), so the cost
        follows the number changed, not the layer's size. Dropped weights
        and their slots become 0 (slots: their fresh value); grown ones
        `grow_init` with fresh slots (also where a weight is both dropped
        and grown).

        Args:
            dropped, grown: int64 vectors of flat positions; `dropped`
                active, `grown` inactive once `dropped` is removed.
            grow_init: value of grown weights.
            optimizer: the model's optimizer (its slots are reset), or None.
            capacity: the most positions any index vector holds (static;
                see `inplace.capacity_for`).
            also: more `(state variable, [(indices, value), ...])` edits of
                this weight's state, made in the same call.

        Example:

        ```python
        parameter.swap(dropped, grown, optimizer=model.optimizer,
                       capacity=inplace.capacity_for(n_active))
        ```
        """
        if self.storage is not None:
            raise ValueError(f"swap: {self.path!r} trains a values vector "
                             "(compute='sparse'); use assign_mask.")
        edits = [(self.variable, [(dropped, 0.0), (grown, grow_init)]),
                 (self.mask, [(dropped, 0.0), (grown, 1.0)])]
        for slot in slots_for(optimizer, self.variable):
            fresh = initial_value(optimizer, self.variable, slot)
            edits.append((slot, [(dropped, fresh), (grown, fresh)]))
        inplace.set_entries(edits + list(also), capacity)
        self.mask_changed()

    def apply_mask(self, optimizer=None, variables=None, new_optimizer=False):
        """Zeroes inactive weights and resets their slots, in place.

        Args:
            optimizer, variables: as for `assign_mask`.
            new_optimizer: the optimizer is not built yet (and training runs
                eagerly on one replica): with `trains_values`, it will train
                a vector of the active values (`store_values`).
        """
        if new_optimizer and self.trains_values and self.storage is None:
            count = int(tf.math.count_nonzero(tf.convert_to_tensor(self.mask) > 0))
            self.store_values(max(count, 1))
        if self.storage is not None:
            self.storage.sync()
        active = tf.convert_to_tensor(self.mask) > 0
        weight = tf.convert_to_tensor(self.variable)
        self.variable.assign(tf.where(active, weight, tf.zeros_like(weight)))  # NaN-safe
        reset_slots(optimizer, self.variable, active, variables)
        self.mask_changed()  # masks may have been written directly
        if self.storage is not None:
            self.storage.relayout(optimizer, variables)

    def mask_changed(self):
        """The mask was written: cached positions are rebuilt at the next use,
        and `mask_version` counts one more change (readers of the mask, e.g. a
        density trace, recompute only when it moved)."""
        self.mask_version.assign_add(1, read_value=False)
        if self.positions is not None:
            self.positions.invalidate()

    # -- storage ----------------------------------------------------------------

    def store_values(self, capacity):
        """From now on, trains a vector of `capacity` values, not the variable.

        The variable stays the layer's weight (files, `get_weights`, mask
        rules read it through the parameter) but is no longer trainable;
        the values vector is tracked by the layer (for the optimizer and
        checkpoints) but is not one of its `weights`.

        Args:
            capacity: int >= 1, the most active weights that can be trained.

        Returns:
            The `ValueStorage` (the existing one if already created).
        """
        if self.storage is None:
            capacity = check_int(capacity, "capacity", minimum=1)
            with keras_compat.unlocked(self.layer):
                values = value_storage.add_values_variable(self.layer, capacity,
                                                           self.variable.dtype)
            self.variable.trainable = False  # the values are trained instead
            self.storage = value_storage.ValueStorage(self.layer, self.variable, self.mask,
                                                      values)
        return self.storage

    def extra_variables(self):
        """Variables the parameter adds beyond the layer's own weights and mask."""
        found = list(self.states.values())
        return found + ([self.storage.values] if self.storage is not None else [])

    def loaded(self):
        """The variable, mask and slots were loaded from a file."""
        if self.storage is not None:
            self.storage.forget_layout()
        self.mask_changed()

    def expect_write(self):
        """The variable is about to be overwritten: values trained since it
        was last current are dropped."""
        if self.storage is not None:
            self.storage.discard_pending()

    def end_fit(self):
        """Training stopped: the variable takes the trained values."""
        if self.storage is not None:
            self.storage.sync()

    # -- the train step -----------------------------------------------------------

    @property
    def in_train_step(self):
        """True inside `raw_reads` (the train step's forward pass)."""
        return self._depth > 0

    @property
    def trained_variable(self):
        """The variable the optimizer updates for this weight."""
        return self.variable if self.storage is None else self.storage.values

    def differentiated(self, capture):
        """Tensors beyond the trainable variables the step differentiates.

        When the step keeps dense gradients (`capture`) and the values
        vector is trained, the variable (read by no product) receives the
        dense gradient.
        """
        return [self.variable] if capture and self.storage is not None else []

    def step_gradient(self, gradient, untrained=None, when=None):
        """`(gradient for the optimizer, dense gradient)` of one train step.

        The forward pass read the raw weight (exactly 0.0 where inactive),
        so `gradient` is `dL/d(W*M)`, dense. The optimizer gets it masked by
        selection (`multiply_no_nan`: 0 wherever the mask is 0, even where
        the gradient is Inf or NaN), unless the layer's product already
        gives exact zeros there (`layer.masks_own_gradients`) on steps
        without dense gradients (`when` false).

        Args:
            gradient: the trained variable's gradient, or None.
            untrained: the dense gradient given to a variable that is not
                trained itself (see `differentiated`), or None.
            when: the step's boolean tensor of `request_dense_gradients`, or
                None.
        """
        if gradient is None:
            if untrained is not None:
                return None, untrained
            return None, tf.zeros(self.variable.shape, self.variable.dtype)

        def masked():
            return tf.math.multiply_no_nan(gradient, tf.cast(self.mask, gradient.dtype))

        if not self.layer.masks_own_gradients:
            return masked(), gradient
        if when is None:
            return gradient, gradient
        static = tf.get_static_value(when)
        if static is None:
            return tf.cond(when, masked, lambda: gradient), gradient
        return (masked() if static else gradient), gradient

    def step_done(self):
        """After the optimizer's update: the trained values moved on."""
        if self.storage is not None:
            self.storage.mark_trained()

    def dense_gradient(self):
        """The kept dense gradient (all-reduced across replicas), a tensor."""
        return tf.convert_to_tensor(self.states[DENSE_GRAD].value)

    def store_dense_gradient(self, gradient, unscale, momentum=0.0):
        """Writes `gradient * unscale` into the dense-gradient buffer.

        With `momentum=b > 0` the buffer becomes `b * buffer + gradient`.
        """
        buffer = self.states[DENSE_GRAD]
        gradient = tf.cast(gradient, buffer.dtype) * tf.cast(unscale, buffer.dtype)
        buffer.assign(momentum * buffer.value + gradient if momentum else gradient)

    def sparse_matmul(self, x, weight_gradient):
        """`x @ W` from the active weights only (`SparseDense(compute="sparse")`).

        In the train step with a values vector: a product of the values,
        whose gradient goes to them (and the dense one to the variable on
        steps that keep it). Elsewhere: a product of the variable's active
        entries; outside the train step its gradient is masked, as that of
        `W * M`.

        Args:
            x: float32/float64 `[batch, n_in]`.
            weight_gradient: "dense" or "active" (see `sparse_matmul`).
        """
        work = x.dtype
        if self.storage is not None and self.in_train_step:
            storage = self.storage
            with tf.control_dependencies([storage.ensure_laid_out()]):
                lay = storage.layout()
            # The variable (not read) receives the dense gradient when the step keeps it.
            kernel = None
            if self._when is not None:
                kernel = tf.convert_to_tensor(keras_compat.backend_variable(self.variable))
            return sparse_matmul.values_matmul(
                x, tf.cast(storage.values.value, work), lay, storage.shape,
                weight_gradient=weight_gradient, kernel=kernel,
                dense_weight_gradient=self._when)
        kernel = self.value()  # autocast under mixed precision
        mask = self.mask.value
        if self.in_train_step:
            # The train step masks the gradient itself and may want the dense one.
            options = dict(dense_weight_gradient=self._when)
        else:
            options = dict(mask=mask)
        return sparse_matmul.sparse_matmul(x, tf.cast(kernel, work), self.positions.get(mask),
                                           weight_gradient=weight_gradient, **options)
