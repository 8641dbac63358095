"""Every use of Keras internals, in one place.

keras_sparse builds on public Keras APIs except where Keras offers no public
way to do what the sparse train step and layers need. Those few places are
here, behind small functions, so that a Keras release that moves them breaks
one module, with one clear error (`check_keras_version`), instead of many.

What is private and why:

- `Functional`, `Trainer`, `functional_init_arguments` (`keras.src.models`):
  `SparseModel(inputs, outputs)` must become a Functional model the way
  `keras.Model(inputs, outputs)` does (`init_functional`).
- `optimizer._trainable_variables`: the variables an optimizer was built
  with, to tell which slots belong to which variable (`optimized_variables`).
- `CompileLoss` (`keras.src.trainers.compile_utils`): gradient-flow
  diagnostics evaluate the compiled loss of multi-output models without
  touching the model's own per-output loss trackers.
- `model._loss_tracker`: the train step updates the "loss" metric as
  Keras' own train step does.
- `layer._layers`: the direct sublayers of any layer (Keras has no public
  accessor for layers that are not models).
- `layer._tracker`, `layer._track_variable`: adding mask variables to a
  built layer, as Keras' own `enable_lora` does.
- `layer._trainable_variables`, `layer._non_trainable_variables`: the
  variables a layer holds itself, in the order Keras saves them, for the
  sparse layers' own `save_own_variables` / `load_own_variables`.
- the attribute under which `Dense`, `Conv*` and `EinsumDense` keep their
  kernel variable (`_kernel`), so a sparse layer can mask the public
  `kernel` property.
- `in_stateless_scope` (`keras.src.backend.common.stateless_scope`): whether
  variables currently read substituted values (symbolic calls,
  `stateless_call`), where `SparseDense(compute="sparse")` must not use its
  cache of active positions, which follows the real mask.
- `MultiWorkerFixes`: `SparseModel` overrides the TensorFlow trainer's
  `_maybe_symbolic_build` and `_make_function` to work around two bugs that
  stop `fit` under `MultiWorkerMirroredStrategy` (Keras 3.15); whether a
  strategy spans several workers is TensorFlow's private
  `strategy.extended._in_multi_worker_mode()`.

Also here, as a compatibility shim (public API, but a Keras behaviour to
work around): `to_numpy`, because `keras.ops.convert_to_numpy` on a Keras
variable makes NumPy 2 emit a DeprecationWarning.
"""

import contextlib

import keras
import tensorflow as tf
from keras.src.models.functional import Functional
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.models.model import Trainer, functional_init_arguments
from keras.src.trainers.compile_utils import CompileLoss

__all__ = [
    "KERAS_VERSION",
    "MIN_KERAS_VERSION",
    "MultiWorkerFixes",
    "SCALAR_REDUCE_FIXED_IN",
    "SYMBOLIC_BUILD_FIXED_IN",
    "Functional",
    "Trainer",
    "check_keras_version",
    "compiled_loss",
    "functional_init_arguments",
    "in_multi_worker_mode",
    "in_stateless_scope",
    "init_functional",
    "kernel_attribute",
    "loss_tracker",
    "optimized_variables",
    "own_variables",
    "restored_epoch",
    "sublayers",
    "to_numpy",
    "track_variable",
    "unscale_loss_for_distribution",
    "unlocked",
    "workaround_applies",
]

# Oldest Keras whose internals (listed above) this module was checked with.
MIN_KERAS_VERSION = (3, 15)
KERAS_VERSION = tuple(int(part) for part in keras.version().split(".")[:2])


def check_keras_version(version=KERAS_VERSION):
    """Raises an ImportError if `version` is older than `MIN_KERAS_VERSION`.

    The one version check of the package, run when it is imported. Newer
    Keras versions are allowed: a moved internal then fails in this module's
    imports, naming the Keras version.

    Example:

    >>> check_keras_version((3, 15))
    """
    if tuple(version) < MIN_KERAS_VERSION:
        raise ImportError(
            f"keras_sparse needs Keras >= {'.'.join(map(str, MIN_KERAS_VERSION))}; "
            f"found {keras.version()}. Upgrade with `pip install -U keras`."
        )


check_keras_version()

# Storage attribute of the kernel in Keras' own layers: `kernel` is a
# property over it (it adds LoRA and quantization), which the sparse layers
# replace with one returning `kernel * mask`.
_KERNEL_ATTRIBUTES = {"kernel": "_kernel", "pointwise_kernel": "_pointwise_kernel"}


