"""Effective Gradient Flow (Tessera et al. 2021) and plain gradient norms.

`EGF_p = mean_l norm_p(g_l * M_l) / sum(M_l)` over the prunable weights `l`,
where `g` is the gradient of the data loss averaged over a fixed evaluation
set and `M` the mask (all ones in a plain Keras model): the gradient norm
per active weight, averaged over layers, so sparse and dense networks of
different sizes compare. The plain gradient flow is `norm_1(g)` and
`norm_2(g)` over all trainable weights.
"""

import keras
import tensorflow as tf

from keras_sparse.layers.base import SparseLayer
from keras_sparse.layers.registry import flatten_layers, prunable_weights_of
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_int

__all__ = [
    "NORMS",
    "GradientFlow",
    "as_dataset",
    "check_norms",
    "data_loss",
    "effective_gradient_flow",
    "gradient_flow",
    "gradient_norms",
    "prunable_weights",
]

NORMS = (1, 2)


def check_norms(p, name="p"):
    """Returns `p` (an int or a sequence of them) as a tuple within `NORMS`."""
    values = tuple(p) if isinstance(p, (list, tuple)) else (p,)
    if not values or any(
        isinstance(v, bool) or not isinstance(v, int) or v not in NORMS for v in values
    ):
        raise ValueError(f"`{name}` must be one of {NORMS} or a tuple of them; got {name}={p!r}.")
    return tuple(dict.fromkeys(values))


def as_dataset(data, batch_size=128, num_examples=None):
    """A finite dataset of `(x, y[, sample_weight])` batches from `data`.

    Args:
        data: a `tf.data.Dataset` of batches (as for `fit`) or an `(x, y)` /
            `(x, y, sample_weight)` tuple of arrays.
        batch_size: batch size for arrays, and for a dataset when
            `num_examples` re-batches it.
        num_examples: keep only the first `num_examples` examples and cache
            them, so every pass sees the same ones (a shuffled input is
            frozen after its first pass). `None` keeps `data` as given.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if num_examples is not None:
        num_examples = check_int(num_examples, "num_examples", minimum=1)
    if isinstance(data, tf.data.Dataset):
        if num_examples is None:
            return data
        return data.unbatch().take(num_examples).batch(batch_size).cache()
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise TypeError(
            "`data` must be a tf.data.Dataset of (x, y) batches or an (x, y) or "
            f"(x, y, sample_weight) tuple of arrays; got {type(data).__name__}."
        )
    data = tuple(data)
    if num_examples is not None:
        data = tf.nest.map_structure(lambda a: a[:num_examples], data)
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)


def prunable_weights(model):
    """`(variable, mask or None)` for each weight `ks.sparsify` masks or would."""
    found = {}
    for layer in flatten_layers(model):
        if isinstance(layer, SparseLayer):
            if layer.built:
                for weight, mask in zip(layer.get_prunable_weights(), layer.get_masks()):
                    found[id(weight)] = (weight, mask)
        else:
            # A layer wrapped by SparseWrapper is visited too: keep the mask.
            for weight in prunable_weights_of(layer):
                found.setdefault(id(weight), (weight, None))
    return list(found.values())


class _FunctionLoss(keras.losses.Loss):
    """A loss function `fn(y_true, y_pred)` with Keras' reduction and weights."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _single_output_loss(loss):
    """`loss` (a name, function or Loss) as Keras would apply it to one output."""
    if isinstance(loss, str) and loss.lower() in ("crossentropy", "ce"):
        return keras_compat.compiled_loss(None, loss)  # picked from the label shapes
    loss = keras.losses.get(loss)
    return loss if isinstance(loss, keras.losses.Loss) else _FunctionLoss(loss)


def data_loss(model, loss):
    """The model's compiled loss without regularization, or `loss`.

    A private `CompileLoss` copy: the model's own one updates per-output
    loss trackers of multi-output models, which must not see these calls.
    """
    if loss is None:
        compiled = keras_compat.compiled_loss(model)
        if compiled is None:
            raise ValueError(
                "Gradient flow needs a loss: compile the model with one or pass "
                "`loss=` (e.g. loss=keras.losses.SparseCategoricalCrossentropy("
                "from_logits=True))."
            )
        return compiled
    if isinstance(loss, str):
        keras.losses.get(loss)  # unknown names fail here, not inside the trace
    elif not callable(loss):
        raise TypeError(f"`loss` must be a loss name, a callable or None; got {loss!r}.")
    if len(getattr(model, "outputs", None) or [None]) == 1:
        return _single_output_loss(loss)
    return keras_compat.compiled_loss(model, loss)


