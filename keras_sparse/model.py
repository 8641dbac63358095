"""`SparseModel`: a `keras.Model` whose train step honours the masks.

The model holds no sparse state of its own: each prunable weight's
`SparseParameter` owns its mask, rule state, optimizer slots and storage.
The model lists them (`masked_weights`), checks user input for them
(`set_masks`), and asks each one, in its train step, what to differentiate
and how to mask the gradient.
"""

import inspect

import keras
import tensorflow as tf

from keras_sparse.capture_steps import CountSteps, StepCount, split_train_function
from keras_sparse.layers.gradient_requests import DenseGradientRequests
from keras_sparse.layers.parameter import DENSE_GRAD
from keras_sparse.layers.raw_reads import raw_reads
from keras_sparse.layers.registry import masked_weights
from keras_sparse.optimizer_slots import check_elementwise
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import (
    check_exclusive_callbacks,
    check_number,
    pair_by_path,
)

__all__ = ["DENSE_GRAD", "FunctionalSparseModel", "SparseModel", "require_sparse_model"]


def require_sparse_model(model, who):
    """Raises a TypeError unless `model` is a `SparseModel`; returns it.

    Example: `require_sparse_model(model, "ks.pruning.snip")`.
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
    by subclassing, or with `ks.sparsify(model, ...)`. `fit` first zeroes
    inactive weights and resets their slots (values set by hand cannot leak
    through); its train step reads the raw kernels (equal to `W * M`: one
    multiply fewer per kernel) and masks the gradient before the optimizer,
    so under an element-wise optimizer inactive weights and their slots stay
    exactly 0.0 (Muon is refused). On request it keeps the dense gradient
    `dL/d(W*M)` of the same backward pass for mask rules. Under a
    multi-worker strategy it works around two Keras 3 bugs
    (keras-team/keras#20585; `keras_compat.MultiWorkerFixes`).

    Example:

    ```python
    inputs = keras.Input((784,))
    x = ks.layers.SparseDense(300, activation="relu")(inputs)
    model = ks.SparseModel(inputs, ks.layers.SparseDense(10)(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    ```
    """

    _dense_grad_requests = None
    _capture = None  # while a split train function traces: with capture or not
    _step_count = None  # the step counter followed on the host (see capture_steps)

    # Keras turns a Model subclass called with (inputs, outputs) into a
    # Functional one by rewriting its bases; FunctionalSparseModel takes
    # that role so that SparseModel itself stays a plain Model.
    def __new__(cls, *args, **kwargs):
        if cls is SparseModel and keras_compat.functional_init_arguments(args, kwargs):
            cls = FunctionalSparseModel
        return super(SparseModel, cls).__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        if keras_compat.functional_init_arguments(args, kwargs):
            keras_compat.init_functional(self, SparseModel, FunctionalSparseModel, args, kwargs)
        else:
            super().__init__(*args, **kwargs)

    @property
    def masked_weights(self):
        """Every `SparseParameter` (weight, mask, path, state) of the model, in order."""
        return masked_weights(self)

    # -- masks ------------------------------------------------------------

    def get_masks(self):
        """`{path: np.ndarray}` of every mask."""
        return {p.path: keras_compat.to_numpy(p.mask) for p in self.masked_weights}

    def set_masks(self, new_masks, grow_init=0.0):
        """Replaces masks, keeping weights and optimizer slots consistent.

        Args:
            new_masks: `{path: mask}` for some or all of `masked_weights`
                (paths as in `get_masks()`), or a list aligned with
                `masked_weights`.
            grow_init: value given to newly active weights, a finite number.

        Dropped weights become 0.0, grown ones `grow_init`; every optimizer
        slot of a dropped or grown weight is reset (see
        `SparseParameter.assign_mask`).

        Raises:
            TypeError: `grow_init` is not a number.
            ValueError: an unknown path, a list of the wrong length, a NaN or
                infinite `grow_init`, a mask refused by its parameter (see
                `SparseParameter.check_mask`); nothing changes then.

        Example:

        ```python
        masks = model.get_masks()
        masks["dense/kernel"][:, 0] = 0
        model.set_masks(masks)
        ```
        """
        grow_init = check_number(grow_init, "grow_init")
        pairs = pair_by_path([(p.path, p) for p in self.masked_weights], new_masks,
                             "set_masks", "masks", "prunable weight")
        checked = [(p, p.check_mask(mask)) for p, mask in pairs]  # all, before any change
        for p, mask in checked:
            self.assign_mask(p, tf.constant(mask, dtype=p.mask.dtype), grow_init)

    def assign_mask(self, masked_weight, mask, grow_init=0.0, keep=None):
        """`masked_weight.assign_mask(...)` with this model's optimizer.

        Unchecked, usable inside `tf.function`; `set_masks` checks user input.

        Example: `model.assign_mask(p, tf.ones(p.variable.shape))` (all active).
        """
        masked_weight.assign_mask(mask, keep=keep, grow_init=grow_init,
                                  optimizer=getattr(self, "optimizer", None),
                                  variables=self.trainable_variables)

    def apply_masks(self):
        """Zeroes inactive weights and resets their optimizer slots, in place.

        `fit`, `set_weights` and `load_weights` call it; call it yourself
        after assigning variables directly.
        """
        optimizer = getattr(self, "optimizer", None)
        # Eagerly, on one replica, an optimizer not built yet may be given
        # other variables to train (see SparseParameter.apply_mask).
        store = (tf.executing_eagerly() and not getattr(optimizer, "built", False)
                 and self.distribute_strategy.num_replicas_in_sync == 1)
        for p in self.masked_weights:
            p.apply_mask(optimizer, self.trainable_variables, new_optimizer=store)

    def sync_weights(self):
        """Brings every prunable variable up to date (kept for earlier callers:
        reads through the parameters, `layer.kernel`, files are current anyway)."""
        for p in self.masked_weights:
            p.read()

    def fit(self, *args, **kwargs):
        try:
            arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs).arguments
        except TypeError:  # a bad call: Keras' own fit says what is wrong
            return super().fit(*args, **kwargs)
        arguments.pop("self")
        check_exclusive_callbacks(arguments.get("callbacks"))
        check_elementwise(self.optimizer, "SparseModel.fit")
        # Optimizer slots may not exist yet; fresh slots start clean anyway.
        self.apply_masks()
        # A ks.data.load training pipeline follows Keras' epochs (exact resume).
        position = getattr(arguments.get("x"), "ks_epoch_position", None)
        if position is not None:
            arguments["callbacks"] = position.with_sync(arguments["x"],
                                                        arguments.get("callbacks"))
        count = self.step_count
        count.resync()
        count.follow = not isinstance(arguments.get("callbacks"), keras.callbacks.CallbackList)
        if count.follow:
            arguments["callbacks"] = list(arguments.get("callbacks") or []) + [CountSteps(count)]
        try:
            return super().fit(**arguments)
        finally:
            count.follow = True
            for p in self.masked_weights:
                p.end_fit()

    # The train step reads raw kernels, so weights written from outside are
    # masked at once (direct `variable.assign` is masked at the next `fit`).
    def set_weights(self, weights):
        for p in self.masked_weights:
            p.expect_write()
        super().set_weights(weights)
        self.apply_masks()

    def get_weights(self):
        for p in self.masked_weights:
            p.read()  # reading through the parameter brings the variable up to date
        return super().get_weights()

    def load_weights(self, *args, **kwargs):
        super().load_weights(*args, **kwargs)
        self.apply_masks()

    # -- dense gradients ----------------------------------------------------

    def request_dense_gradients(self, when=None, momentum=0.0, owner=None):
        """Asks the train step to keep `dL/d(W*M)` of every prunable weight.

        Owners' requests compose (the union of their steps); an owner's new
        request replaces its last. Loss scale removed; all-reduced when read.

        Args:
            when: `callable(step) -> bool`, whether the step of 0-based
                index `step` keeps the gradient; `None`: every step. Called
                on the host with a Python int before each step when the model
                runs one step per call (it then runs a train step traced with
                or without the capture), traced into the step with a tensor
                otherwise: use operators that work on both.
            momentum: `0.0` keeps the last gradient; `b > 0` keeps
                `b * buffer + grad`.
            owner: who asks (e.g. the callback); `None` is one shared owner.

        Raises:
            ValueError: `momentum` differs from another owner's (one buffer).

        Example:

        ```python
        model.request_dense_gradients(when=lambda step: step % 100 == 99)
        grads = model.dense_gradients()   # after such a step, aligned with masked_weights
        ```
        """
        requests = self._dense_grad_requests or DenseGradientRequests()
        with self.distribute_strategy.scope():
            requests.request(self.masked_weights, when, momentum, owner)
        self._dense_grad_requests = requests
        self.train_function = None  # retrace with the capture

    def release_dense_gradients(self, owner=None):
        """Withdraws `owner`'s request (mask rules do so when training ends)."""
        requests = self._dense_grad_requests
        if requests is not None and requests.release(owner):
            if not requests.by_owner:
                self._dense_grad_requests = None
            self.train_function = None  # retrace without this owner's steps

    def dense_gradients(self):
        """The kept dense gradients, aligned with `masked_weights` (readable after a release).

        Raises:
            ValueError: no dense gradients were requested.
        """
        return DenseGradientRequests.read(self.masked_weights)

    # -- training -------------------------------------------------------------

    @property
    def step_count(self):
        """The step counter as the host follows it (`capture_steps.StepCount`)."""
        if self._step_count is None:
            self._step_count = StepCount()
        return self._step_count

    def make_train_function(self, force=False):
        # With dense gradients requested and one step per call: two traced
        # variants, chosen per step on the host (see capture_steps).
        if self.train_function is not None and not force:
            return self.train_function
        requests = self._dense_grad_requests
        if requests is None or self.steps_per_execution != 1:
            self._capture = None
            super().make_train_function(force=force)
            return self.train_function

        def make():
            super(SparseModel, self).make_train_function(force=True)
            return self.train_function

        self.train_function = split_train_function(self, make, requests, self.step_count)
        return self.train_function

    def train_on_batch(self, *args, **kwargs):
        self.step_count.resync()  # the counter may have been set by hand between calls
        return super().train_on_batch(*args, **kwargs)

    def train_step(self, data):
        # Keras' TensorFlow train step; each parameter says what to
        # differentiate and how its gradient is masked.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        parameters = self.masked_weights
        requests = self._dense_grad_requests
        when = None  # whether this step keeps dense gradients
        if requests is not None and self._capture is None:
            when = requests.when(tf.convert_to_tensor(self.optimizer.iterations))
        elif requests is not None and self._capture:
            when = tf.constant(True)
        else:
            requests = None
        with tf.GradientTape() as tape:
            with raw_reads(parameters, when):
                if "training" in self.call_signature_parameters:
                    y_pred = self(x, training=True)
                else:
                    y_pred = self(x)
            # `training` was added to compute_loss in Keras 3.3.
            if "training" in inspect.signature(self.compute_loss).parameters:
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred,
                                         sample_weight=sample_weight, training=True)
            else:
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            keras_compat.loss_tracker(self).update_state(
                keras_compat.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0],
            )
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        extra = [t for p in parameters for t in p.differentiated(when is not None)]
        gradients = tape.gradient(loss, variables + extra)
        untrained = dict(zip((id(t) for t in extra), gradients[len(variables):]))
        gradients = gradients[:len(variables)]
        position = {id(v): i for i, v in enumerate(variables)}
        dense = []
        for p in parameters:
            i = position.get(id(p.variable))
            grad, full = p.step_gradient(None if i is None else gradients[i],
                                         untrained.get(id(p.variable)), when)
            dense.append(full)
            if i is not None:
                gradients[i] = grad
        if requests is not None:
            requests.store(parameters, dense, when, self.optimizer)
        self.optimizer.apply_gradients(zip(gradients, variables))
        for p in parameters:
            p.step_done()
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="keras_sparse")
class FunctionalSparseModel(SparseModel, keras_compat.Functional):
    """What `SparseModel(inputs, outputs)` builds: a Functional SparseModel."""
