"""`SparseModel`: a `keras.Model` whose train step honours the masks."""

import inspect

import keras
import tensorflow as tf
from keras import ops

from keras_sparse import masks as masks_lib
from keras_sparse.layers.base import dense_weight_gradients, raw_weights
from keras_sparse.layers.registry import masked_weights, sync_trained_values, value_storages
from keras_sparse.optimizer_slots import reset_slots
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_number, pair_by_path

__all__ = ["DENSE_GRAD", "FunctionalSparseModel", "SparseModel", "require_sparse_model"]

DENSE_GRAD = "dense_grad"


class _GradientRequests:
    """Who asked the train step for dense gradients, and for which steps.

    A plain object (not a dict) so Keras does not track it as model state.
    """

    def __init__(self):
        self.by_owner = {}  # id(owner) -> (owner, when, momentum)

    def when(self, step):
        """True at steps for which any requester asked (the union)."""
        asks = [tf.convert_to_tensor(when(step)) for _, when, _ in self.by_owner.values()]
        return tf.reduce_any(tf.stack(asks)) if len(asks) > 1 else asks[0]

    @property
    def momentum(self):
        return next(iter(self.by_owner.values()))[2]


def require_sparse_model(model, who):
    """Raises a TypeError unless `model` is a `SparseModel`; returns it.

    Args:
        model: the model passed to `who`.
        who: the caller's name, for the message.

    Raises:
        TypeError: `model` has not the sparse train step.

    Example:

    ```python
    require_sparse_model(model, "ks.pruning.snip")
    ```
    """
    if not isinstance(model, SparseModel):
        raise TypeError(
            f"{who} needs a keras_sparse.SparseModel (its train step keeps "
            f"inactive weights at zero); got {type(model).__name__}. Convert "
            "with ks.sparsify(model, ...) or subclass ks.SparseModel."
        )
    return model


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseModel(keras_compat.MultiWorkerFixes, keras.Model):
    """A `keras.Model` whose `train_step` keeps the sparse invariants.

    Build it like any model: `SparseModel(inputs, outputs)` (Functional),
    by subclassing, or with `ks.sparsify(model, ...)`. During `fit`:

    - the forward pass reads the raw kernels, which equal `W * M` because
      inactive weights are kept at exactly 0.0 (one multiply fewer per
      kernel than masking); the gradient is masked before the optimizer, so
      inactive weights get zero gradient and, with an element-wise optimizer
      (SGD, momentum, Adam, AdamW, RMSprop, Adagrad, Lion, ...) they stay
      exactly 0.0 and so do their slots. Muon, which orthogonalizes whole
      kernel updates, would move them and is refused by `fit`;
    - `fit` first zeroes inactive weights and resets their slots, so values
      set by hand cannot leak through;
    - on request, the dense gradient `dL/d(W*M)` of every prunable weight is
      stored for mask rules, at no extra forward or backward pass.

    Dense-gradient hook (for mask-rule callbacks):

    ```python
    model.request_dense_gradients(when=lambda step: step % 100 == 99)
    # ... after a step for which `when(step)` was true:
    grads = model.dense_gradients()      # list aligned with model.masked_weights
    ```

    `when(step)` is traced into the train step (`step` is the 0-based index
    of the step being run, a tensor). With `momentum=b` the buffer becomes
    `b * buffer + grad` on each selected step (every step by default; SNFS).
    It comes from the same backward pass, with any mixed-precision loss
    scale removed. Under a `tf.distribute` strategy each replica
    writes its own buffer and `dense_gradients()` returns their all-reduced
    mean, so every replica grows the same connections. Requests from
    different owners (e.g. two callbacks) compose: the gradient is kept at
    every step any of them asks for; a new request from the same owner
    replaces its earlier one.

    Under `tf.distribute.MultiWorkerMirroredStrategy` over several workers,
    `fit` and `evaluate` work around two Keras 3 bugs that stop a plain
    `keras.Model` there (keras-team/keras#20585; see
    `keras_sparse.utils.keras_compat.MultiWorkerFixes`); the workaround turns
    itself off on Keras versions that fix them.

    Mask changes go through `set_masks` (or `assign_mask` inside compiled
    code), which zero dropped weights and reset every optimizer slot of
    dropped and grown weights to its fresh value (0; Adagrad/Ftrl
    accumulators to `initial_accumulator_value`), so a regrown connection
    starts from scratch.

    Example:

    ```python
    inputs = keras.Input((784,))
    x = ks.layers.SparseDense(300, activation="relu")(inputs)
    model = ks.SparseModel(inputs, ks.layers.SparseDense(10)(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    ```
    """

    _dense_grad_requests = None

    # Keras turns a Model subclass called with (inputs, outputs) into a
    # Functional one by rewriting its bases in place, which would break every
    # later subclassed SparseModel; FunctionalSparseModel takes that role.
    def __new__(cls, *args, **kwargs):
        if cls is SparseModel and keras_compat.functional_init_arguments(args, kwargs):
            cls = FunctionalSparseModel
        return super(SparseModel, cls).__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        if keras_compat.functional_init_arguments(args, kwargs):
            _make_functional(type(self))
            keras_compat.Trainer.__init__(self)
            keras_compat.Functional.__init__(self, *args, **kwargs)
        else:
            super().__init__(*args, **kwargs)

    @property
    def masked_weights(self):
        """Every `MaskedWeight` (weight, mask, path) of the model, in order."""
        return masked_weights(self)

    # -- masks ------------------------------------------------------------

    def get_masks(self):
        """`{path: np.ndarray}` of every mask.

        Example:

        ```python
        masks = model.get_masks()     # {"dense/kernel": array([[1., 0., ...]])}
        ```
        """
        return {mw.path: keras_compat.to_numpy(mw.mask) for mw in self.masked_weights}

    def set_masks(self, new_masks, grow_init=0.0):
        """Replaces masks, keeping weights and optimizer slots consistent.

        Args:
            new_masks: `{path: mask}` for some or all of `masked_weights`
                (paths as in `get_masks()`), or a list aligned with
                `masked_weights`. Masks are validated (shape, values in
                {0, 1}) before anything changes.
            grow_init: value given to newly active weights (default 0.0),
                a finite number. A grown weight takes it whatever the
                variable held there before.

        Dropped weights become 0.0; every optimizer slot of a dropped or
        grown weight is reset (to 0.0; Adagrad/Ftrl accumulators to
        `initial_accumulator_value`, see `optimizer_slots.reset_slots`).
        Masks are applied by selection, never by multiplication, so NaN or
        Inf stored at an inactive position cannot survive (`Inf * 0` is NaN).

        Raises:
            TypeError: `grow_init` is not a number.
            ValueError: an unknown path, a list of the wrong length, a mask
                of the wrong shape or with values other than 0 and 1, a
                `grow_init` that is NaN or infinite; nothing changes then.

        Example:

        ```python
        masks = model.get_masks()
        masks["dense/kernel"][:, 0] = 0
        model.set_masks(masks)
        ```
        """
        grow_init = check_number(grow_init, "grow_init")
        pairs = pair_by_path(
            [(mw.path, mw) for mw in self.masked_weights], new_masks, "set_masks",
            "masks", "prunable weight"
        )
        checked = [
            (mw, masks_lib.check_mask(m, mw.weight.shape, mw.path)) for mw, m in pairs
        ]
        for mw, mask in checked:
            storage = getattr(mw.layer, "value_storage", None)
            active = int((mask > 0).sum())
            if storage is not None and active > storage.capacity:
                raise ValueError(
                    f"set_masks: the mask for {mw.path!r} has {active} active weights; "
                    f"its layer (compute='sparse') trains at most {storage.capacity} "
                    "(its count when training started). Pass a mask with at most that "
                    "many ones, or build the model again with the new masks."
                )
        for mw, mask in checked:
            self.assign_mask(mw, tf.constant(mask, dtype=mw.mask.dtype), grow_init)

    def assign_mask(self, masked_weight, mask, grow_init=0.0, keep=None):
        """Sets one mask from a tensor, keeping weight and slots consistent.

        The building block of mask rules: it does no validation and works
        inside `tf.function` (mask-rule callbacks call it from their
        compiled update). Weights where `mask` is 0 become 0.0; weights
        that become active take `grow_init` (whatever was stored there,
        NaN included); every optimizer slot of a dropped or grown weight is
        reset to its fresh value.

        Args:
            masked_weight: one of `model.masked_weights`.
            mask: a tensor of the weight's shape holding only 0 and 1
                (unchecked: use `set_masks` for user input).
            grow_init: value given to newly active weights (default 0.0).
            keep: `None`, or a tensor of the weight's shape: the positions
                whose weight and slots carry over (nonzero; a subset of
                the old mask). Every other active position of `mask`
                restarts from `grow_init` with fresh slots. Default: the
                positions active in both the old mask and `mask`.
                Drop-and-grow rules pass their mask after the drop, so a
                weight dropped and regrown in one update restarts, in one
                call.

        Example:

        ```python
        mw = model.masked_weights[0]
        model.assign_mask(mw, tf.ones(mw.weight.shape))   # all active
        ```
        """
        mw = masked_weight
        storage = getattr(mw.layer, "value_storage", None)
        new = tf.cast(mask, mw.mask.dtype)
        if storage is not None:
            storage.sync()
            storage.check_capacity(new)  # before anything changes
        active = new > 0
        kept = active & (tf.convert_to_tensor(mw.mask) > 0)
        if keep is not None:
            kept = kept & (tf.convert_to_tensor(keep) > 0)
        weight = tf.convert_to_tensor(mw.weight)
        # Selection, not arithmetic: whatever the variable held at a grown or
        # dropped position (even NaN) is replaced, never multiplied by 0.
        grown_value = tf.where(active, tf.cast(grow_init, weight.dtype), tf.zeros_like(weight))
        mw.weight.assign(tf.where(kept, weight, grown_value))
        reset_slots(self._optimizer_or_none(), mw.weight, kept, self.trainable_variables)
        mw.mask.assign(new)
        mw.layer.mask_changed()
        if storage is not None:
            storage.relayout(self._optimizer_or_none(), self.trainable_variables, keep=kept,
                             checked=True)

    # Private name kept for callers written against earlier versions.
    _assign_mask = assign_mask

    def _optimizer_or_none(self):
        return getattr(self, "optimizer", None)

    def apply_masks(self):
        """Zeroes inactive weights and resets their optimizer slots, in place.

        `fit`, `set_weights` and `load_weights` call it; call it yourself
        after assigning variables directly.

        Example:

        ```python
        model.layers[1].kernel.assign(new_kernel)   # hypothetical direct write
        model.apply_masks()
        ```
        """
        self._store_values()
        self.sync_weights()
        for mw in self.masked_weights:
            active = tf.convert_to_tensor(mw.mask) > 0
            weight = tf.convert_to_tensor(mw.weight)
            mw.weight.assign(tf.where(active, weight, tf.zeros_like(weight)))  # NaN-safe
            reset_slots(self._optimizer_or_none(), mw.weight, active, self.trainable_variables)
            mw.layer.mask_changed()  # masks may have been written directly
            storage = getattr(mw.layer, "value_storage", None)
            if storage is not None:
                storage.relayout(self._optimizer_or_none(), self.trainable_variables)

    def _store_values(self):
        """Switches `compute="sparse"` layers to training their active values.

        Only where the optimizer can still take a new variable (not built
        yet), eagerly, on one replica: the layer then trains a vector of as
        many values as its mask has active weights. Elsewhere the layer
        trains its kernel (sparse products, dense-shaped optimizer update).
        """
        optimizer = self._optimizer_or_none()
        if (not tf.executing_eagerly() or getattr(optimizer, "built", False)
                or self.distribute_strategy.num_replicas_in_sync > 1):
            return
        for mw in self.masked_weights:
            if getattr(mw.layer, "compute", None) == "sparse" and mw.layer.value_storage is None:
                count = int(tf.math.count_nonzero(tf.convert_to_tensor(mw.mask) > 0))
                mw.layer.store_values(max(count, 1))

    def sync_weights(self):
        """Brings every kernel up to date with the values trained for it.

        `SparseDense(compute="sparse")` layers in a `SparseModel` train a
        vector of their active weights and write it into the kernel
        variable only when something reads kernels: mask rules, `fit`'s end
        and each epoch's end, `get_weights`, saving, `ks.strip`, export. Call
        it before reading such a kernel variable yourself during training
        (e.g. in a callback's `on_train_batch_end`).

        Example:

        ```python
        model.sync_weights()
        kernel = model.get_layer("fc").kernel.numpy()
        ```
        """
        sync_trained_values(self)

    def fit(self, *args, **kwargs):
        try:
            arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs).arguments
        except TypeError:  # a bad call: Keras' own fit says what is wrong
            arguments = {}
        _check_exclusive_callbacks(arguments.get("callbacks"))
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if isinstance(inner, getattr(keras.optimizers, "Muon", ())):  # absent in older Keras
            raise TypeError(
                "SparseModel.fit: optimizer Muon updates each kernel as a whole "
                "(orthogonalized), so inactive weights would not stay 0; use an "
                "element-wise optimizer (SGD, Adam, AdamW, RMSprop, Lion, ...)."
            )
        # Optimizer slots may not exist yet; fresh slots start clean anyway.
        self.apply_masks()
        # A ks.data.load training pipeline follows Keras' epochs (exact resume).
        x = args[0] if args else kwargs.get("x")
        position = getattr(x, "ks_epoch_position", None)
        if position is not None and len(args) < 6:  # callbacks not positional
            kwargs["callbacks"] = position.with_sync(x, kwargs.get("callbacks"))
        if len(args) < 6 and any(getattr(mw.layer, "compute", None) == "sparse"
                                 for mw in self.masked_weights):
            kwargs["callbacks"] = _with_weight_sync(kwargs.get("callbacks"))
        try:
            return super().fit(*args, **kwargs)
        finally:
            self.sync_weights()

    # The train step reads raw kernels, so weights written from outside are
    # masked at once (direct `variable.assign` is masked at the next `fit`).
    def set_weights(self, weights):
        for storage in value_storages(self):
            storage.discard_pending()  # the kernels are overwritten
        super().set_weights(weights)
        self.apply_masks()

    def get_weights(self):
        self.sync_weights()
        return super().get_weights()

    def save(self, *args, **kwargs):
        self.sync_weights()
        return super().save(*args, **kwargs)

    def save_weights(self, *args, **kwargs):
        self.sync_weights()
        return super().save_weights(*args, **kwargs)

    def load_weights(self, *args, **kwargs):
        super().load_weights(*args, **kwargs)
        self.apply_masks()

    # -- dense gradients ----------------------------------------------------

    def request_dense_gradients(self, when=None, momentum=0.0, owner=None):
        """Asks the train step to keep `dL/d(W*M)` for every prunable weight.

        Requests from different owners compose: the gradient is kept at the
        union of the steps they ask for (each reader reads it right after a
        step it asked for). A new request from the same owner replaces its
        earlier one.

        Args:
            when: `callable(step) -> bool tensor` choosing the steps whose
                gradient is kept; `None` means every step.
            momentum: `0.0` keeps the last captured gradient; `b > 0` keeps
                `b * buffer + grad` (the momentum of the dense gradient).
            owner: who asks (e.g. the callback), so its later requests
                replace this one; `None` is one shared owner.

        Raises:
            ValueError: `momentum` differs from another owner's: there is
                one buffer, so the plain gradient and a momentum (or two
                momenta) cannot be kept together.

        Example:

        ```python
        model.request_dense_gradients(when=lambda step: step % 100 == 99)
        ```
        """
        momentum = check_number(momentum, "momentum", 0, 1, high_open=True)
        requests = self._dense_grad_requests or _GradientRequests()
        others = {o: r for o, r in requests.by_owner.items() if o != id(owner)}
        clash = [(holder, theirs) for holder, _, theirs in others.values()
                 if theirs != momentum]
        if clash:
            holder, theirs = clash[0]
            raise ValueError(
                f"request_dense_gradients: `momentum`={momentum} differs from "
                f"momentum={theirs} already requested by {type(holder).__name__}; "
                "the model keeps one dense-gradient buffer, so requesters must "
                "agree on it."
            )
        with self.distribute_strategy.scope():
            for mw in self.masked_weights:
                mw.layer.add_mask_state(
                    DENSE_GRAD, synchronization="on_read", aggregation="sum"
                )
        others[id(owner)] = (owner, when or (lambda step: True), momentum)
        requests.by_owner = others
        self._dense_grad_requests = requests
        self.train_function = None  # retrace with the capture

    def release_dense_gradients(self, owner=None):
        """Withdraws `owner`'s dense-gradient request (see `request_dense_gradients`).

        Mask-rule callbacks call it when training ends, so a later `fit` with
        another rule (say SNFS after RigL, which keep different buffers) is
        not held to the earlier rule's request. Releasing an owner that holds
        no request does nothing.

        Args:
            owner: the object passed as `owner` to `request_dense_gradients`.

        Example:

        ```python
        model.request_dense_gradients(owner=my_rule)
        model.release_dense_gradients(owner=my_rule)
        ```
        """
        requests = self._dense_grad_requests
        if requests is None or id(owner) not in requests.by_owner:
            return
        del requests.by_owner[id(owner)]
        if not requests.by_owner:
            self._dense_grad_requests = None
        self.train_function = None  # retrace without this owner's steps

    def dense_gradients(self):
        """The stored dense gradients, aligned with `masked_weights`.

        Raises:
            ValueError: no dense gradients were requested.

        Example:

        ```python
        grads = model.dense_gradients()   # [tensor of mw.weight.shape, ...]
        ```
        """
        # The buffers outlive a released request: the last captured values stay readable.
        weights = self.masked_weights
        if not weights or not all(mw.layer.has_mask_state(DENSE_GRAD) for mw in weights):
            raise ValueError(
                "dense_gradients(): call request_dense_gradients() before fit."
            )
        return [tf.convert_to_tensor(mw.state(DENSE_GRAD).value) for mw in weights]

    def _store_dense_gradients(self, dense, when):
        momentum = self._dense_grad_requests.momentum
        weights = self.masked_weights

        def store():
            # Inside the branch, so steps that do not capture pay nothing.
            unscale = 1.0 / self.optimizer.scale_loss(tf.constant(1.0))
            for mw, grad in zip(weights, dense):
                buffer = mw.state(DENSE_GRAD)
                grad = tf.cast(grad, buffer.dtype) * tf.cast(unscale, buffer.dtype)
                buffer.assign(momentum * buffer.value + grad if momentum else grad)
            return tf.constant(True)

        tf.cond(when, store, lambda: tf.constant(False))

    # -- training -------------------------------------------------------------

    def train_step(self, data):
        # Keras' TensorFlow train step, plus the mask handling above.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        capture = self._dense_grad_requests is not None
        # Whether this step keeps dense gradients (`step`: 0-based index of
        # the step being run); sparse-compute layers then compute them.
        when = None
        if capture:
            when = self._dense_grad_requests.when(tf.convert_to_tensor(self.optimizer.iterations))
        with tf.GradientTape() as tape:
            with raw_weights(), dense_weight_gradients(when):
                if "training" in self.call_signature_parameters:
                    y_pred = self(x, training=True)
                else:
                    y_pred = self(x)
            # `training` was added to compute_loss in Keras 3.3; user
            # overrides may not take it.
            if "training" in inspect.signature(self.compute_loss).parameters:
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred,
                                         sample_weight=sample_weight, training=True)
            else:
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            keras_compat.loss_tracker(self).update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(
                    next(i for i in tf.nest.flatten(x) if i is not None)
                )[0],
            )
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)

        # `trainable_variables`: value vectors (see `sync_weights`) are
        # trained but are not among the `weights`.
        weights = self.trainable_variables
        storages = value_storages(self)
        # Their kernels are not trained; the dense gradient reaches them on
        # steps that keep it.
        kernels = [s.kernel for s in storages] if capture else []
        gradients = tape.gradient(loss, weights + kernels)
        extra = dict(zip((id(k) for k in kernels), gradients[len(weights):]))
        gradients = gradients[:len(weights)]
        dense = self._mask_gradients(weights, gradients, when, extra)
        if capture:
            self._store_dense_gradients(dense, when)
        self.optimizer.apply_gradients(zip(gradients, weights))
        for storage in storages:
            storage.mark_trained()
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _mask_gradients(self, weights, gradients, when=None, untrained=None):
        """Masks prunable gradients in place; returns the dense ones.

        The forward pass read the raw weights (exactly 0.0 where inactive), so
        each prunable gradient is `dL/d(W*M)`, dense; masking it is what keeps
        inactive weights from moving, even when that gradient is Inf or NaN
        at an inactive position. Returned loss-scaled, aligned with
        `masked_weights` (zeros for a weight outside the trainable list).

        A layer that `masks_own_gradients` (`SparseDense(compute="sparse")`)
        gives exactly 0 at inactive positions already, except at steps where
        `when` is true (it then computes the dense gradient): its gradient is
        masked on those steps only. `untrained` maps `id(kernel)` to the dense
        gradient of a kernel that is not trained itself (its layer trains a
        vector of values).
        """
        position = {id(w): i for i, w in enumerate(weights)}
        dense = []
        for mw in self.masked_weights:
            i = position.get(id(mw.weight))
            grad = gradients[i] if i is not None else None
            if i is None and untrained and untrained.get(id(mw.weight)) is not None:
                dense.append(untrained[id(mw.weight)])
                continue
            if grad is None:
                dense.append(tf.zeros(mw.weight.shape, mw.weight.dtype))
                continue
            # A selection, not `grad * mask`: a gradient that overflowed to
            # Inf at an inactive position would give Inf * 0 = NaN and reach
            # the weight and its slots. multiply_no_nan returns 0 wherever
            # the mask is 0, whatever `grad` holds, in one element-wise pass
            # (as cheap as the multiply; tf.where would add a compare).
            def masked(grad=grad, mask=mw.mask):
                return tf.math.multiply_no_nan(grad, tf.cast(mask, grad.dtype))

            if not mw.layer.masks_own_gradients:
                gradients[i] = masked()
            elif when is not None:
                static = tf.get_static_value(when)
                if static is None:
                    gradients[i] = tf.cond(when, masked, lambda grad=grad: grad)
                elif static:
                    gradients[i] = masked()
            dense.append(grad)
        return dense