class GradientFlow:
    """Measures gradient flow of `model` over datasets, compiled once.

    The gradient is taken in inference mode (`training=False`).
    interpretation: BatchNorm then uses its moving statistics and dropout is
    off, so measuring is deterministic and changes no model state.
    Prunable weights that are not trainable are left out.

    Args:
        model: a Keras model (sparse or plain).
        loss: the data loss; default: the model's compiled loss (its
            regularization losses are never included).

    Example:

    ```python
    flow = GradientFlow(model)
    flow(ks_dataset, p=(1, 2))  # {"egf_l1": ..., "egf_l2": ..., "grad_norm_l1": ...}
    ```
    """

    def __init__(self, model, loss=None):
        self.model = model
        self._loss = data_loss(model, loss)
        trainable = {id(w) for w in model.trainable_weights}
        self._prunable = [(w, m) for w, m in prunable_weights(model) if id(w) in trainable]
        if not self._prunable:
            raise ValueError(
                f"Model {model.name!r} has no trainable weight that ks.sparsify "
                "can mask (Dense, Conv, EinsumDense, ...); EGF is undefined."
            )
        self._function = tf.function(self._measure)

    def __call__(self, dataset, p=NORMS):
        """`{"egf_l<p>": float for each p, "grad_norm_l1", "grad_norm_l2"}`."""
        norms = check_norms(p)
        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
            # Inside a strategy scope mirrored variables are read per replica:
            # every replica computes the same values, keep the first.
            strategy = tf.distribute.get_strategy()
            values = strategy.run(self._function, args=(dataset,))
            values = {k: strategy.experimental_local_results(v)[0] for k, v in values.items()}
        else:
            values = self._function(dataset)
        if float(values.pop("count")) == 0:
            raise ValueError("Gradient flow: `data` holds no examples.")
        keep = {f"egf_l{q}" for q in norms} | {"grad_norm_l1", "grad_norm_l2"}
        return {k: float(v) for k, v in values.items() if k in keep}

    def _mean_gradients(self, dataset):
        # Batch means weighted by batch size: the gradient of the full set.
        weights = self.model.trainable_weights
        sums = tuple(tf.zeros(w.shape, tf.float32) for w in weights)  # tuple: a loop var
        count = tf.constant(0.0)
        for batch in dataset:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
            with tf.GradientTape() as tape:
                y_pred = self.model(x, training=False)
                loss = self._loss(y, y_pred, sample_weight)
                loss = keras_compat.unscale_loss_for_distribution(loss)
            grads = tape.gradient(
                loss, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            size = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
            sums = tuple(s + tf.cast(g, tf.float32) * size for s, g in zip(sums, grads))
            count += size
        means = [s / tf.maximum(count, 1.0) for s in sums]
        return {id(w): g for w, g in zip(weights, means)}, count

    def _measure(self, dataset):
        grads, count = self._mean_gradients(dataset)
        masks = {}
        for weight, mask in self._prunable:
            ones = tf.ones(weight.shape, tf.float32)
            masks[id(weight)] = ones if mask is None else tf.cast(mask, tf.float32)
        # Inactive weights of a sparse model have no gradient flow.
        masked = {k: g * masks[k] if k in masks else g for k, g in grads.items()}
        terms = {1: [], 2: []}
        for weight, _ in self._prunable:
            g, active = masked[id(weight)], tf.reduce_sum(masks[id(weight)])
            terms[1].append(tf.math.divide_no_nan(tf.reduce_sum(tf.abs(g)), active))
            terms[2].append(tf.math.divide_no_nan(tf.norm(tf.reshape(g, [-1])), active))
        flat = tf.concat([tf.reshape(g, [-1]) for g in masked.values()], axis=0)
        return {
            "egf_l1": tf.reduce_mean(tf.stack(terms[1])),
            "egf_l2": tf.reduce_mean(tf.stack(terms[2])),
            "grad_norm_l1": tf.reduce_sum(tf.abs(flat)),
            "grad_norm_l2": tf.norm(flat),
            "count": count,
        }


def gradient_flow(model, data, p=NORMS, loss=None, batch_size=128):
    """EGF for each `p` and the plain gradient norms, from one gradient pass.

    Args:
        model: a Keras model, sparse (`ks.SparseModel`) or plain (M = 1).
        data: a finite `tf.data.Dataset` of `(x, y)` batches or an `(x, y)`
            tuple of arrays; the gradient is averaged over all of it.
        p: 1, 2 or a tuple of them.
        loss: the data loss; default: the model's compiled loss without
            regularization terms.
        batch_size: batch size used for arrays.

    Returns:
        `{"egf_l1": ..., "egf_l2": ..., "grad_norm_l1": ..., "grad_norm_l2": ...}`
        (EGF keys for the requested `p` only), as floats.

    Raises:
        TypeError: `data` is neither a dataset nor an `(x, y)` tuple, or a bad
            `loss`.
        ValueError: a bad `p`, no loss (model not compiled and no `loss`), no
            trainable weight `ks.sparsify` can mask, or `data` without examples.

    Example:

    ```python
    ks.diagnostics.gradient_flow(model, (x[:1000], y[:1000]))
    ```
    """
    norms = check_norms(p)
    return GradientFlow(model, loss)(as_dataset(data, batch_size), norms)


def effective_gradient_flow(model, data, p=2, loss=None, batch_size=128):
    """Effective Gradient Flow `mean_l norm_p(g_l * M_l) / sum(M_l)`.

    The norm of the data-loss gradient over the active weights of each
    prunable layer, divided by its number of active weights and averaged
    over layers (Tessera et al. 2021).

    Args:
        model: a Keras model, sparse or plain (a plain model has M = 1 on the
            weights `ks.sparsify` would mask).
        data: a finite `tf.data.Dataset` of `(x, y)` batches or an `(x, y)`
            tuple of arrays; `g` is the mean gradient over all of it.
        p: 1 or 2.
        loss: the data loss; default: the model's compiled loss without
            regularization terms.
        batch_size: batch size used for arrays.

    Returns:
        The EGF as a float.

    Raises:
        TypeError: `data` is neither a dataset nor an `(x, y)` tuple, or a bad
            `loss`.
        ValueError: a bad `p`, no loss (model not compiled and no `loss`), no
            trainable weight `ks.sparsify` can mask, or `data` without examples.

    Example:

    ```python
    egf = ks.diagnostics.effective_gradient_flow(model, (x[:1000], y[:1000]), p=2)
    ```
    """
    if isinstance(p, (list, tuple)):
        raise ValueError(f"`p` must be one of {NORMS}; got p={p!r}.")
    return gradient_flow(model, data, p, loss, batch_size)[f"egf_l{p}"]


def gradient_norms(model, data, loss=None, batch_size=128):
    """Plain gradient flow: `norm_1(g)` and `norm_2(g)` over trainable weights.

    Inactive weights of a sparse model count as zero gradient.

    Args:
        model: a Keras model.
        data: a finite `tf.data.Dataset` of `(x, y)` batches or an `(x, y)`
            tuple of arrays.
        loss: the data loss; default: the compiled loss without regularization.
        batch_size: batch size used for arrays.

    Returns:
        `{"grad_norm_l1": float, "grad_norm_l2": float}`.

    Raises:
        TypeError: `data` is neither a dataset nor an `(x, y)` tuple, or a bad
            `loss`.
        ValueError: a bad `p`, no loss (model not compiled and no `loss`), no
            trainable weight `ks.sparsify` can mask, or `data` without examples.

    Example:

    ```python
    ks.diagnostics.gradient_norms(model, test_ds.take(8))
    ```
    """
    flow = gradient_flow(model, data, NORMS, loss, batch_size)
    return {k: flow[k] for k in ("grad_norm_l1", "grad_norm_l2")}
