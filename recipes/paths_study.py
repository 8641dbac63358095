"""The loss-path study (Evci et al. 2019): solutions, linear and Bezier paths, report.

```python
from recipes import analysis_studies, paths_study
config, seeds = analysis_studies.resolve("evci_paths", "cpu")
paths_study.run(config, seeds, "results/evci_paths")
paths_study.report(config, "results/evci_paths")         # aggregate only
```

Every (part, seed) runs through `recipes.executor` into
`<out>/<part>/seed_<s>/summary.json`; the report writes `report.json` and
one `paths_<part>.png` per part.
"""

from pathlib import Path

from keras_sparse.analysis import stats, sweep
from recipes import executor
from recipes.analysis_models import part_model


def part_names(config):
    """The part names of a resolved path preset (what `--cells` selects)."""
    return [part["name"] for part in config["parts"]]


def datasets(config, parts=None):
    """The datasets the (selected) parts read."""
    return sorted({p["dataset"] for p in config["parts"] if parts is None or p["name"] in parts})


def _optimizer(spec, total_steps=None):
    """A factory of fresh optimizers from `{"name", "learning_rate"[, "schedule"]}`."""
    from keras_sparse.analysis.scsdc import learning_rate_schedule, make_optimizer

    kind = spec.get("schedule", "constant")
    return lambda: make_optimizer(spec["name"], learning_rate_schedule(
        kind, spec["learning_rate"], total_steps))




def _curve_runs(config, pair):
    for curve in config["curves"]:
        if "pairs" not in curve or list(pair) in [list(p) for p in curve["pairs"]]:
            yield curve, f"bezier_{curve['subspace']}_{curve['order']}"


def run_cell(config, part, seed, data_dir=None):
    """Solutions and paths of one part and seed; the JSON-ready result.

    Args:
        config: a resolved preset (`analysis_studies.resolve(...)[0]`).
        part: one of its parts.
        seed: seeds weights, masks and data order.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
    """
    import keras
    import numpy as np

    import keras_sparse as ks

    keras.backend.clear_session()
    info = ks.data.info(part["dataset"], data_dir=data_dir)
    load = dict(name=part["dataset"], batch_size=part["batch_size"], seed=seed,
                data_dir=data_dir)
    train = ks.data.load(split="train", shuffle=True, subset=part["subset"], **load)
    test = ks.data.load(split="test", shuffle=False, subset=part["eval_subset"], **load)
    # Paths are measured on a fixed, unaugmented subset of the training set.
    probe = ks.data.load(split="train", shuffle=False, augment=False,
                         subset=part["path_subset"], **load).cache()
    bn_data = ks.data.load(split="train", shuffle=False, augment=False,
                           subset=part["bn_subset"], **dict(load, batch_size=part["bn_subset"]))
    total_steps = int(train.cardinality()) * part["epochs"]
    sol = ks.analysis.evci_solutions(
        part_model(part, info), train, part["sparsity"], part["epochs"],
        optimizer=_optimizer(part["optimizer"], total_steps), test_data=test, seed=seed,
        distribution=part["distribution"], curves=part.get("curves", False))
    model, weights = sol["model"], sol["weights"]
    alphas = [float(a) for a in np.round(np.linspace(-0.2, 1.2, part["alphas"]), 10)]
    result = {"part": part["name"], "seed": seed, "sparsity": part["sparsity"],
              "active": ks.sparsity_report(model)[-1]["active"], "metrics": sol["metrics"],
              "paths": {}}
    for a, b in config["pairs"]:
        entry = {}
        points = ks.analysis.linear_path(model, weights[a], weights[b], probe, alphas=alphas,
                                         bn_data=bn_data)
        inside = [p["loss"] for p in points if 0 <= p["alpha"] <= 1]
        rises = [max(0.0, v - u) for u, v in zip(inside, inside[1:])]
        entry["linear"] = {"points": points, "barrier": ks.analysis.barrier(points),
                           "monotonic": all(r == 0 for r in rises), "max_rise": max(rises)}
        for curve, key in _curve_runs(config, (a, b)):
            out = ks.analysis.bezier_path(
                model, weights[a], weights[b], train, order=curve["order"],
                subspace=curve["subspace"],
                mask=sol["mask"] if curve["subspace"] == "sparse" else None,
                epochs=part["curve_epochs"],
                optimizer=keras.optimizers.Adam(part["curve_learning_rate"]),
                eval_data=probe, bn_data=bn_data, num_points=part["curve_points"], seed=seed,
                checkpoints=part.get("curve_checkpoints"))
            entry[key] = {"points": out["points"], "barrier": out["barrier"]}
            if "checkpoints" in out:
                entry[key]["checkpoints"] = [{"epoch": c["epoch"], "barrier": c["barrier"],
                                              "points": c["points"]}
                                             for c in out["checkpoints"]]
        result["paths"][f"{a}->{b}"] = entry
    return result


def run(config, seeds, out, log=print, parts=None, data_dir=None, commit=None):
    """Runs (or resumes) a path preset, then reports it.

    Args:
        config: a resolved preset (`analysis_studies.resolve(...)[0]`).
        seeds: list of seeds.
        out: the study's output directory.
        log: called with each progress line.
        parts: names of the parts to run (default all).
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        commit: a directory to git-commit after every finished run, or None.

    Returns:
        The report (see `report`), over every finished part.
    """
    chosen = {p["name"]: p for p in config["parts"] if parts is None or p["name"] in parts}
    executor.execute([{"name": name} for name in chosen], seeds,
                     lambda cell, seed: run_cell(config, chosen[cell["name"]], seed, data_dir),
                     executor.grid_dirs(out), headline="metrics.P.test_accuracy", log=log,
                     commit=commit)
    return report(config, out)


