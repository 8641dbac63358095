"""The SC-SDC sweep (Tessera et al. 2021): same-capacity sparse vs dense, over a grid.

Each run trains a dense network and its same-capacity sparse network
(`same_capacity`) with the same optimizer, data and budget, logging per
epoch test accuracy, EGF (p = 1, 2) and the plain gradient norms with
`ks.callbacks.EGFLogger`. The report gives Kendall's tau of every flow
measure against final test accuracy, per dataset, and the sparse-minus-dense
gap per configuration with a paired test across seeds, Holm-corrected,
a bootstrap over configurations of the differences between the taus, and
whether each network's test-accuracy curve reached a plateau.
"""

import itertools
import json
import math

import keras

from keras_sparse.analysis import stats, sweep
from keras_sparse.analysis.capacity import MATCHES, same_capacity
from keras_sparse.callbacks.egf import EGFLogger

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


def _steps_per_epoch(data):
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


def _check_tasks(tasks):
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
    total = None if schedule == "constant" else epochs * _steps_per_epoch(train)
    for label, model in (("dense", dense), ("sparse", sparse)):
        rate = learning_rate_schedule(schedule, rates[cell["optimizer"]], total)
        optimizer = make_optimizer(cell["optimizer"], rate)
        result[label] = _train(model, optimizer, train, test, probe, epochs, egf_examples, verbose)
    result["gap"] = (result["sparse"]["final"]["val_accuracy"]
                     - result["dense"]["final"]["val_accuracy"])
    return result


