"""`SparseModel`: a `keras.Model` whose train step honours the masks."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import unscale_loss_for_distribution  # as in Keras' own train_step
from keras.src.models.functional import Functional
from keras.src.models.model import Trainer, functional_init_arguments

from keras_sparse import masks as masks_lib
from keras_sparse.layers.base import SparseLayer, raw_weights
from keras_sparse.optimizer_slots import reset_slots

DENSE_GRAD = "dense_grad"


class MaskedWeight:
    """One prunable variable with its mask and rule state.

    Attributes:
        layer: the sparse layer holding it.
        name: the weight's name in the layer (`"kernel"`).
        weight: the variable.
        mask: the mask variable (same shape and dtype).
        path: the variable's path (`"dense/kernel"`), unique in the model.
    """

    def __init__(self, layer, name, weight, mask):
        self.layer, self.name, self.weight, self.mask = layer, name, weight, mask
        self.path = weight.path

    @property
    def size(self):
        return int(np.prod(self.weight.shape))

    def state(self, name):
        return self.layer.mask_state(self.name, name)

    def __repr__(self):
        return f"<MaskedWeight {self.path} shape={tuple(self.weight.shape)}>"


def flatten_layers(model):
    """Every sublayer of `model`, depth first, in model order.

    Keras' `_flatten_layers` reverses the order inside nested models; the
    first prunable layer must really be the one nearest the input (SPEC §4).
    """
    found, seen = [], set()

    def visit(layer):
        for child in layer._layers:
            if id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                visit(child)

    visit(model)
    return found


def masked_weights(model):
    """Every `MaskedWeight` of `model`, nested models included, in order."""
    found = []
    for layer in flatten_layers(model):
        if isinstance(layer, SparseLayer) and layer.built:
            for (name, weight), mask in zip(layer._prunable_items(), layer.get_masks()):
                found.append(MaskedWeight(layer, name, weight, mask))
    return found


def pair_by_path(items, values, who, what, noun):
    """Pairs `values` (`{path: value}` or a full aligned list) with `items`.

    `items` is a list of `(path, item)` describing `noun`s (e.g. "weight");
    unknown paths or a list of the wrong length raise a ValueError.
    """
    if isinstance(values, dict):
        by_path = dict(items)
        unknown = sorted(set(values) - set(by_path))
        if unknown:
            raise ValueError(
                f"{who}: unknown {noun} paths {unknown}; known: {sorted(by_path)}."
            )
        return [(by_path[p], v) for p, v in values.items()]
    values = list(values)
    if len(values) != len(items):
        raise ValueError(
            f"{who}: got {len(values)} {what} for {len(items)} {noun}s; pass "
            "one per entry in order, or a {path: value} dict."
        )
    return [(item, v) for (_, item), v in zip(items, values)]


def require_sparse_model(model, who):
    """Raises a TypeError unless `model` is a built `SparseModel`."""
    if not isinstance(model, SparseModel):
        raise TypeError(
            f"{who} needs a keras_sparse.SparseModel (its train step keeps "
            f"inactive weights at zero); got {type(model).__name__}. Convert "
            "with ks.sparsify(model, ...) or subclass ks.SparseModel."
        )
    return model


@keras.saving.register_keras_serializable(package="keras_sparse")
class SparseModel(keras.Model):
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
    mean (SPEC §3.5). A later request replaces an earlier one.

    Mask changes go through `set_masks`, which zeroes dropped weights and
    resets every optimizer slot of dropped and grown weights (SPEC §3.2;
    see `optimizer_slots.reset_slots` for Adagrad/Ftrl accumulators).

    Example:

    ```python
    inputs = keras.Input((784,))
    x = ks.layers.SparseDense(300, activation="relu")(inputs)
    model = ks.SparseModel(inputs, ks.layers.SparseDense(10)(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    ```
    """

    _dense_grad_when = None
    _dense_grad_momentum = 0.0

    # Keras turns a Model subclass called with (inputs, outputs) into a
    # Functional one by rewriting its bases in place, which would break every
    # later subclassed SparseModel; FunctionalSparseModel takes that role.
    def __new__(cls, *args, **kwargs):
        if cls is SparseModel and functional_init_arguments(args, kwargs):
            cls = FunctionalSparseModel
        return super(SparseModel, cls).__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        if functional_init_arguments(args, kwargs):
            _make_functional(type(self))
            Trainer.__init__(self)
            Functional.__init__(self, *args, **kwargs)
        else:
            super().__init__(*args, **kwargs)

    @property
    def masked_weights(self):
        return masked_weights(self)

    # -- masks ------------------------------------------------------------

    def get_masks(self):
        """`{path: np.ndarray}` of every mask."""
        return {mw.path: ops.convert_to_numpy(mw.mask) for mw in self.masked_weights}

    def set_masks(self, new_masks, grow_init=0.0):
        """Replaces masks, keeping weights and optimizer slots consistent.

        Args:
            new_masks: `{path: mask}` for some or all of `masked_weights`
                (paths as in `get_masks()`), or a list aligned with
                `masked_weights`. Masks are validated (shape, values in
                {0, 1}) before anything changes.
            grow_init: value given to newly active weights (default 0.0).

        Dropped weights become 0.0; every optimizer slot of a dropped or
        grown weight is reset (to 0.0; Adagrad/Ftrl accumulators to
        `initial_accumulator_value`, see `optimizer_slots.reset_slots`).
        """
        pairs = pair_by_path(
            [(mw.path, mw) for mw in self.masked_weights], new_masks, "set_masks",
            "masks", "prunable weight"
        )
        checked = [
            (mw, masks_lib.check_mask(m, mw.weight.shape, mw.path)) for mw, m in pairs
        ]
        for mw, mask in checked:
            self._assign_mask(mw, tf.constant(mask, dtype=mw.mask.dtype), grow_init)

    def _assign_mask(self, mw, new, grow_init=0.0):
        """Assigns one mask (a tensor); usable inside `tf.function`."""
        new = tf.cast(new, mw.mask.dtype)
        old = tf.convert_to_tensor(mw.mask)
        grown = new * (1.0 - old)
        kept = new * old
        weight = tf.convert_to_tensor(mw.weight)
        mw.weight.assign(weight * tf.cast(kept, weight.dtype) + tf.cast(grown * grow_init, weight.dtype))
        reset_slots(getattr(self, "optimizer", None), mw.weight, kept)
        mw.mask.assign(new)

    def apply_masks(self):
        """Zeroes inactive weights and resets their optimizer slots, in place."""
        for mw in self.masked_weights:
            mask = tf.convert_to_tensor(mw.mask)
            mw.weight.assign(mw.weight * tf.cast(mask, mw.weight.dtype))
            reset_slots(getattr(self, "optimizer", None), mw.weight, mask)

    def fit(self, *args, **kwargs):
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
        return super().fit(*args, **kwargs)

    # The train step reads raw kernels, so weights written from outside are
    # masked at once (direct `variable.assign` is masked at the next `fit`).
    def set_weights(self, weights):
        super().set_weights(weights)
        self.apply_masks()

    def load_weights(self, *args, **kwargs):
        super().load_weights(*args, **kwargs)
        self.apply_masks()

    # -- dense gradients ----------------------------------------------------

    def request_dense_gradients(self, when=None, momentum=0.0):
        """Asks the train step to keep `dL/d(W*M)` for every prunable weight.

        Args:
            when: `callable(step) -> bool tensor` choosing the steps whose
                gradient is kept; `None` means every step.
            momentum: `0.0` keeps the last captured gradient; `b > 0` keeps
                `b * buffer + grad` (the momentum of the dense gradient).
        """
        with self.distribute_strategy.scope():
            for mw in self.masked_weights:
                mw.layer.add_mask_state(
                    DENSE_GRAD, synchronization="on_read", aggregation="sum"
                )
        self._dense_grad_when = when or (lambda step: True)
        self._dense_grad_momentum = float(momentum)
        self.train_function = None  # retrace with the capture

    def dense_gradients(self):
        """The stored dense gradients, aligned with `masked_weights`."""
        if self._dense_grad_when is None:
            raise ValueError(
                "dense_gradients(): call request_dense_gradients() before fit."
            )
        return [tf.convert_to_tensor(mw.state(DENSE_GRAD).value) for mw in self.masked_weights]

    def _store_dense_gradients(self, dense):
        momentum = self._dense_grad_momentum
        weights = self.masked_weights

        def store():
            # Inside the branch, so steps that do not capture pay nothing.
            unscale = 1.0 / self.optimizer.scale_loss(tf.constant(1.0))
            for mw, grad in zip(weights, dense):
                buffer = mw.state(DENSE_GRAD)
                grad = tf.cast(grad, buffer.dtype) * tf.cast(unscale, buffer.dtype)
                buffer.assign(momentum * buffer.value + grad if momentum else grad)
            return tf.constant(True)

        step = tf.convert_to_tensor(self.optimizer.iterations)
        tf.cond(tf.convert_to_tensor(self._dense_grad_when(step)), store, lambda: tf.constant(False))

    # -- training -------------------------------------------------------------

    def train_step(self, data):
        # Keras' TensorFlow train step, plus the mask handling above.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        capture = self._dense_grad_when is not None
        with tf.GradientTape() as tape:
            with raw_weights():
                if self._call_has_training_arg:
                    y_pred = self(x, training=True)
                else:
                    y_pred = self(x)
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(
                    next(i for i in tf.nest.flatten(x) if i is not None)
                )[0],
            )
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)

        weights = self.trainable_weights
        gradients = tape.gradient(loss, weights)
        dense = self._mask_gradients(weights, gradients)
        if capture:
            self._store_dense_gradients(dense)
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _mask_gradients(self, weights, gradients):
        """Masks prunable gradients in place; returns the dense ones.

        The forward pass read the raw weights (exactly 0.0 where inactive), so
        each prunable gradient is `dL/d(W*M)`, dense; masking it is what keeps
        inactive weights from moving. Returned loss-scaled, aligned with
        `masked_weights` (zeros for a weight outside the trainable list).
        """
        position = {id(w): i for i, w in enumerate(weights)}
        dense = []
        for mw in self.masked_weights:
            i = position.get(id(mw.weight))
            grad = gradients[i] if i is not None else None
            if grad is None:
                dense.append(tf.zeros(mw.weight.shape, mw.weight.dtype))
                continue
            gradients[i] = grad * tf.cast(mw.mask, grad.dtype)
            dense.append(grad)
        return dense


@keras.saving.register_keras_serializable(package="keras_sparse")
class FunctionalSparseModel(SparseModel, Functional):
    """What `SparseModel(inputs, outputs)` builds: a Functional SparseModel."""


def _make_functional(cls):
    """Puts FunctionalSparseModel in place of SparseModel among cls's bases.

    The same in-place rewrite Keras does for Model subclasses called with
    (inputs, outputs), leaving SparseModel itself untouched.
    """
    if cls is SparseModel:
        return FunctionalSparseModel
    if issubclass(cls, SparseModel) and not issubclass(cls, Functional):
        cls.__bases__ = tuple(_make_functional(base) for base in cls.__bases__)
    return cls
