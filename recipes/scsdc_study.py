"""The SC-SDC study (Tessera et al. 2021): its tasks, learning-rate sweep, runs and report.

```python
from recipes import analysis_studies, scsdc_study
config, seeds = analysis_studies.resolve("tessera_scsdc", "cpu")
scsdc_study.run(config, seeds, "results/tessera_scsdc")
scsdc_study.report(config, "results/tessera_scsdc")      # aggregate only
```

Every (cell, seed) runs through `recipes.executor` into
`<out>/<cell>/seed_<s>/summary.json` (the layout of `ks.analysis.sc_sdc`),
the learning-rate sweep into `<out>/lr_sweep/`.
"""

from pathlib import Path

from keras_sparse.analysis import scsdc, sweep
from recipes import executor
from recipes.analysis_models import family


def task_names(config):
    """The task names of a resolved SC-SDC preset (what `--cells` selects)."""
    return [task["name"] for task in config["tasks"]]


def datasets(config, tasks=None):
    """The datasets the (selected) tasks and the learning-rate sweep read."""
    chosen = [t for t in config["tasks"] if tasks is None or t["name"] in tasks]
    sweep_task = config["tasks"][:1] if config.get("lr_sweep") else []
    return sorted({t["dataset"] for t in chosen + sweep_task})


def _loader(task, data_dir=None):
    import keras_sparse as ks

    def data(augment, seed):
        load = dict(name=task["dataset"], batch_size=task["batch_size"], seed=seed,
                    data_dir=data_dir)
        train = ks.data.load(split=task.get("train_split", "train"), shuffle=True,
                             augment=augment, subset=task["subset"], **load)
        test = ks.data.load(split=task.get("eval_split", "test"), shuffle=False, augment=False,
                            subset=task["eval_subset"], **load)
        return train, test
    return data


def _task(task, data_dir=None):
    """A study task as `ks.analysis.sc_sdc` takes it (model family and data loader)."""
    import keras_sparse as ks

    info = ks.data.info(task["dataset"], data_dir=data_dir)
    return {"build": family(task, info), "data": _loader(task, data_dir),
            "dense_width": task["dense_width"], "sparse_widths": task["sparse_widths"],
            "dataset": task["dataset"]}


def lr_sweep(config, out, log=print, data_dir=None, commit=None):
    """The short learning-rate sweep of an SC-SDC preset; writes and returns `lr_sweep.json`.

    For every optimizer of the preset's `lr_sweep["candidates"]` and every
    candidate rate, one dense / same-capacity sparse pair (the sweep's
    activation and regularizer, the first task and its first sparse width,
    one seed) trains for the sweep's epochs on `train_split` with the
    preset's schedule compressed to those epochs, and is scored on
    `eval_split`, examples held out of training (never the test set). The
    rate with the highest mean of the dense and the sparse held-out
    accuracy is picked (the first one on ties): one rate per optimizer for
    both networks, as SC-SDC compares them at the same settings. Runs are
    resumable (`<out>/lr_sweep/<optimizer>-lr<rate>/seed_<s>/summary.json`).

    Args:
        config: a resolved preset (`resolve(...)[0]`) with an `"lr_sweep"`.
        out: the study's output directory.
        log: called with each progress line.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        commit: a directory to git-commit after every finished run, or None.

    Returns:
        `{"rule", "setting", "results": [{"optimizer", "learning_rate",
        "dense", "sparse", "score"}], "picked": {optimizer: rate}, "why":
        {optimizer: sentence}}`.

    Example:

    ```python
    config, _ = resolve("tessera_scsdc", "converged")
    picked = lr_sweep(config, "results/tessera_scsdc")["picked"]
    ```
    """
    spec = config["lr_sweep"]
    task = dict(config["tasks"][0], train_split=spec["train_split"],
                eval_split=spec["eval_split"], subset=spec.get("subset"),
                eval_subset=spec.get("eval_subset"))
    task = dict(task, sparse_widths=task["sparse_widths"][:1])
    built = _task(task, data_dir)
    cells = []
    for optimizer, rates in spec["candidates"].items():
        for rate in rates:
            [cell] = scsdc.cells({task["name"]: built}, [{"optimizer": [optimizer],
                                                          "activation": [spec["activation"]],
                                                          "regularizer": [spec["regularizer"]]}])
            cells.append(dict(cell, name=f"{optimizer}-lr{rate:g}", learning_rate=rate))

    def run_cell(cell, seed):
        return scsdc.run_one(built, cell, seed, spec["epochs"],
                             learning_rates={cell["optimizer"]: cell["learning_rate"]},
                             l2=config.get("l2", 5e-4), egf_examples=config["egf_examples"],
                             schedule=config.get("schedule", "constant"))

    runs = executor.execute(cells, [spec["seed"]], run_cell,
                            executor.grid_dirs(Path(out) / "lr_sweep"),
                            headline="sparse.final.val_accuracy", log=log, commit=commit)
    results, picked, why = [], {}, {}
    for run in runs:
        r = run["result"]
        dense = r["dense"]["final"]["val_accuracy"]
        sparse = r["sparse"]["final"]["val_accuracy"]
        results.append({"optimizer": r["optimizer"], "learning_rate": r["learning_rate"],
                        "dense": dense, "sparse": sparse, "score": (dense + sparse) / 2})
    for optimizer, rates in spec["candidates"].items():
        rows = [x for x in results if x["optimizer"] == optimizer]
        best = max(rows, key=lambda x: x["score"])  # first of equal scores
        picked[optimizer] = best["learning_rate"]
        others = ", ".join(f"{x['learning_rate']:g} ({x['score']:.4f})" for x in rows)
        why[optimizer] = (f"{best['learning_rate']:g}: held-out accuracy dense "
                          f"{best['dense']:.4f}, sparse {best['sparse']:.4f}, mean "
                          f"{best['score']:.4f}, the highest of {others}")
        if best["learning_rate"] in (min(rates), max(rates)) and len(rates) > 1:
            why[optimizer] += ("; at the edge of the candidates: a wider sweep might pick "
                               "another rate")
    report = {"rule": "per optimizer, the candidate with the highest mean of dense and sparse "
                      "held-out accuracy after the sweep's epochs (first on ties)",
              "setting": {k: spec[k] for k in ("epochs", "train_split", "eval_split",
                                               "activation", "regularizer", "seed")}
              | {"task": task["name"], "dense_width": task["dense_width"],
                 "sparse_width": task["sparse_widths"][0],
                 "schedule": config.get("schedule", "constant")},
              "results": results, "picked": picked, "why": why}
    sweep.write_json(Path(out) / "lr_sweep.json", report)
    return report




