"""The loss, variables and model state that gradient-based pruning scores use."""

import contextlib

import keras
import tensorflow as tf

from keras_sparse.layers.registry import without_masks

__all__ = ["dense_grads", "loss_function", "scored_variables", "state_restored"]


def loss_function(model, loss):
    """`fn(x, y, y_pred) -> scalar`: `loss`, else the compiled loss, else SCCE.

    The compiled loss is `model.compute_loss` (regularization losses
    included); the default is sparse categorical cross-entropy from logits.
    """
    if loss is not None:
        loss = keras.losses.get(loss)
        return lambda x, y, y_pred: tf.reduce_mean(loss(y, y_pred))
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return lambda x, y, y_pred: model.compute_loss(x=x, y=y, y_pred=y_pred)
    default = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return lambda x, y, y_pred: default(y, y_pred)


def scored_variables(model):
    """The raw prunable variables (tf.Variables) of `model`, watched by tapes."""
    return [mw.weight.value for mw in model.masked_weights]


def dense_grads(grads, model):
    """Gradients with `None` (weights the output does not use) as zeros."""
    return [
        tf.zeros(mw.weight.shape, mw.weight.dtype) if g is None else g
        for g, mw in zip(grads, model.masked_weights)
    ]


@contextlib.contextmanager
def state_restored(model):
    """Restores non-trainable state (BatchNorm statistics, RNG seeds) on exit.

    Scores are computed with `training=True`, which moves BatchNorm moving
    statistics; masks are excluded, the caller changes them.
    """
    saved = [(v, tf.identity(v.value))
             for v in without_masks(model.non_trainable_variables, model)]
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)