def report(config, out):
    """Aggregates path runs: barriers over seeds, E1-E4 numbers; writes report.json + PNGs.

    Args:
        config: a resolved preset.
        out: the study's output directory.
    """
    rows = sweep.load_results(out)
    parts = [p["name"] for p in config["parts"]]
    found = {}
    for part in parts:
        runs = [r for name, _, r in rows if name == part]
        if not runs:
            continue
        runs.sort(key=lambda r: r["seed"])
        entry = {"seeds": [r["seed"] for r in runs], "accuracy": {}, "barriers": {},
                 "tests": {}}
        for name in ("I", "P", "S", "L", "S2"):
            entry["accuracy"][name] = stats.summarize(
                [r["metrics"][name]["test_accuracy"] for r in runs])
        for pair, paths in runs[0]["paths"].items():
            entry["barriers"][pair] = {
                kind: stats.summarize([r["paths"][pair][kind]["barrier"] for r in runs])
                for kind in paths}
        entry["barrier_checkpoints"] = _checkpoint_barriers(runs)
        entry["convergence"] = _solution_convergence(runs)
        entry["E1_monotonic"] = [r["paths"]["I->P"]["linear"]["monotonic"] for r in runs]
        entry["E1_max_rise"] = [r["paths"]["I->P"]["linear"]["max_rise"] for r in runs]
        if len(runs) >= 2:
            for name in ("S", "L"):
                entry["tests"][f"{name} vs P accuracy"] = stats.paired_test(
                    [r["metrics"][name]["test_accuracy"] for r in runs],
                    [r["metrics"]["P"]["test_accuracy"] for r in runs])
            for pair in ("S->P", "S->S2", "L->P"):
                kinds = runs[0]["paths"].get(pair, {})
                if "bezier_dense_2" in kinds:
                    entry["tests"][f"{pair} dense Bezier vs linear barrier"] = stats.paired_test(
                        [r["paths"][pair]["bezier_dense_2"]["barrier"] for r in runs],
                        [r["paths"][pair]["linear"]["barrier"] for r in runs])
                if "bezier_dense_2" in kinds and "bezier_sparse_2" in kinds:
                    entry["tests"][f"{pair} dense vs sparse Bezier barrier"] = stats.paired_test(
                        [r["paths"][pair]["bezier_dense_2"]["barrier"] for r in runs],
                        [r["paths"][pair]["bezier_sparse_2"]["barrier"] for r in runs])
            for pair, kinds in runs[0]["paths"].items():  # E2: does longer curve training help?
                for kind, path in kinds.items():
                    epochs = [c["epoch"] for c in path.get("checkpoints", [])]
                    if len(epochs) >= 2:
                        first, last = epochs[0], epochs[-1]
                        entry["tests"][f"{pair} {kind} barrier, {last} vs {first} curve "
                                       "epochs"] = stats.paired_test(
                            [_barrier_at(r, pair, kind, last) for r in runs],
                            [_barrier_at(r, pair, kind, first) for r in runs])
        found[part] = entry
        plot_paths(runs, Path(out) / f"paths_{part}.png", f"{part} (mean of {len(runs)} seeds)")
    sweep.write_json(Path(out) / "report.json", found)
    return found


def _barrier_at(run, pair, kind, epoch):
    return next(c["barrier"] for c in run["paths"][pair][kind]["checkpoints"]
                if c["epoch"] == epoch)


def _checkpoint_barriers(runs):
    """`{pair: {curve: {epoch: summary over seeds}}}` for curves measured at checkpoints."""
    found = {}
    for pair, kinds in runs[0]["paths"].items():
        for kind, path in kinds.items():
            for c in path.get("checkpoints", []):
                found.setdefault(pair, {}).setdefault(kind, {})[str(c["epoch"])] = \
                    stats.summarize([_barrier_at(r, pair, kind, c["epoch"]) for r in runs])
    return found


def _solution_convergence(runs, fraction=0.2, tolerance=0.003):
    """Per solution: did its per-epoch test accuracy plateau (`stats.plateau`), per seed?"""
    found = {}
    for name in ("P", "S", "L", "S2"):
        curves = [r["metrics"][name].get("test_accuracy_curve") for r in runs]
        if any(c is None or len(c) < 2 for c in curves):
            continue
        checks = [stats.plateau(c, fraction, tolerance) for c in curves]
        found[name] = {"met": f"{sum(c['converged'] for c in checks)}/{len(checks)}",
                       "per_seed": [dict(c, seed=r["seed"]) for c, r in zip(checks, runs)]}
    if found:
        found["criterion"] = (f"test accuracy spread (max - min) < {tolerance} over the last "
                              f"{fraction:.0%} of epochs (at least 2)")
    return found


def plot_paths(runs, path, title):
    """Train loss along the linear and Bezier paths of each pair, mean over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pairs = list(runs[0]["paths"])
    figure = Figure(figsize=(4.5 * len(pairs), 4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    axes = figure.subplots(1, len(pairs), squeeze=False)[0]
    for ax, pair in zip(axes, pairs):
        for kind in runs[0]["paths"][pair]:
            key = "alpha" if kind == "linear" else "t"
            xs = [p[key] for p in runs[0]["paths"][pair][kind]["points"]]
            losses = [[p["loss"] for p in r["paths"][pair][kind]["points"]] for r in runs]
            mean = [sum(v) / len(v) for v in zip(*losses)]
            ax.plot(xs, mean, marker=".", label=kind.replace("bezier_", "Bezier ").replace("_", " "))
        ax.set(xlabel="alpha (linear) / t (Bezier)", ylabel="train loss", title=pair.replace("S2", "S'"),
               yscale="log")
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.axvline(1, color="grey", linewidth=0.5)
        ax.legend(fontsize=7)
    figure.savefig(path)


