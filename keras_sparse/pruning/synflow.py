"""SynFlow (Tanaka et al. 2020): data-free, iterative synaptic flow pruning."""

import contextlib
import warnings

import keras
import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.model import require_sparse_model
from keras_sparse.layers.registry import without_masks
from keras_sparse.pruning import gradients
from keras_sparse.pruning.base import (check_scope, check_structure, prune_with_scores,
                                      rank_inactive_last)
from keras_sparse.utils.argument_validation import check_int, check_sparsity


def _ones_input(model, input_shape):
    """One all-ones example per model input."""
    if input_shape is not None:
        shapes = [tuple(input_shape)]
    else:
        try:
            shapes = [tuple(t.shape)[1:] for t in model.inputs]
        except (AttributeError, ValueError):
            shapes = None
        if not shapes:
            raise ValueError(
                "ks.pruning.synflow: `input_shape` must be given (without the "
                "batch dimension) for a model without symbolic inputs; got None."
            )
    if any(d is None for shape in shapes for d in shape):
        raise ValueError(
            f"ks.pruning.synflow: input shapes must be fully known; got {shapes}. "
            "Pass `input_shape`."
        )
    ones = [tf.ones((1,) + shape) for shape in shapes]
    return ones[0] if len(ones) == 1 else ones


@contextlib.contextmanager
def _linearized(model):
    """Every float variable but the masks replaced by its `abs`, restored after.

    As the paper's code, which takes `abs` of the whole state dict (BatchNorm
    statistics included) and puts the signs back at the end.
    """
    variables = [v for v in without_masks(model.weights, model)
                 if keras.backend.is_float_dtype(v.dtype)]
    saved = [tf.identity(v.value) for v in variables]
    for variable, value in zip(variables, saved):
        variable.assign(tf.abs(value))
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        model.apply_masks()  # weights dropped meanwhile must stay 0


def _flow_scores(model, ones):
    """`abs(W * dR/dW)` with `R = sum(model(ones))`, eval mode."""
    variables = gradients.scored_variables(model)
    with tf.GradientTape() as tape:
        tape.watch(variables)
        outputs = model(ones, training=False)
        flow = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in tf.nest.flatten(outputs)])
    grads = gradients.dense_grads(tape.gradient(flow, variables), model)
    return {
        mw.path: tf.abs(tf.convert_to_tensor(mw.weight) * tf.cast(g, mw.weight.dtype))
        for mw, g in zip(model.masked_weights, grads)
    }


def synflow_scores(model, input_shape=None):
    """One round of SynFlow scores, `{path: abs(w * dR/dw)}`; needs no data.

    Every weight is replaced by its absolute value (restored after), one
    all-ones example is fed with `training=False` (BatchNorm in eval mode)
    and `R = sum(output)`. The model should output logits: a softmax output
    sums to a constant and every score is 0.

    Args:
        model: a `ks.SparseModel`.
        input_shape: shape of one example, for models without symbolic
            inputs (default: from `model.inputs`).

    Returns:
        `{weight path: score tensor}` for every masked weight, in model order.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`.
        ValueError: the input shape is not fully known (pass `input_shape`).

    Example:

    ```python
    scores = ks.pruning.synflow_scores(model)
    ```
    """
    require_sparse_model(model, "ks.pruning.synflow_scores")
    ones = _ones_input(model, input_shape)
    with _linearized(model):
        return _flow_scores(model, ones)


def synflow(model, sparsity, distribution="erk", scope="layer", data=None, seed=0,
            dense_layers=None, custom=None, erk_power_scale=1.0, rounds=100,
            input_shape=None,
            structure=None):
    """Prunes at initialization by SynFlow, without data.

    Round `k = 1..rounds` scores the current masked network (see
    `synflow_scores`) and prunes it to density `d**(k / rounds)`, `d` the
    final density, so the last round reaches `sparsity` exactly. Layer
    budgets come from `distribution` (see `ks.distributions`) at every round unless
    `scope="global"` (the paper ranks globally). Pruned weights score 0 and
    rank last, so masks only shrink. The original weights are restored at
    the end, masked. `data` and `seed` are unused.

    With N:M weights (`ks.structures.NM`) there is no sparsity between 0
    and `1 - n/m` in whole groups, so every round prunes to it: each group
    keeps its `n` best scores of the rescored network.

    Args:
        model: a `ks.SparseModel` whose output is logits.
        sparsity: target fraction of zeros, in [0, 1).
        distribution: "erk" (default), "er" or "uniform".
        scope: "layer" or "global".
        dense_layers, custom, erk_power_scale: as in `ks.sparsify`.
        structure: None (the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure;
            masks keep it (see `ks.structures`).
        rounds: pruning rounds (100, as in the paper).
        input_shape: see `synflow_scores`.

    Returns:
        `model`, with its masks set.

    Raises:
        TypeError: `model` is not a `ks.SparseModel`.
        ValueError: a bad `sparsity`, `distribution`, `scope` or `rounds`,
            input shapes that are not fully known (pass `input_shape`), an
            unknown layer name, or a budget the pinned layers exceed.

    Example:

    ```python
    model = ks.sparsify(dense, 0.95, mask_init="synflow")
    ```
    """
    require_sparse_model(model, "ks.pruning.synflow")
    check_sparsity(sparsity)
    check_scope(scope)
    distributions.check_distribution(distribution)
    check_int(rounds, "rounds", minimum=1)
    held = check_structure(model, structure, "ks.pruning.synflow")
    ones = _ones_input(model, input_shape)
    density = 1.0 - sparsity
    # N:M has no sparsity between 0 and 1 - n/m: every round prunes to it.
    at_once = any(s.fixed_sparsity is not None for s in held)
    with _linearized(model):
        for k in range(1, rounds + 1):
            scores = _flow_scores(model, ones)
            if k == 1 and not any(bool(tf.reduce_any(s > 0)) for s in scores.values()):
                warnings.warn("SynFlow scores are all 0; does the model end in a "
                              "softmax? SynFlow needs logits.", stacklevel=2)
            target = sparsity if k == rounds or at_once else 1.0 - density ** (k / rounds)
            prune_with_scores(model, rank_inactive_last(model, scores), target,
                              distribution=distribution, scope=scope,
                              dense_layers=dense_layers, custom=custom,
                              erk_power_scale=erk_power_scale)
    return model
