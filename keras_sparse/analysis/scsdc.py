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

import json
import math

from keras_sparse.analysis import stats, sweep
from keras_sparse.analysis.capacity import MATCHES
from keras_sparse.analysis.scsdc_grid import (  # noqa: F401 (the grid's names, here too)
    ACTIVATIONS,
    FACTORS,
    LEARNING_RATES,
    MEASURES,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
    TAU_COMPARISONS,
    cells,
    check_tasks,
    expand_grid,
    learning_rate_schedule,
    make_optimizer,
    run_one,
)

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
            model family, e.g. `ks.applications.mlp`), `data(augment, seed) ->
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
    task = {"build": lambda w, act, bn: ks.applications.mlp((w, w), (28, 28, 1), 10,
                                                       activation=act, batchnorm=bn),
            "data": lambda augment, seed: (
                ks.data.load("fashion_mnist", "train", augment=augment, seed=seed),
                ks.data.load("fashion_mnist", "test")),
            "dense_width": 100, "sparse_widths": [400]}
    ks.analysis.sc_sdc({"fmnist_mlp": task}, "results/scsdc", seeds=[0, 1, 2], epochs=10,
                       grid=[{"optimizer": ["adam", "sgd"], "regularizer": ["none"]}])
    ```
    """
    check_tasks(tasks)
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
