"""The SC-SDC grid (Tessera et al. 2021): its factors and one run of a cell.

One run trains a dense network and its same-capacity sparse network
(`same_capacity`) with the same optimizer, data and budget, logging per
epoch test accuracy, EGF (p = 1, 2) and the plain gradient norms with
`ks.callbacks.EGFLogger`. `ks.analysis.sc_sdc` sweeps the grid and reports.
"""

import itertools

import keras

from keras_sparse.analysis.capacity import MATCHES, same_capacity
from keras_sparse.callbacks.egf import EGFLogger

__all__ = ["ACTIVATIONS", "FACTORS", "LEARNING_RATES", "MEASURES", "OPTIMIZERS",
           "REGULARIZERS", "SCHEDULES", "TAU_COMPARISONS", "cells", "check_tasks", "expand_grid",
           "learning_rate_schedule", "make_optimizer", "run_one", "steps_per_epoch"]

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
ACTIVATIONS = ("relu", "prelu", "swish", "selu", "tanh")
REGULARIZERS = ("none", "l2", "batchnorm", "augmentation")
MEASURES = ("egf_l1", "egf_l2", "grad_norm_l1", "grad_norm_l2")
# Defaults, overridable with `learning_rates=`: common settings for small
# MLPs/CNNs (interpretation: the paper's exact rates were not checked here).
LEARNING_RATES = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3, "rmsprop": 1e-3}
FACTORS = ("optimizer", "activation", "regularizer")
SCHEDULES = ("constant", "cosine", "step")
# The differences of Kendall's tau tested by the bootstrap: EGF p=2 against each other measure.
TAU_COMPARISONS = (("egf_l2", "grad_norm_l2"), ("egf_l2", "grad_norm_l1"), ("egf_l2", "egf_l1"))


def learning_rate_schedule(kind, learning_rate, total_steps):
    """The learning rate of a run: a float, or a Keras schedule over `total_steps`.

    Args:
        kind: "constant" (`learning_rate` throughout), "cosine" (cosine
            decay from `learning_rate` to 0 at `total_steps`,
            `keras.optimizers.schedules.CosineDecay`) or "step" (x0.1 at 50%
            and again at 75% of the steps, `PiecewiseConstantDecay`).
        learning_rate: the initial learning rate.
        total_steps: optimizer steps of the whole run (epochs x steps per
            epoch); needed unless `kind="constant"`.

    Example:

    >>> rate = learning_rate_schedule("step", 0.1, total_steps=100)
    >>> [round(float(rate(step)), 4) for step in (0, 60, 80)]
    [0.1, 0.01, 0.001]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}; got schedule={kind!r}.")
    if kind == "constant":
        return learning_rate
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"schedule={kind!r} needs the run's total steps (a positive integer); "
                         f"got total_steps={total_steps!r}.")
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    boundaries = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, [learning_rate, learning_rate * 0.1, learning_rate * 0.01])


def steps_per_epoch(data):
    """Batches per epoch of a finite `tf.data.Dataset`; a ValueError otherwise.

    Example: `steps_per_epoch(ks.data.load("cifar10", "train", batch_size=128))`.
    """
    steps = int(data.cardinality()) if hasattr(data, "cardinality") else -1
    if steps < 1:
        raise ValueError("A learning-rate schedule needs training data of known length (a "
                         "finite tf.data.Dataset, e.g. from ks.data.load); got one of unknown "
                         "or infinite length.")
    return steps


def make_optimizer(name, learning_rate):
    """The optimizer of a grid entry: "sgd", "momentum" (SGD, 0.9), "adam", "rmsprop"."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}.")


def expand_grid(grid=None):
    """Grid entries `{"optimizer", "activation", "regularizer"}`, in order, no repeats.

    Args:
        grid: None (the full product of `OPTIMIZERS`, `ACTIVATIONS` and
            `REGULARIZERS`), or a list of blocks, each a dict with any of
            the keys "optimizer", "activation", "regularizer" mapping to a
            list of choices (missing keys: all choices); the union of the
            blocks' products is taken.

    Example:

    >>> len(expand_grid([{"optimizer": ["adam"], "regularizer": ["none"]}]))
    5
    """
    blocks = [{}] if grid is None else grid
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ValueError(f"`grid` must be None or a non-empty list of dicts; got {grid!r}.")
    allowed = dict(zip(FACTORS, (OPTIMIZERS, ACTIVATIONS, REGULARIZERS)))
    entries = []
    for block in blocks:
        if not isinstance(block, dict) or set(block) - set(FACTORS):
            raise ValueError(f"Each `grid` block must be a dict with keys among {FACTORS}; "
                             f"got {block!r}.")
        choices = []
        for factor in FACTORS:
            values = list(block.get(factor, allowed[factor]))
            bad = [v for v in values if v not in allowed[factor]]
            if bad or not values:
                raise ValueError(f"`grid` {factor} choices must be a non-empty list from "
                                 f"{allowed[factor]}; got {values!r}.")
            choices.append(values)
        for combo in itertools.product(*choices):
            entry = dict(zip(FACTORS, combo))
            if entry not in entries:
                entries.append(entry)
    return entries


