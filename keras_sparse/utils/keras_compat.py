"""Every use of Keras internals, in one place.

keras_sparse builds on public Keras APIs except where Keras offers no public
way to do what the sparse train step and layers need. Those few places are
here, behind small functions, so that a Keras release that moves them breaks
one module, with one clear error (`check_keras_version`), instead of many.

What is private and why:

- `Functional`, `Trainer`, `functional_init_arguments` (`keras.src.models`):
  `SparseModel(inputs, outputs)` must become a Functional model the way
  `keras.Model(inputs, outputs)` does.
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

Also here, as a compatibility shim (public API, but a Keras behaviour to
work around): `to_numpy`, because `keras.ops.convert_to_numpy` on a Keras
variable makes NumPy 2 emit a DeprecationWarning.
"""

import contextlib

import keras
from keras.src.models.functional import Functional
from keras.src.models.model import Trainer, functional_init_arguments
from keras.src.trainers.compile_utils import CompileLoss

__all__ = [
    "KERAS_VERSION",
    "MIN_KERAS_VERSION",
    "Functional",
    "Trainer",
    "check_keras_version",
    "compiled_loss",
    "functional_init_arguments",
    "kernel_attribute",
    "loss_tracker",
    "own_variables",
    "restored_epoch",
    "sublayers",
    "to_numpy",
    "track_variable",
    "unlocked",
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
