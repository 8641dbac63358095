"""SNIP (Lee et al. 2019): connection sensitivity `abs(g * w)` on one batch."""

import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.model import require_sparse_model
from keras_sparse.pruning import gradients, score_data
from keras_sparse.pruning.base import (check_scope, check_structure, prune_with_scores,
                                      rank_inactive_last)
from keras_sparse.utils.argument_validation import check_int, check_sparsity


def snip_scores(model, data, examples=100, loss=None):
    """SNIP scores `abs(dL/dW * W)` of every prunable weight, `{path: tensor}`.

    The gradient is taken on the first `examples` examples of `data` in one
    pass, with `training=True` (as the paper's code); BatchNorm statistics
    and RNG state are restored afterwards. At initialization the masks are all
    ones, so `W` is the effective weight `W * M` and this is the paper's
    `abs(dL/dc)` at `c = 1`. On a masked model the masked network is scored:
    inactive weights are exactly 0, so their score is 0.

    Args:
        model: a `ks.SparseModel`.
        data: a batched `tf.data.Dataset` of `(x, y)` or an `(x, y)` tuple.
        examples: number of examples in the batch (100).
        loss: a Keras loss (name or object). Default: the compiled loss
            (`model.compute_loss`) if the model is compiled, else sparse
            categorical cross-entropy from logits.

    Returns:
        `{weight path: score tensor}` for every masked weight, in model order.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`, or `data` is neither a
            batched `tf.data.Dataset` nor an `(x, y)` tuple.
        ValueError: a bad count, or `data` without examples.

    Example:

    ```python
    scores = ks.pruning.snip_scores(model, (x_train, y_train))
    ```
    """
    require_sparse_model(model, "ks.pruning.snip_scores")
    check_int(examples, "examples", minimum=1)
    x, y = score_data.first_examples(data, examples, "snip")
    loss_fn = gradients.loss_function(model, loss)
    variables = gradients.scored_variables(model)
    with gradients.state_restored(model):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            value = loss_fn(x, y, model(x, training=True))
        grads = gradients.dense_grads(tape.gradient(value, variables), model)
    return {
        mw.path: tf.abs(g * tf.convert_to_tensor(mw.weight))
        for mw, g in zip(model.masked_weights, grads)
    }


def snip(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
         dense_layers=None, custom=None, erk_power_scale=1.0, examples=100, loss=None,
         structure=None):
    """Prunes at initialization by SNIP: the smallest `abs(g * w)` go.

    Layer budgets come from `distribution` (see `ks.distributions`) unless `scope="global"`
    ranks all weights together. On a model that already has masks, inactive
    weights rank last, so they stay pruned unless the budget needs more
    active weights than there are. `seed` is unused (SNIP is deterministic
    given the data).

    Args:
        model: a `ks.SparseModel`, masks usually all ones (dense at init).
        sparsity: target fraction of zeros, in [0, 1).
        distribution: "erk" (default), "er" or "uniform".
        scope: "layer" or "global".
        data: a batched `tf.data.Dataset` of `(x, y)` or an `(x, y)` tuple;
            required.
        dense_layers, custom, erk_power_scale: as in `ks.sparsify`.
        structure: None (the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure;
            masks keep it (see `ks.structures`).
        examples: examples in the scoring batch (100, as in the paper).
        loss: see `snip_scores`.

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
    model = ks.sparsify(dense, 0.9, mask_init="snip", data=(x_train, y_train))
    ```
    """
    require_sparse_model(model, "ks.pruning.snip")
    check_structure(model, structure, "ks.pruning.snip")
    check_sparsity(sparsity)
    check_scope(scope)
    distributions.check_distribution(distribution)
    score_data.check_data(data, "ks.pruning.snip")
    check_int(examples, "examples", minimum=1)
    scores = rank_inactive_last(model, snip_scores(model, data, examples, loss))
    return prune_with_scores(model, scores, sparsity, distribution=distribution,
                             scope=scope, dense_layers=dense_layers, custom=custom,
                             erk_power_scale=erk_power_scale)
