"""Runs a study (a recipe over a grid of cells times seeds) and aggregates it.

```python
from recipes import study
study.run("haroon_init", preset="cpu", seeds=3, out="results/haroon_init")
study.aggregate("haroon_init", out="results/haroon_init")
```

Each run trains one arm with `runner.train_arm` into
`<out>/runs/<cell>/seed_<s>/` (`metrics.csv`, `summary.json`); the grid is
run by `recipes.executor`, so a rerun skips finished runs. `aggregate`
(`recipes.aggregate`) writes the tables and plots into `<out>/`.
"""

import copy
import time
from pathlib import Path

from keras_sparse.analysis import sweep
from recipes import configs, executor, launch, runner, studies
from recipes.aggregate import METRIC, aggregate
from recipes.density_trace import DensityTrace

CELL_KEYS = ("name", "overrides", "method", "group", "sparsity", "baseline")
REPLACED = ("method", "sparsify", "baseline")  # a cell's value replaces the recipe's


# -- configs ---------------------------------------------------------------------


def _check_overrides(where, overrides, config):
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: `overrides` must be a dict; got {overrides!r}.")
    for key, value in overrides.items():
        if key not in config:
            raise ValueError(f"{where}: unknown override key {key!r}; allowed: "
                             f"{sorted(config)}.")
        if key in ("data", "egf") and isinstance(value, dict):
            unknown = sorted(set(value) - set(config[key]))
            if unknown:
                raise ValueError(f"{where}: unknown override {key}.{unknown[0]}; allowed "
                                 f"{key} keys: {sorted(config[key])}.")