def sc_sdc(tasks, out_dir, seeds=(0, 1, 2), epochs=10, grid=None, match="layer",
           learning_rates=None, l2=5e-4, egf_examples=1000, plots=True, log=print, verbose=0,
           schedule="constant", bootstrap_resamples=2000):
    """Runs the SC-SDC sweep (resumable) and writes its report.

    For every task, grid entry (optimizer x activation x regularizer), sparse
    width and seed, one run trains the dense network of the task's
    `dense_width` and the same-capacity sparse network of the wider width
    (random masks, exactly as many active weights; `same_capacity`) with
    the same optimizer, learning rate, data order and number of epochs.
    Every run logs per epoch `val_accuracy` (test accuracy), `egf_l1`,
    `egf_l2`, `grad_norm_l1` and `grad_norm_l2` (on the first
    `egf_examples` training examples, unaugmented), and writes
    `out_dir/<cell>/seed_<s>/summary.json`; a rerun skips finished runs and
    each finished run prints one line with the sweep's ETA.

    Regularizers: "none"; "l2" (an `L2(l2)` kernel regularizer on every
    layer that takes one; EGF still uses the data loss only); "batchnorm"
    (the task's `build(..., batchnorm=True)`); "augmentation" (the task's
    `data(augment=True, ...)`).

    Args:
        tasks: `{name: task}`; a task is a dict with
            `build(width, activation, batchnorm) -> keras.Model` (a plain
            model family, e.g. `ks.models.mlp`), `data(augment, seed) ->
            (train, test)` (`tf.data.Dataset`s of batches), `dense_width`,
            `sparse_widths` (a list), and optionally `dataset` (the name
            Kendall's tau is grouped by; default the task name).
        out_dir: results directory.
        seeds: list of seeds (each seeds weights, masks and data order).
        epochs: training epochs of every network.
        grid: see `expand_grid` (default: the full grid).
        match: "layer" or "total", as in `same_capacity`.
        learning_rates: `{optimizer name: rate}` overriding `LEARNING_RATES`
            (the initial rate when `schedule` decays it).
        l2: coefficient of the "l2" regularizer.
        egf_examples: size of the fixed EGF set.
        plots: write `kendall.png` and `gap_heatmap.png`.
        log: called with each progress line.
        verbose: Keras `fit` verbosity.
        schedule: the learning-rate schedule of every network, one of
            `SCHEDULES` (see `learning_rate_schedule`); a decaying one
            needs training data of known length.
        bootstrap_resamples: resamples of the bootstrap of tau differences
            (see `report`).

    Returns:
        The report dict (see `report`), also written to `out_dir/report.json`
        with `kendall.csv` and `gaps.csv`.

    Example:

    ```python
    task = {"build": lambda w, act, bn: ks.models.mlp((w, w), (28, 28, 1), 10,
                                                       activation=act, batchnorm=bn),
            "data": lambda augment, seed: (
                ks.data.load("fashion_mnist", "train", augment=augment, seed=seed),
                ks.data.load("fashion_mnist", "test")),
            "dense_width": 100, "sparse_widths": [400]}
    ks.analysis.sc_sdc({"fmnist_mlp": task}, "results/scsdc", seeds=[0, 1, 2], epochs=10,
                       grid=[{"optimizer": ["adam", "sgd"], "regularizer": ["none"]}])
    ```
    """
    _check_tasks(tasks)
    if match not in MATCHES:
        raise ValueError(f"`match` must be one of {MATCHES}; got match={match!r}.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer; got epochs={epochs!r}.")
    unknown = sorted(set(learning_rates or {}) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(f"`learning_rates` keys must be among {OPTIMIZERS}; got {unknown}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}; got schedule={schedule!r}.")
    grid_cells = cells(tasks, grid)
    sweep.check_grid(grid_cells, list(seeds))

    def run_cell(cell, seed):
        return run_one(tasks[cell["task"]], cell, seed, epochs, match, learning_rates, l2,
                       egf_examples, verbose, schedule)

    sweep.run_grid(grid_cells, list(seeds), run_cell, out_dir, headline="gap", log=log)
    result = report(out_dir, [c["name"] for c in grid_cells],
                    bootstrap_resamples=bootstrap_resamples)
    if plots:
        plot_kendall(result, f"{out_dir}/kendall.png")
        plot_gaps(result, f"{out_dir}/gap_heatmap.png")
    return result


# -- report ----------------------------------------------------------------------------


def _flow(arm, measure, at):
    values = arm["history"][measure]
    return values[-1] if at == "final" else sum(values) / len(values)


def report(out_dir, cell_names=None, bootstrap_resamples=2000, seed=0):
    """Aggregates finished SC-SDC runs under `out_dir`; writes report.json and CSVs.

    Args:
        out_dir: the sweep's results directory.
        cell_names: only these cells (default: every finished run).
        bootstrap_resamples: resamples of the bootstrap of tau differences
            (0 skips it).
        seed: seeds the bootstrap.

    Returns:
        `{"kendall": [{"dataset", "measure", "at", "tau", "p_value", "n"}],
        "kendall_differences": [{"dataset", "at", "measure", "versus",
        ...}] (`stats.kendall_bootstrap` of tau(EGF p=2) - tau(other) for
        each pair in `TAU_COMPARISONS`, resampling configurations: a
        configuration's seeds and both its networks stay together),
        "gaps": [{"config", "task", "dataset", "optimizer", "activation",
        "regularizer", "sparse_width", "n", "sparse_mean", "dense_mean",
        "gap_mean", "test", "p_value", "p_holm"}], "factors": {factor:
        {level: summary of the gap}}, "regularizer_effects": [{"regularizer",
        "task", "optimizer", "activation", "sparse_width", "n", "sparse_delta",
        "dense_delta", "p_value"}] (accuracy change against "none", sparse vs
        dense, paired across seeds), "convergence": {"criterion", "dense",
        "sparse", "runs"} (`stats.plateau` of every network's per-epoch test
        accuracy: how many plateaued, and per run), "runs": number of
        runs}`.

    Kendall's tau pairs, over every trained network of a dataset (dense
    and sparse, every configuration and seed), the flow measure with the
    final test accuracy; `at="final"` uses the measure at the last epoch,
    `at="mean"` its mean over epochs. The gap is sparse minus dense final
    test accuracy; the paired test (`stats.paired_test`, "auto") runs
    across seeds, Holm-corrected across every configuration.
    """
    rows = [(name, seed, r) for name, seed, r in sweep.load_results(out_dir)
            if cell_names is None or name in cell_names]
    if not rows:
        raise ValueError(f"No finished SC-SDC runs under {out_dir!r}.")
    kendall = []
    for dataset in sorted({r["dataset"] for _, _, r in rows}):
        arms = [r[label] for _, _, r in rows if r["dataset"] == dataset
                for label in ("dense", "sparse")]
        accuracy = [a["final"]["val_accuracy"] for a in arms]
        for at in ("final", "mean"):
            for measure in MEASURES:
                values = [_flow(a, measure, at) for a in arms]
                if len(values) >= 2:
                    kendall.append(dict(dataset=dataset, measure=measure, at=at,
                                        **stats.kendall(values, accuracy)))
    differences = _kendall_differences(rows, bootstrap_resamples, seed)
    by_config = {}
    for name, seed, r in rows:
        by_config.setdefault(name, []).append(r)
    gaps = []
    for name, runs in by_config.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        sparse = [r["sparse"]["final"]["val_accuracy"] for r in runs]
        dense = [r["dense"]["final"]["val_accuracy"] for r in runs]
        row = {"config": name, **{k: runs[0][k] for k in ("task", "dataset", "optimizer",
                                                          "activation", "regularizer",
                                                          "sparse_width")},
               "n": len(runs), "sparse_mean": sum(sparse) / len(runs),
               "dense_mean": sum(dense) / len(runs),
               "gap_mean": (sum(sparse) - sum(dense)) / len(runs),
               "test": None, "p_value": math.nan}
        if len(runs) >= 2:
            test = stats.paired_test(sparse, dense)
            row.update(test=test["test"], p_value=test["p_value"])
        gaps.append(row)
    testable = [g for g in gaps if not math.isnan(g["p_value"])]
    for g, p in zip(testable, stats.holm([g["p_value"] for g in testable]) if testable else []):
        g["p_holm"] = p
    for g in gaps:
        g.setdefault("p_holm", math.nan)
    factors = {}
    for factor in FACTORS:
        levels = {}
        for _, _, r in rows:
            levels.setdefault(r[factor], []).append(r["gap"])
        factors[factor] = {level: stats.summarize(values) for level, values in levels.items()}
    result = {"runs": len(rows), "kendall": kendall, "kendall_differences": differences,
              "gaps": gaps, "factors": factors,
              "regularizer_effects": _regularizer_effects(rows),
              "convergence": _convergence(rows)}
    sweep.write_json(f"{out_dir}/report.json", result)
    _write_csv(f"{out_dir}/kendall.csv", kendall)
    _write_csv(f"{out_dir}/kendall_differences.csv", differences)
    _write_csv(f"{out_dir}/gaps.csv", gaps)
    _write_csv(f"{out_dir}/regularizer_effects.csv", result["regularizer_effects"])
    return result


def _config(run):
    return "-".join(str(run[k]) for k in ("task", "optimizer", "activation", "regularizer",
                                          "sparse_width"))


def _kendall_differences(rows, resamples, seed):
    """Bootstrap (over configurations) of tau(EGF p=2) minus tau(other measure)."""
    found = []
    if not resamples:
        return found
    for dataset in sorted({r["dataset"] for _, _, r in rows}):
        runs = [r for _, _, r in rows if r["dataset"] == dataset]
        arms = [(r[label], _config(r)) for r in runs for label in ("dense", "sparse")]
        if len({g for _, g in arms}) < 2:
            continue  # one configuration: nothing to resample
        accuracy = [a["final"]["val_accuracy"] for a, _ in arms]
        groups = [g for _, g in arms]
        for at in ("final", "mean"):
            for measure, other in TAU_COMPARISONS:
                out = stats.kendall_bootstrap([_flow(a, measure, at) for a, _ in arms],
                                              [_flow(a, other, at) for a, _ in arms],
                                              accuracy, groups, num_resamples=resamples,
                                              seed=seed)
                found.append(dict(dataset=dataset, at=at, measure=measure, versus=other, **out))
    return found


def _convergence(rows, fraction=0.2, tolerance=0.003):
    """Per network: has its per-epoch test accuracy plateaued (`stats.plateau`)?"""
    runs, met = [], {"dense": 0, "sparse": 0}
    for name, seed, r in rows:
        entry = {"config": name, "seed": seed}
        for label in ("dense", "sparse"):
            curve = r[label]["history"].get("val_accuracy", [])
            if len(curve) >= 2:
                entry[label] = stats.plateau(curve, fraction, tolerance)
                met[label] += entry[label]["converged"]
            else:
                entry[label] = {"converged": None, "window": len(curve), "change": math.nan,
                                "tolerance": tolerance, "last": curve[-1] if curve else math.nan}
        runs.append(entry)
    return {"criterion": f"test accuracy spread (max - min) < {tolerance} over the last "
                         f"{fraction:.0%} of epochs (at least 2)",
            "dense": f"{met['dense']}/{len(rows)}", "sparse": f"{met['sparse']}/{len(rows)}",
            "runs": runs}


def _regularizer_effects(rows):
    """Per regularizer and (task, optimizer, activation, width): its accuracy change.

    For every seed, `delta = acc(regularizer) - acc(none)` for the sparse
    and the dense network; the paired test compares the sparse deltas with
    the dense ones (does the regularizer matter more for sparse networks?).
    """
    index = {(r["task"], r["optimizer"], r["activation"], r["sparse_width"], r["regularizer"],
              r["seed"]): r for _, _, r in rows}
    effects = []
    for regularizer in REGULARIZERS[1:]:
        for key in sorted({k[:4] for k in index if k[4] == regularizer}):
            seeds = sorted(k[5] for k in index if k[:4] == key and k[4] == regularizer
                           and key + ("none", k[5]) in index)
            if not seeds:
                continue
            delta = {label: [index[key + (regularizer, s)][label]["final"]["val_accuracy"]
                             - index[key + ("none", s)][label]["final"]["val_accuracy"]
                             for s in seeds] for label in ("sparse", "dense")}
            row = dict(regularizer=regularizer,
                       **dict(zip(("task", "optimizer", "activation", "sparse_width"), key)),
                       n=len(seeds), sparse_delta=sum(delta["sparse"]) / len(seeds),
                       dense_delta=sum(delta["dense"]) / len(seeds), p_value=math.nan)
            if len(seeds) >= 2:
                row["p_value"] = stats.paired_test(delta["sparse"], delta["dense"])["p_value"]
            effects.append(row)
    return effects


def _write_csv(path, rows):
    import csv

    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                             for k, v in row.items()})


