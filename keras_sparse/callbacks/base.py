"""Shared base of the mask-rule callbacks."""

import keras
import tensorflow as tf

from keras_sparse.conversion import sparsity_report
from keras_sparse.distributions import check_names
from keras_sparse.model import require_sparse_model
from keras_sparse.utils.serialization import Configurable

__all__ = ["MaskCallback", "log_sparsity", "require_inactive_weights"]


class MaskCallback(Configurable, keras.callbacks.Callback):
    """A callback that reads or changes the masks of a `SparseModel`.

    `set_model` refuses any other model with a clear `TypeError`, before
    training starts, and checks that every name in the callback's
    `dense_layers` (if it has one) matches a masked weight of the model.
    Subclasses with arguments return them from `get_config`; `from_config`
    is the class called with them.

    A subclass that must be the only one of its kind in a `fit` (two
    dynamic-sparse-training callbacks would both rewrite the masks) sets the
    class attribute `exclusive_group` to a short description;
    `SparseModel.fit` refuses two callbacks of the same group.

    Example:

    ```python
    class Shuffle(ks.callbacks.MaskCallback):
        def on_epoch_end(self, epoch, logs=None):
            masks = [np.random.permutation(m.ravel()).reshape(m.shape)
                     for m in self.model.get_masks().values()]
            self.model.set_masks(masks)
    ```
    """

    exclusive_group = None

    def set_model(self, model):
        require_sparse_model(model, type(self).__name__)
        names = getattr(self, "dense_layers", None)
        if names:  # before any subclass adds state to the model
            paths = [mw.path for mw in model.masked_weights]
            check_names(paths, names, "dense_layers", type(self).__name__)
        super().set_model(model)


def log_sparsity(model, logs):
    """Writes the model's overall sparsity to `logs["sparsity"]` (if `logs`).

    What the mask-rule callbacks log at each epoch end, so it reaches
    History, CSVLogger and the progress bar.

    Args:
        model: the model.
        logs: the callback's `logs` dict, or None (then nothing happens).

    Example:

    ```python
    def on_epoch_end(self, epoch, logs=None):
        log_sparsity(self.model, logs)
    ```
    """
    if logs is not None:
        logs["sparsity"] = sparsity_report(model)[-1]["sparsity"]


def require_inactive_weights(model, who):
    """Raises a ValueError if no mask of `model` has a zero.

    For the callbacks that work on an existing sparse mask (the drop-and-
    grow family and `Static`): on a model whose masks are all ones they
    would train it fully dense, which is never what was meant. Callbacks
    that start from dense (gradual pruning) do not call it.

    Args:
        model: a built `SparseModel`.
        who: the caller's name, for the message.

    Raises:
        ValueError: every prunable weight of `model` is active.

    Example:

    ```python
    require_inactive_weights(model, "RigL")
    ```
    """
    weights = model.masked_weights
    if weights and all(float(tf.reduce_min(mw.mask)) > 0 for mw in weights):
        raise ValueError(
            f"{who}: model {model.name!r} has no inactive weights (every mask is "
            "all ones), so it would train fully dense. Set a sparsity first: "
            "ks.sparsify(model, 0.9) for a Sequential or Functional model, "
            "`sparsity=` on the sparse layers of a subclassed model "
            "(ks.layers.SparseDense(64, sparsity=0.9)), or "
            "ks.pruning.random(model, 0.9) on a built SparseModel."
        )