def run(config, seeds, out, log=print, tasks=None, data_dir=None, commit=None):
    """Runs (or resumes) an SC-SDC preset, then reports it.

    Args:
        config: a resolved preset (`analysis_studies.resolve(...)[0]`).
        seeds: list of seeds.
        out: the study's output directory.
        log: called with each progress line.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        commit: a directory to git-commit after every finished run, or None.
        tasks: names of the tasks to train (default all); the learning-rate
            sweep always uses the preset's first task.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        commit: a directory to git-commit after every finished run, or None.

    Returns:
        The report (`ks.analysis.scsdc.report`), over every finished run of
        the preset's grid.
    """
    rates = config.get("learning_rates")
    if config.get("lr_sweep"):
        rates = dict(rates or {}, **lr_sweep(config, out, log, data_dir, commit)["picked"])
    built = {t["name"]: _task(t, data_dir) for t in config["tasks"]
             if tasks is None or t["name"] in tasks}
    scsdc.check_tasks(built)
    schedule = config.get("schedule", "constant")

    def run_cell(cell, seed):
        return scsdc.run_one(built[cell["task"]], cell, seed, config["epochs"],
                             learning_rates=rates, l2=config.get("l2", 5e-4),
                             egf_examples=config["egf_examples"], verbose=0, schedule=schedule)

    executor.execute(scsdc.cells(built, config["grid"]), seeds, run_cell,
                     executor.grid_dirs(out), headline="gap", log=log, commit=commit)
    every = [c["name"] for c in scsdc.cells({t["name"]: t for t in config["tasks"]},
                                            config["grid"])]
    result = report(config, out, every)
    if config.get("lr_sweep"):
        result["lr_sweep"] = str(Path(out) / "lr_sweep.json")
    return result


def report(config, out, cells=None):
    """Aggregates the finished runs under `out`: `report.json`, CSVs and plots.

    Args:
        config: a resolved preset.
        out: the study's output directory.
        cells: names of the cells to report (default every finished run).
    """
    result = scsdc.report(str(out), cells,
                          bootstrap_resamples=config.get("bootstrap_resamples", 2000))
    scsdc.plot_kendall(result, f"{out}/kendall.png")
    scsdc.plot_gaps(result, f"{out}/gap_heatmap.png")
    return result