def kernel_attribute(name):
    """The attribute holding the variable Keras exposes as `name`.

    Example:

    >>> kernel_attribute("kernel")
    '_kernel'
    """
    return _KERNEL_ATTRIBUTES[name]


def sublayers(layer):
    """The direct sublayers of `layer`, in the order they were tracked."""
    return list(getattr(layer, "_layers", []))


def own_variables(layer):
    """The variables `layer` holds itself (not its sublayers'), in save order.

    The list `keras.layers.Layer.save_own_variables` numbers "0", "1", ...
    """
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def optimized_variables(optimizer):
    """The variables `optimizer` (a built Keras optimizer) updates."""
    return list(getattr(optimizer, "_trainable_variables", []))


def init_functional(model, base, functional_base, args, kwargs):
    """Initializes `model` as a Functional model, as `keras.Model` does.

    Keras turns a `Model` subclass called with `(inputs, outputs)` into a
    Functional one by rewriting its bases in place. Keras offers no other
    way for a subclass that calls `super().__init__(inputs, outputs)`, so
    the same rewrite is done here, with `functional_base` (a Functional
    subclass of `base`) in place of `base`, leaving `base` itself
    untouched for later subclassed models.

    Args:
        model: the instance being initialized.
        base: the model class (`SparseModel`).
        functional_base: its Functional form (`FunctionalSparseModel`).
        args, kwargs: the `__init__` arguments.
    """

    def rewrite(cls):
        if cls is base:
            return functional_base
        if issubclass(cls, base) and not issubclass(cls, Functional):
            cls.__bases__ = tuple(rewrite(parent) for parent in cls.__bases__)
        return cls

    rewrite(type(model))
    Trainer.__init__(model)
    Functional.__init__(model, *args, **kwargs)


def unscale_loss_for_distribution(loss):
    """The loss summed over replicas back to a mean, as Keras' train step does."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(replicas, loss.dtype))
    return loss


def backend_variable(variable):
    """The `tf.Variable` behind a Keras variable (never an autocast copy).

    For in-place TensorFlow ops Keras does not wrap (`scatter_nd_update`).
    """
    return getattr(variable, "_value", variable)


def loss_tracker(model):
    """The compiled model's "loss" metric (a `keras.metrics.Mean`), or None."""
    return getattr(model, "_loss_tracker", None)


