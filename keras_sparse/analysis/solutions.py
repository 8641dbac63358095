"""The solutions compared by Evci et al. (2019): I, P, S, L (and a second S)."""

import math

import keras
import tensorflow as tf

from keras_sparse.callbacks.gradual import GradualMagnitudePruning
from keras_sparse.conversion import sparsify
from keras_sparse.utils.argument_validation import check_sparsity
from keras_sparse.pruning.lottery import lottery_reset
from keras_sparse.schedules import PolynomialDecay

SOLUTIONS = ("I", "P", "S", "L", "S2")


def _fresh_optimizer(optimizer, who):
    """A new optimizer for every training run (slots must not be shared)."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer.__class__.from_config(optimizer.get_config())
    if callable(optimizer):
        made = optimizer()
        if not isinstance(made, keras.optimizers.Optimizer):
            raise TypeError(f"{who}: `optimizer()` must return a Keras optimizer; got {made!r}.")
        return made
    try:
        return keras.optimizers.get(optimizer)
    except ValueError as error:
        raise ValueError(f"{who}: `optimizer` must be a Keras optimizer, its name or config, or "
                         f"a callable returning one; got optimizer={optimizer!r}.") from error


def _steps_per_epoch(data, batch_size):
    if isinstance(data, tf.data.Dataset):
        steps = int(data.cardinality())
        if steps < 1:
            raise ValueError("evci_solutions: `data` must be a finite dataset of known length "
                             "(e.g. from ks.data.load, or call .take(n) / .cache()).")
        return steps
    return math.ceil(len(data[0]) / batch_size)


def evci_solutions(build, data, sparsity, epochs, optimizer="sgd", test_data=None, seed=0,
                   distribution="uniform", prune_end=0.75, frequency=None, loss=None,
                   batch_size=128, verbose=0, curves=False):
    """Trains the solutions of "The Difficulty of Training Sparse Neural Networks".

    All runs share `epochs`, `optimizer` (a fresh instance each) and `data`:

    - **P**: `build()` with every weight active, pruned during training by
      gradual magnitude pruning (`ks.callbacks.GradualMagnitudePruning`,
      cubic `PolynomialDecay` from 0 to `sparsity` between step 0 and
      `prune_end` of training); its final mask is **M**.
    - **S**: a fresh random initialization (seed `seed + 1`) with mask M,
      trained; **I** is its starting point (interpretation: "the
      initialization" of the paper is the sparse start that fails to reach
      P, i.e. M applied to a fresh init).
    - **L**: the lottery reset, M applied to P's own initial weights
      (`ks.pruning.lottery_reset`), trained.
    - **S2**: a second S from another initialization (seed `seed + 2`), for
      the S -> S' pair.

    Args:
        build: `build() -> keras.Model`, a plain Sequential/Functional model
            (called once per solution, after `keras.utils.set_random_seed`).
        data: training data: a finite `tf.data.Dataset` of `(x, y)` batches
            or an `(x, y)` tuple of arrays (shuffled by `fit`).
        sparsity: final sparsity of P (and so of every solution), in [0, 1).
        epochs: training epochs of every run.
        optimizer: a Keras optimizer (copied from its config for each run),
            its name or config, or a callable returning a new one.
        test_data: optional data to report `test_loss`/`test_accuracy` on.
        seed: seeds P's initialization (and, offset, S and S2).
        distribution: per-layer split of the pruned sparsity ("uniform",
            as tfmot, "erk" or "er").
        prune_end: fraction of training by which P reaches `sparsity`.
        frequency: pruning every this many steps (default: about 20 mask
            updates over the pruning phase).
        loss: the loss; default sparse categorical cross-entropy on logits.
        batch_size: batch size for arrays.
        verbose: Keras `fit` verbosity.
        curves: also record every trained solution's learning curve: test
            loss and accuracy after each epoch (needs `test_data`).

    Returns:
        A dict: `"model"` (a `ks.SparseModel` of the family with mask M,
        holding P's weights: the template for `linear_path`/`bezier_path`),
        `"mask"` (M as `{path: array}`), `"weights"` (`{"I", "P", "S", "L",
        "S2"}`, each a list as from `model.get_weights()`), and `"metrics"`
        (`{name: {"loss", "accuracy"[, "test_loss", "test_accuracy"]}}`,
        measured on `data`/`test_data` with the model's own evaluate; with
        `curves=True`, P, S, L and S2 also get `"test_accuracy_curve"` and
        `"test_loss_curve"`, one value per epoch).

    Example:

    ```python
    build = lambda: ks.applications.mlp((300, 100), input_shape=(28, 28, 1), num_classes=10)
    sol = ks.analysis.evci_solutions(build, train_ds, 0.98, epochs=5,
                                     optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9))
    ks.analysis.linear_path(sol["model"], sol["weights"]["I"], sol["weights"]["P"], probe)
    ```
    """
    who = "evci_solutions"
    if not callable(build):
        raise TypeError(f"{who}: `build` must be callable as build(); got {build!r}.")
    sparsity = check_sparsity(sparsity)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{who}: `epochs` must be a positive integer; got epochs={epochs!r}.")
    if not 0.0 < prune_end <= 1.0:
        raise ValueError(f"{who}: `prune_end` must be in (0, 1]; got prune_end={prune_end!r}.")
    if curves and test_data is None:
        raise ValueError(f"{who}: `curves=True` records test accuracy per epoch and needs "
                         "`test_data`; got test_data=None.")
    _fresh_optimizer(optimizer, who)  # fails early on a bad spec
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    steps = _steps_per_epoch(data, batch_size) * epochs
    end_step = max(1, int(round(prune_end * steps)))
    frequency = frequency or max(1, end_step // 20)
    end_step = max(frequency, end_step - end_step % frequency)  # the last update hits the target

    def model_from(init_seed):
        keras.utils.set_random_seed(init_seed)
        plain = build()
        if not isinstance(plain, keras.Model):
            raise TypeError(f"{who}: `build()` must return a keras.Model; got {type(plain).__name__}.")
        model = sparsify(plain, 0.0, distribution="uniform", seed=init_seed)
        model.compile(optimizer=_fresh_optimizer(optimizer, who), loss=loss, metrics=["accuracy"])
        return model

    def fit(model, callbacks=()):
        extra = {}
        if curves:
            extra["validation_data"] = test_data if isinstance(test_data, tf.data.Dataset) \
                else tuple(test_data)
        if isinstance(data, tf.data.Dataset):
            history = model.fit(data, epochs=epochs, callbacks=list(callbacks), verbose=verbose,
                                shuffle=False, **extra)  # a dataset shuffles itself
        else:
            history = model.fit(*data, batch_size=batch_size, epochs=epochs, shuffle=True,
                                callbacks=list(callbacks), verbose=verbose, **extra)
        if not curves:
            return {}
        return {f"test_{k}_curve": [float(v) for v in history.history[f"val_{k}"]]
                for k in ("accuracy", "loss")}

    def measure(model):
        def evaluate(d):
            if isinstance(d, tf.data.Dataset):
                return model.evaluate(d, verbose=0, return_dict=True)
            return model.evaluate(*d, batch_size=batch_size, verbose=0, return_dict=True)
        row = {k: float(v) for k, v in evaluate(data).items() if k in ("loss", "accuracy")}
        if test_data is not None:
            row.update({f"test_{k}": float(v) for k, v in evaluate(test_data).items()
                        if k in ("loss", "accuracy")})
        return row

    weights, metrics = {}, {}
    pruned = model_from(seed)
    initial = pruned.get_weights()
    schedule = PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step, frequency=frequency)
    curve = fit(pruned, [GradualMagnitudePruning(schedule, distribution=distribution)])
    mask = pruned.get_masks()
    weights["P"], metrics["P"] = pruned.get_weights(), dict(measure(pruned), **curve)

    for name, offset in (("S", 1), ("S2", 2)):
        scratch = model_from(seed + offset)
        scratch.set_masks(list(mask.values()))  # by position: layer names differ per build
        if name == "S":
            weights["I"], metrics["I"] = scratch.get_weights(), measure(scratch)
        curve = fit(scratch)
        weights[name], metrics[name] = scratch.get_weights(), dict(measure(scratch), **curve)

    lottery = model_from(seed)
    lottery.set_masks(list(mask.values()))
    lottery_reset(lottery, initial)
    curve = fit(lottery)
    weights["L"], metrics["L"] = lottery.get_weights(), dict(measure(lottery), **curve)

    pruned.set_weights(weights["P"])
    return {"model": pruned, "mask": mask, "weights": {k: weights[k] for k in SOLUTIONS},
            "metrics": {k: metrics[k] for k in SOLUTIONS}}
