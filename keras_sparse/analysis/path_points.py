"""Evaluating a model at arbitrary weights: the points of loss-landscape paths.

A point is a full set of weights, evaluated with the model's own forward
pass through `stateless_call`, so the model's variables are never changed.
Sparse layers are read unmasked (`raw_reads`): a sparse solution is exactly
0 at its inactive weights, and a path through the dense space must not be
cut back to the mask.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_sparse.diagnostics.gradient_flow import as_dataset, data_loss
from keras_sparse.layers.raw_reads import raw_reads
from keras_sparse.layers.registry import flatten_layers, masked_weights

__all__ = ["PathEvaluator", "correct", "datasets", "evaluator"]


class PathEvaluator:
    """Evaluates `model` at arbitrary weights without touching its variables.

    Weights are lists aligned with `model.get_weights()`.
    """

    def __init__(self, model, who, loss=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"{who}: `model` must be a keras.Model; got {type(model).__name__}.")
        if not model.built or not model.weights:
            raise ValueError(f"{who}: `model` must be built (have weights).")
        self.model, self.who = model, who
        self.weights = list(model.weights)
        position = {id(v): i for i, v in enumerate(self.weights)}
        self.trainable = [position.get(id(v)) for v in model.trainable_variables]
        self.non_trainable = [position.get(id(v)) for v in model.non_trainable_variables]
        self.is_trainable = [False] * len(self.weights)
        for i in self.trainable:
            if i is not None:
                self.is_trainable[i] = True
        # BatchNormalization statistics, recomputed at every point:
        # (moving_mean index, moving_variance index, momentum) per layer.
        self.bn_layers = []
        for layer in flatten_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.built:
                self.bn_layers.append((position[id(layer.moving_mean)],
                                       position[id(layer.moving_variance)], float(layer.momentum)))
        self.bn = {i for m, v, _ in self.bn_layers for i in (m, v)}
        self.loss = data_loss(model, loss)
        self._eval = tf.function(self._eval_batch)
        self._stats = tf.function(self._stats_batch)

    # -- checks -------------------------------------------------------------

    def check_weights(self, values, name):
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{self.who}: `{name}` must be a list of arrays as given by "
                            f"model.get_weights(); got {type(values).__name__}.")
        if len(values) != len(self.weights):
            raise ValueError(f"{self.who}: `{name}` has {len(values)} arrays; the model has "
                             f"{len(self.weights)} weights (use model.get_weights()).")
        arrays = [np.asarray(v) for v in values]
        for v, a in zip(self.weights, arrays):
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(f"{self.who}: `{name}` has shape {tuple(a.shape)} for weight "
                                 f"{v.path!r}; the model's is {tuple(v.shape)}.")
        return arrays

    def check_pair(self, start, end):
        start = self.check_weights(start, "start")
        end = self.check_weights(end, "end")
        return start, end

    # -- evaluation ---------------------------------------------------------

    def _split(self, values):
        """Trainable and non-trainable value lists for `stateless_call`."""
        def pick(indices, variables):
            return [tf.convert_to_tensor(values[i], v.dtype) if i is not None else v.value
                    for i, v in zip(indices, variables)]
        return (pick(self.trainable, self.model.trainable_variables),
                pick(self.non_trainable, self.model.non_trainable_variables))

    def _forward(self, trainable, non_trainable, x, training):
        # The raw weights, as the train step reads them: a point of a path
        # in the dense space is evaluated unmasked.
        with raw_reads(masked_weights(self.model)):
            return self.model.stateless_call(trainable, non_trainable, x, training=training)

    def _stats_batch(self, trainable, non_trainable, x):
        _, updated = self._forward(trainable, non_trainable, x, True)
        return updated

    def _eval_batch(self, trainable, non_trainable, x, y, sample_weight):
        y_pred, _ = self._forward(trainable, non_trainable, x, False)
        size = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        loss = tf.cast(self.loss(y, y_pred, sample_weight), tf.float32) * size
        return loss, correct(y, y_pred), size

    def recompute_bn(self, values, bn_data):
        """`values` with BatchNorm statistics recomputed on `bn_data`.

        Each batch runs in training mode (as when training); the mean is the
        size-weighted mean of the batch means and the variance follows from
        the law of total variance, so a layer whose input does not depend on
        earlier BatchNorm layers gets the exact statistics of all of
        `bn_data` (every layer does when `bn_data` is one batch).
        """
        if not self.bn_layers:
            return values
        values = list(values)
        for i in self.bn:  # from 0, the update is (1 - momentum) * batch statistic
            values[i] = np.zeros_like(values[i])
        trainable, non_trainable = self._split(values)
        where = {i: j for j, i in enumerate(self.non_trainable) if i is not None}
        first = {m: 0.0 for m, _, _ in self.bn_layers}
        second = {m: 0.0 for m, _, _ in self.bn_layers}
        count = 0.0
        for batch in bn_data:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
            size = float(tf.shape(tf.nest.flatten(x)[0])[0])
            updated = self._stats(trainable, non_trainable, x)
            for m, v, momentum in self.bn_layers:
                mean = updated[where[m]].numpy().astype(np.float64) / (1.0 - momentum)
                var = updated[where[v]].numpy().astype(np.float64) / (1.0 - momentum)
                first[m] = first[m] + size * mean
                second[m] = second[m] + size * (var + mean ** 2)
            count += size
        if count == 0:
            raise ValueError(f"{self.who}: `bn_data` holds no examples.")
        for m, v, _ in self.bn_layers:
            mean = first[m] / count
            values[m] = mean.astype(values[m].dtype)
            values[v] = np.maximum(second[m] / count - mean ** 2, 0.0).astype(values[v].dtype)
        return values

    def evaluate(self, values, data, bn_data):
        """`(loss, accuracy)` of the weights `values` on `data` (floats)."""
        values = self.recompute_bn(values, bn_data)
        trainable, non_trainable = self._split(values)
        total = correct = count = 0.0
        for batch in data:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
            loss, right, size = self._eval(trainable, non_trainable, x, y, sample_weight)
            total += float(loss)
            correct += float(right)
            count += float(size)
        if count == 0:
            raise ValueError(f"{self.who}: `data` holds no examples.")
        return total / count, correct / count


_EVALUATORS = weakref.WeakKeyDictionary()  # model -> {loss key: PathEvaluator}


def evaluator(model, who, loss):
    """A `PathEvaluator` for `model`, reused across calls (its functions stay traced).

    Example: `evaluator(model, "ks.analysis.linear_path", None)`.
    """
    if not isinstance(model, keras.Model):
        return PathEvaluator(model, who, loss)
    key = (id(loss) if loss is not None else id(getattr(model, "loss", None)),
           tuple(id(v) for v in model.weights))
    cached = _EVALUATORS.setdefault(model, {})
    if key not in cached:
        cached.clear()  # a recompiled or changed model: start again
        cached[key] = PathEvaluator(model, who, loss)
    path = cached[key]
    path.who = who
    return path


def correct(y, y_pred):
    """Number of correct top-1 predictions (integer or one-hot labels).

    Example: `correct(tf.constant([1]), tf.constant([[0.1, 0.9]]))` is 1.0.
    """
    y_pred = tf.nest.flatten(y_pred)[0]
    y = tf.nest.flatten(y)[0]
    predicted = tf.argmax(y_pred, axis=-1)
    if y.shape.rank == y_pred.shape.rank and y_pred.shape[-1] != 1:
        labels = tf.argmax(y, axis=-1)
    elif y_pred.shape[-1] == 1:  # one logit: binary
        predicted = tf.cast(tf.reshape(y_pred, [-1]) > 0, tf.int64)
        labels = tf.cast(tf.reshape(y, [-1]), tf.int64)
    else:
        labels = tf.cast(tf.reshape(y, [-1]), tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(tf.reshape(predicted, [-1]), labels), tf.float32))


def datasets(data, bn_data, who, batch_size=256):
    """`(data, bn_data)` as batched datasets (`bn_data` defaults to `data`).

    Example: `datasets((x, y), None, "ks.analysis.linear_path")`.
    """
    try:
        data = as_dataset(data, batch_size)
        bn_data = data if bn_data is None else as_dataset(bn_data, batch_size)
    except TypeError as error:
        raise TypeError(f"{who}: {error}") from None
    return data, bn_data