def compiled_loss(model, loss=None):
    """A fresh copy of the compiled loss of `model`, or of `loss`.

    A copy, so calls do not update the model's own per-output loss
    trackers. Regularization losses are never included.

    Args:
        model: a Keras model (None with `loss`: one unnamed output).
        loss: a loss (name, callable, or a list/dict per output) to use
            instead of the compiled one.

    Returns:
        A callable `loss(y_true, y_pred, sample_weight=None) -> scalar`, or
        None when `loss` is None and the model was compiled without a loss.
    """
    output_names = getattr(model, "output_names", None) if model is not None else None
    if loss is not None:
        return CompileLoss(loss, output_names=output_names)
    compiled = getattr(model, "_compile_loss", None)
    if compiled is None or getattr(model, "loss", None) is None:
        return None
    return CompileLoss(model.loss, compiled._user_loss_weights, output_names=output_names)


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built layer track new variables (Keras locks it after build)."""
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        yield
    finally:
        if locked:
            layer._tracker.lock()


def track_variable(layer, variable):
    """Makes `layer` own `variable` (saved with it, listed in `weights`)."""
    layer._track_variable(variable)


def restored_epoch(model):
    """The epoch `BackupAndRestore` restored `model` to, or None.

    Keras 3 (checked up to 3.15) stores it in the private `_initial_epoch`
    when a backup is loaded in `on_train_begin`, and `fit` starts there; it
    is None when nothing was restored in this process.
    """
    return getattr(model, "_initial_epoch", None)


def to_numpy(x):
    """`x` (a tensor or a Keras variable) as a numpy array, warning-free.

    `keras.ops.convert_to_numpy(variable)` calls `np.array(variable)`, and a
    Keras 3.15 variable's `__array__` takes no `copy` keyword, which NumPy 2
    reports with a DeprecationWarning at every call. Reading the variable
    with its own `numpy()` avoids it.

    Example:

    >>> to_numpy(keras.Variable([1.0, 2.0]))
    array([1., 2.], dtype=float32)
    """
    if isinstance(x, keras.Variable):
        return x.numpy()
    return keras.ops.convert_to_numpy(x)


# -- MultiWorkerMirroredStrategy ---------------------------------------------
#
# Keras 3's TensorFlow trainer fails in `fit` as soon as a
# `MultiWorkerMirroredStrategy` spans more than one worker, for a plain
# `keras.Model` as well (upstream: keras-team/keras#20585, open: "Keras 3 does
# not work with tf.distribute.MultiWorkerMirroredStrategy"). Two bugs, one
# workaround each, both in `MultiWorkerFixes`. Each is switched off on the
# Keras version that fixes it: set its `*_FIXED_IN` to that `(major, minor)`.
# None means no fixed release is known, so the workaround applies on every
# Keras version this package supports (>= MIN_KERAS_VERSION).

# Bug 1: `_maybe_symbolic_build` all-reduces the per-replica input batch.
SYMBOLIC_BUILD_FIXED_IN = None
# Bug 2: the step outputs (the scalar loss) are reduced along axis 0.
SCALAR_REDUCE_FIXED_IN = None


def workaround_applies(fixed_in, version=None):
    """Whether a workaround is still needed on Keras `version`.

    Args:
        fixed_in: the first `(major, minor)` Keras version with the upstream
            fix, or None when no release has it yet (always needed).
        version: `(major, minor)`; default the installed `KERAS_VERSION`.

    Returns:
        True when `version` is older than `fixed_in` (or `fixed_in` is None).

    Example:

    >>> workaround_applies(None, (3, 15)), workaround_applies((3, 16), (3, 16))
    (True, False)
    """
    version = KERAS_VERSION if version is None else tuple(version)
    return fixed_in is None or version < tuple(fixed_in)


def in_multi_worker_mode(strategy):
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` over several workers.

    The condition under which Keras' TensorFlow trainer takes its
    multi-worker reduction path (a one-worker `MultiWorkerMirroredStrategy`
    behaves like `MirroredStrategy` and needs no workaround).
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )


def _first_local_replica(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _with_leading_axis(step_function):
    def step(data):
        outputs = step_function(data)
        return tf.nest.map_structure(
            lambda t: tf.expand_dims(tf.convert_to_tensor(t), 0), outputs
        )

    return step


class MultiWorkerFixes:
    """Mixin: the two workarounds that let `fit` run under multi-worker training.

    Mixed into `SparseModel` (before `keras.Model`) so that only sparse models
    change, and only while their `distribute_strategy` is a
    `MultiWorkerMirroredStrategy` over several workers; anything else goes
    straight to Keras. No Keras function is patched globally.

    Upstream: keras-team/keras#20585 ("Does Keras 3 work with
    `tf.distribute.MultiWorkerMirroredStrategy`?", open), and for the second
    bug tensorflow/tensorflow#72388 ("Invalid reduction dimension 0 for input
    with 0 dimensions", closed as stale, not fixed). Measured with Keras 3.15
    and TensorFlow 2.21, two workers on one machine.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds from one worker-local batch instead of an all-reduced one.

        Bug 1 (keras-team/keras#20585): before the first step, Keras pulls one
        batch and calls `strategy.reduce("MEAN", (x, y), axis=None)` on the
        whole per-replica structure; `MultiWorkerMirroredStrategy` cannot
        reduce a tuple ("Attempt to convert a value (PerReplica...) ... to a
        Tensor"). The build only needs shapes and dtypes, so the first local
        replica's batch serves (no collective, nothing sent between workers).
        Off when `SYMBOLIC_BUILD_FIXED_IN` <= the Keras version.
        """
        strategy = self.distribute_strategy
        if (iterator is not None and data_batch is None
                and workaround_applies(SYMBOLIC_BUILD_FIXED_IN)
                and in_multi_worker_mode(strategy)):
            # As Keras does: the epoch iterator yields (begin, end, iterator).
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: _first_local_replica(v, strategy), next(batches)
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function):
        """Gives every train/test step output a leading axis of length 1.

        Bug 2 (tensorflow/tensorflow#72388, keras-team/keras#20585): under a
        multi-worker strategy Keras' `reduce_per_replica` reduces every step
        output with `strategy.reduce("MEAN", value, axis=0)`, which fails on
        the scalar loss and metrics ("Invalid reduction dimension 0 for input
        with 0 dimensions") and would average a vector metric over its own
        entries. With a leading axis of 1, that reduction averages over the
        replicas only and returns each output in its original shape.
        Off when `SCALAR_REDUCE_FIXED_IN` <= the Keras version.
        """
        if workaround_applies(SCALAR_REDUCE_FIXED_IN) and in_multi_worker_mode(
            self.distribute_strategy
        ):
            step_function = _with_leading_axis(step_function)
        return super()._make_function(step_function)