def cell_config(study, cell, preset):
    """The resolved, checked recipe config of one cell under `preset`."""
    where = f"Study {study['name']!r} cell {cell.get('name')!r}"
    unknown = sorted(set(cell) - set(CELL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown cell key {unknown[0]!r}; allowed: {list(CELL_KEYS)}.")
    base = runner.merge(runner.DEFAULTS, configs.get(study["recipe"]))
    base.pop("presets")
    layers = [(f"{where} (study preset {preset!r})", study.get("presets", {}).get(preset, {})),
              (where, cell.get("overrides", {}))]
    replaced, merged = {}, {}
    for label, overrides in layers:
        _check_overrides(label, overrides, base)
        for key, value in overrides.items():
            (replaced if key in REPLACED else merged)[key] = copy.deepcopy(value)
        merged = runner.merge(merged, {k: v for k, v in overrides.items() if k not in REPLACED})
    config = runner.resolve(study["recipe"], preset, overrides=merged, strict=False)
    config.update(replaced)
    config["label"] = "dense" if config["method"] is None else "sparse"
    if config["baseline"]:
        config["baseline"].setdefault("label", "baseline")
    runner.check(config)
    return config


def plan(name, preset="cpu", seeds=None, cells=None):
    """Checks a study and returns `(study, cells, configs, seeds)`; writes nothing.

    Raises:
        ValueError: unknown study, preset, cell, cell key or override, or a
            bad number of seeds.
    """
    study = studies.get(name, preset)
    n = study["seeds"] if seeds is None else seeds
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`seeds` must be an int >= 1; got seeds={n!r}.")
    grid = study["grid"]
    names = [c.get("name") for c in grid]
    if cells is not None:
        unknown = [c for c in cells if c not in names]
        if unknown:
            raise ValueError(f"Study {name!r} has no cell {unknown[0]!r}; cells: {names}.")
        grid = [c for c in grid if c["name"] in cells]
    sweep.check_grid(grid, list(range(n)))
    for key in [study["baseline"]] + [c["baseline"] for c in grid if "baseline" in c]:
        if key not in names:
            raise ValueError(f"Study {name!r}: baseline {key!r} is not a cell; cells: {names}.")
    for a, b in study.get("comparisons", []):
        for key in (a, b):
            if key not in names:
                raise ValueError(f"Study {name!r}: comparison cell {key!r} is not a cell.")
    resolved = {c["name"]: cell_config(study, c, preset) for c in grid}
    return study, grid, resolved, list(range(n))


def preflight(name, preset="cpu", seeds=None, cells=None, strategy="none", data_dir=None,
              download=False):
    """`plan`, and checks that this machine can train it; returns what `plan` does.

    Checks the strategy (`recipes.launch.check_available`) and that every
    cell's dataset is prepared (downloaded and prepared here with
    `download=True`). Arguments as in `run`.

    Raises:
        ValueError: see `plan`, or a strategy this machine cannot provide.
        FileNotFoundError: a dataset is not prepared and `download` is False.
    """
    planned = plan(name, preset, seeds, cells)
    launch.check_available(strategy)
    for config in planned[2].values():
        launch.ensure_prepared(config["data"]["name"], data_dir, download)
    return planned


# -- one run -----------------------------------------------------------------------


def run_cell(study, cell, config, seed, run_dir, verbose, data_cache, strategy=None,
             jit_compile=None, data_dir=None):
    """Trains one cell with one seed in `run_dir`; returns its result.

    Args:
        study, cell, config: the study, the cell and its resolved config (`plan`).
        seed: the run's seed.
        run_dir: the run's directory (`<out>/runs/<cell>/seed_<seed>/`).
        verbose: Keras `fit` verbosity.
        data_cache: a dict kept between runs (runs on the same data share it).
        strategy: a `tf.distribute.Strategy` or None; `jit_compile` and
            `data_dir` as in `recipes.runner.run`.
    """
    cpu = time.process_time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = (repr(sorted(config["data"].items())), config["batch_size"],
           repr(config["egf"]), config["label_smoothing"], seed)
    if key not in data_cache:
        data_cache.clear()  # one dataset at a time in memory
        data_cache[key] = runner.datasets(config, seed, data_dir, strategy)
    data = data_cache[key]
    trace = DensityTrace(config["batch_size"])
    _, result = runner.train_arm(config, cell["name"], data, run_dir, seed, verbose,
                                 "metrics.csv", strategy=strategy, jit_compile=jit_compile,
                                 callbacks=[trace], tensorboard=False)
    target = config["sparsity"] if config["method"] is not None else 0.0
    reached = [i + 1 for i, s in enumerate(trace.end_sparsity) if s >= target - 1e-6]
    steps_per_epoch = data[-1]
    result.update(
        study=study["name"], cell=cell["name"], seed=seed,
        method=cell.get("method", cell["name"]), group=cell.get("group", ""),
        nominal_sparsity=cell.get("sparsity", target),
        epochs=config["epochs"],
        sparsity_per_epoch=trace.end_sparsity,
        density_per_epoch=trace.per_epoch,
        # 0: sparse from the first step; None: never reached.
        epochs_to_sparsity=(0 if trace.start_sparsity >= target - 1e-6
                            else (reached[0] if reached else None)),
        dense_equivalent_epochs=trace.steps / steps_per_epoch,
        train_flops=trace.flops,
        # CPU time of this process for the run (both cores count): a measure
        # of its cost that depends less on other load than wall time does.
        cpu_seconds=time.process_time() - cpu,
        config=config,
    )
    return result


def run(name, preset="cpu", seeds=None, out=None, cells=None, verbose=None, log=print,
        strategy="none", mixed_precision=False, jit_compile=None, data_dir=None,
        download=False, commit=False):
    """Runs every unfinished (cell, seed) of study `name`, then aggregates.

    Args:
        name: a study name (`recipes.studies.names()`).
        preset: "cpu" or "paper".
        seeds: number of seeds (default: the study's).
        out: output directory (default `results/NAME`, or
            `results/NAME/PRESET` for a preset other than "cpu").
        cells: optional list of cell names to run (default all).
        verbose: Keras `fit` verbosity (default: 1 on a terminal, else 2).
        log: function receiving the progress lines.
        strategy, mixed_precision, jit_compile, data_dir, download: as in
            `recipes.runner.run`, applied to every run.
        commit: commit `out` with git after every finished run (see
            `recipes.executor.git_committer`).

    Returns:
        The aggregate (see `aggregate`).
    """
    study, grid, resolved, seed_list = preflight(name, preset, seeds, cells, strategy,
                                                 data_dir, download)
    distribute = launch.make_strategy(strategy)
    out = Path(out or executor.default_out(name, preset))
    verbose = runner.default_verbose() if verbose is None else verbose
    where = executor.grid_dirs(out / "runs")
    cache = {}
    with launch.precision(mixed_precision):
        executor.execute(grid, seed_list,
                         lambda cell, seed: run_cell(study, cell, resolved[cell["name"]], seed,
                                                     where(cell["name"], seed), verbose, cache,
                                                     distribute, jit_compile, data_dir),
                         where, headline=f"final.{METRIC}", log=log,
                         commit=out if commit else None)
    return aggregate(name, out, preset=preset)