@keras.saving.register_keras_serializable(package="keras_sparse")
class FunctionalSparseModel(SparseModel, keras_compat.Functional):
    """What `SparseModel(inputs, outputs)` builds: a Functional SparseModel."""


def _make_functional(cls):
    """Puts FunctionalSparseModel in place of SparseModel among cls's bases.

    The same in-place rewrite Keras does for Model subclasses called with
    (inputs, outputs), leaving SparseModel itself untouched.
    """
    if cls is SparseModel:
        return FunctionalSparseModel
    if issubclass(cls, SparseModel) and not issubclass(cls, keras_compat.Functional):
        cls.__bases__ = tuple(_make_functional(base) for base in cls.__bases__)
    return cls


class _SyncWeights(keras.callbacks.Callback):
    """Brings kernels up to date at each epoch's end, before other callbacks."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.sync_weights()


def _with_weight_sync(callbacks):
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks  # already assembled by the caller
    return [_SyncWeights()] + list(tf.nest.flatten(callbacks or []))


def _check_exclusive_callbacks(callbacks):
    """Refuses two callbacks of one `exclusive_group` in the same `fit`.

    Two dynamic-sparse-training callbacks would each rewrite the masks on
    their own schedule, and History would show only one set of `dst/*` logs.
    Checked before anything changes (callbacks declare the group as a class
    attribute; see `ks.callbacks.MaskCallback`).
    """
    groups = {}
    for callback in tf.nest.flatten(callbacks or []):
        group = getattr(callback, "exclusive_group", None)
        if group is None:
            continue
        if group in groups:
            first = type(groups[group]).__name__
            raise ValueError(
                f"fit: `callbacks` holds two {group} callbacks, {first} and "
                f"{type(callback).__name__}; they would both rewrite the masks. "
                "Pass one (DynamicSparsity(drop=..., grow=...) combines rules)."
            )
        groups[group] = callback


def unscale_loss_for_distribution(loss):
    """The loss summed over replicas back to a mean, as Keras' train step does.

    Under a `tf.distribute` strategy each replica's loss is scaled by
    `1 / num_replicas`; the loss metric wants the unscaled value.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = ops.multiply(loss, ops.cast(replicas, loss.dtype))
    return loss
