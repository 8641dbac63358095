"""GraSP (Wang et al. 2020): keep the gradient flow, score `-w * (H g)`."""

import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.model import require_sparse_model
from keras_sparse.pruning import gradients, score_data
from keras_sparse.pruning.base import (check_scope, check_structure, prune_with_scores,
                                      rank_inactive_last)
from keras_sparse.utils.argument_validation import check_int, check_sparsity


def _num_classes(model, num_classes):
    if num_classes is not None:
        return check_int(num_classes, "num_classes", minimum=1)
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, ValueError, TypeError, IndexError):
        raise ValueError(
            "ks.pruning.grasp: pass `num_classes` (the model has no symbolic "
            "outputs to read it from); got None."
        )


def grasp_scores(model, data, examples_per_class=10, num_classes=None,
                 temperature=200.0, loss=None, batch_size=128):
    """GraSP scores `-W * (H g)`, `{path: tensor}`; the LARGEST are removed.

    `g` is the gradient of the loss of `logits / temperature` over
    `examples_per_class` examples of each class, `H g` its Hessian-vector
    product by double backprop. Both are means over all examples, computed
    in chunks of `batch_size` (the loss is a mean, so chunking is exact up to
    BatchNorm batch statistics). `training=True`; BatchNorm statistics and RNG
    state are restored afterwards. At initialization (masks all ones) `W` is
    the effective weight; on a masked model the masked network is scored and
    inactive weights score 0.

    Args:
        model: a `ks.SparseModel` whose output is logits.
        data: a batched `tf.data.Dataset` of `(x, y)` or an `(x, y)` tuple;
            labels sparse or one-hot.
        examples_per_class: examples taken per class (10).
        num_classes: default: the model output's last dimension.
        temperature: divides the logits (200).
        loss: a Keras loss. Default: the compiled loss if the model is
            compiled, else sparse categorical cross-entropy from logits.
        batch_size: examples per forward/backward pass.

    Returns:
        `{weight path: score tensor}` for every masked weight, in model order.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`, or `data` is neither a
            batched `tf.data.Dataset` nor an `(x, y)` tuple.
        ValueError: a bad count, or `data` without examples.

    Example:

    ```python
    scores = ks.pruning.grasp_scores(model, (x_train, y_train))
    ```
    """
    require_sparse_model(model, "ks.pruning.grasp_scores")
    check_int(examples_per_class, "examples_per_class", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    classes = _num_classes(model, num_classes)
    x, y = score_data.examples_per_class(data, examples_per_class, classes, "grasp")
    loss_fn = gradients.loss_function(model, loss)
    variables = gradients.scored_variables(model)
    total = score_data.size(x)
    chunks = [(score_data.rows(x, slice(i, i + batch_size)), score_data.rows(y, slice(i, i + batch_size)))
              for i in range(0, total, batch_size)]

    def chunk_gradients(xc, yc):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            logits = tf.nest.map_structure(lambda o: o / temperature, model(xc, training=True))
            value = loss_fn(xc, yc, logits)
        return gradients.dense_grads(tape.gradient(value, variables), model)

    def mean_over_chunks(per_chunk):
        """The example-weighted mean of `per_chunk(xc, yc)` (a list of tensors)."""
        terms = [[score_data.size(xc) / total * t for t in per_chunk(xc, yc)] for xc, yc in chunks]
        return [tf.add_n(parts) for parts in zip(*terms)]

    def hessian_times_g(xc, yc):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            dot = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(chunk_gradients(xc, yc), g)])
        return gradients.dense_grads(tape.gradient(dot, variables), model)

    with gradients.state_restored(model):
        g = [tf.stop_gradient(t) for t in mean_over_chunks(chunk_gradients)]
        hg = mean_over_chunks(hessian_times_g)
    return {
        mw.path: -tf.convert_to_tensor(mw.weight) * h
        for mw, h in zip(model.masked_weights, hg)
    }


def grasp(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
          dense_layers=None, custom=None, erk_power_scale=1.0, examples_per_class=10,
          num_classes=None, temperature=200.0, loss=None, batch_size=128,
          structure=None):
    """Prunes at initialization by GraSP: the largest `-w * (H g)` go.

    Layer budgets come from `distribution` (see `ks.distributions`) unless `scope="global"`
    (the paper ranks globally). On a model that already has masks, inactive
    weights rank last, so they stay pruned unless the budget needs more
    active weights than there are. `seed` is unused.

    Args:
        model: a `ks.SparseModel` whose output is logits.
        sparsity: target fraction of zeros, in [0, 1).
        distribution: "erk" (default), "er" or "uniform".
        scope: "layer" or "global".
        data: a batched `tf.data.Dataset` of `(x, y)` or an `(x, y)` tuple;
            required.
        dense_layers, custom, erk_power_scale: as in `ks.sparsify`.
        structure: None (the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure;
            masks keep it (see `ks.structures`).
        examples_per_class, num_classes, temperature, loss, batch_size: see
            `grasp_scores`.

    Returns:
        `model`, with its masks set.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`, or `data` is neither a
            batched `tf.data.Dataset` nor an `(x, y)` tuple.
        ValueError: a bad `sparsity`, `distribution`, `scope` or count, `data`
            missing or empty, an unknown layer name, or a budget the pinned
            layers exceed; the masks are unchanged then.

    Example:

    ```python
    ks.pruning.grasp(model, 0.9, data=train_ds, scope="global")
    ```
    """
    require_sparse_model(model, "ks.pruning.grasp")
    check_structure(model, structure, "ks.pruning.grasp")
    check_sparsity(sparsity)
    check_scope(scope)
    distributions.check_distribution(distribution)
    score_data.check_data(data, "ks.pruning.grasp")
    scores = grasp_scores(model, data, examples_per_class, num_classes, temperature,
                          loss, batch_size)
    keep = {path: -score for path, score in scores.items()}
    return prune_with_scores(model, rank_inactive_last(model, keep), sparsity,
                             distribution=distribution, scope=scope,
                             dense_layers=dense_layers, custom=custom,
                             erk_power_scale=erk_power_scale)