def _with_l2(model, coefficient):
    """A copy of `model` (same weights) with an L2 kernel regularizer on every layer that has one."""
    def clone(layer):
        config = layer.get_config()
        if "kernel_regularizer" in config:
            config["kernel_regularizer"] = keras.regularizers.L2(coefficient)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def check_tasks(tasks):
    """Raises a ValueError/TypeError naming what is wrong with `tasks` (see `sc_sdc`).

    Example: `check_tasks({"mlp": {"build": build, "data": data, "dense_width": 100,
    "sparse_widths": [200]}})`.
    """
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError("`tasks` must be a non-empty dict {name: task}; see sc_sdc's docstring.")
    for name, task in tasks.items():
        if not isinstance(task, dict):
            raise TypeError(f"`tasks[{name!r}]` must be a dict; got {type(task).__name__}.")
        missing = [k for k in ("build", "data", "dense_width", "sparse_widths") if k not in task]
        if missing:
            raise ValueError(f"`tasks[{name!r}]` lacks {missing}; needs build, data, "
                             "dense_width and sparse_widths.")
        for key in ("build", "data"):
            if not callable(task[key]):
                raise TypeError(f"`tasks[{name!r}][{key!r}]` must be callable.")
        widths = list(task["sparse_widths"])
        if not widths or any(w < task["dense_width"] for w in widths):
            raise ValueError(f"`tasks[{name!r}]['sparse_widths']` must be a non-empty list of "
                             f"widths >= dense_width={task['dense_width']}; got {widths!r}.")


def cells(tasks, grid=None):
    """The sweep's cells: tasks x grid entries x sparse widths, each a dict with a name."""
    found = []
    for task_name, task in tasks.items():
        for entry in expand_grid(grid):
            for width in task["sparse_widths"]:
                name = (f"{task_name}-{entry['optimizer']}-{entry['activation']}-"
                        f"{entry['regularizer']}-w{width}")
                found.append(dict(entry, name=name, task=task_name,
                                  dataset=task.get("dataset", task_name),
                                  dense_width=task["dense_width"], sparse_width=width))
    return found


def _train(model, optimizer, train, test, probe, epochs, egf_examples, verbose):
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    egf = EGFLogger(probe, p=(1, 2), num_examples=egf_examples)
    history = model.fit(train, validation_data=test, epochs=epochs, callbacks=[egf],
                        verbose=verbose, shuffle=False)
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return {"history": history, "final": {k: v[-1] for k, v in history.items()}}


def run_one(task, cell, seed, epochs, match="layer", learning_rates=None, l2=5e-4,
            egf_examples=1000, verbose=0, schedule="constant"):
    """Trains one dense / sparse pair of the sweep; returns its JSON-ready result.

    Args:
        task: a task dict (see `sc_sdc`).
        cell: a cell from `cells(...)`.
        seed: seeds weights, masks and data order (the same for both networks).
        epochs, match, learning_rates, l2, egf_examples, verbose, schedule:
            as in `sc_sdc`.
    """
    rates = dict(LEARNING_RATES, **(learning_rates or {}))
    regularizer = cell["regularizer"]
    keras.backend.clear_session()  # a long sweep must not accumulate graphs

    def build(width):
        model = task["build"](width, cell["activation"], regularizer == "batchnorm")
        return _with_l2(model, l2) if regularizer == "l2" else model

    dense, sparse = same_capacity(build, cell["dense_width"], cell["sparse_width"],
                                  match=match, seed=seed)
    train, test = task["data"](regularizer == "augmentation", seed)
    probe, _ = task["data"](False, seed)  # EGF set: fixed, never augmented
    result = {k: cell[k] for k in ("task", "dataset", "optimizer", "activation", "regularizer",
                                   "dense_width", "sparse_width")}
    result.update(seed=seed, epochs=epochs, match=match,
                  learning_rate=rates[cell["optimizer"]], schedule=schedule,
                  active_weights=int(sum(int(m.sum()) for m in sparse.get_masks().values())))
    total = None if schedule == "constant" else epochs * steps_per_epoch(train)
    for label, model in (("dense", dense), ("sparse", sparse)):
        rate = learning_rate_schedule(schedule, rates[cell["optimizer"]], total)
        optimizer = make_optimizer(cell["optimizer"], rate)
        result[label] = _train(model, optimizer, train, test, probe, epochs, egf_examples, verbose)
    result["gap"] = (result["sparse"]["final"]["val_accuracy"]
                     - result["dense"]["final"]["val_accuracy"])
    return result