# -- plots -------------------------------------------------------------------------------


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: plots only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_kendall(result, path):
    """Bar chart: Kendall's tau of each flow measure vs final test accuracy, per dataset."""
    rows = [k for k in result["kendall"] if k["at"] == "final"]
    datasets = sorted({k["dataset"] for k in rows})
    figure = _figure(3.5 + 2.5 * len(datasets), 4)
    ax = figure.subplots()
    width = 0.8 / len(MEASURES)
    for j, measure in enumerate(MEASURES):
        taus = [next((k["tau"] for k in rows if k["dataset"] == d and k["measure"] == measure),
                     math.nan) for d in datasets]
        bars = ax.bar([i + (j - (len(MEASURES) - 1) / 2) * width for i in range(len(datasets))],
                      taus, width, label=measure)
        for bar, d in zip(bars, datasets):
            p = next((k["p_value"] for k in rows if k["dataset"] == d and k["measure"] == measure),
                     math.nan)
            if p < 0.05:
                ax.annotate("*", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom" if bar.get_height() >= 0 else "top")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set(ylabel="Kendall tau vs final test accuracy",
           title="Flow measure vs final test accuracy\n(* p < 0.05)")
    ax.legend()
    figure.savefig(path)


def plot_gaps(result, path):
    """Heat map of the mean sparse-minus-dense gap (percentage points) over the grid.

    One panel per dataset and sparse width; rows optimizer/regularizer,
    columns activation; `*` marks Holm-adjusted p < 0.05.
    """
    gaps = result["gaps"]
    panels = sorted({(g["dataset"], g["sparse_width"]) for g in gaps})
    rows = [(o, r) for o in OPTIMIZERS for r in REGULARIZERS
            if any(g["optimizer"] == o and g["regularizer"] == r for g in gaps)]
    cols = [a for a in ACTIVATIONS if any(g["activation"] == a for g in gaps)]
    figure = _figure(1.5 + 1.1 * len(cols) * len(panels), 1.5 + 0.4 * len(rows))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    limit = max([abs(g["gap_mean"]) * 100 for g in gaps] + [1e-6])
    for ax, (dataset, width) in zip(axes, panels):
        grid = [[math.nan] * len(cols) for _ in rows]
        for g in gaps:
            if (g["dataset"], g["sparse_width"]) == (dataset, width):
                i, j = rows.index((g["optimizer"], g["regularizer"])), cols.index(g["activation"])
                grid[i][j] = g["gap_mean"] * 100
                mark = "*" if g["p_holm"] < 0.05 else ""
                ax.text(j, i, f"{grid[i][j]:+.1f}{mark}", ha="center", va="center", fontsize=7)
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), [f"{o}/{r}" for o, r in rows])
        ax.set_title(f"{dataset}, sparse width {width}")
    figure.colorbar(image, ax=list(axes), label="sparse - dense test accuracy (pp)")
    figure.savefig(path)
