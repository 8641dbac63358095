"""Runs a study (a recipe over a grid of cells times seeds) and aggregates it.

```python
from recipes import study
study.run("haroon_init", preset="cpu", seeds=3, out="results/haroon_init")
study.aggregate("haroon_init", out="results/haroon_init")
```

Each run trains one arm with `runner.train_arm` into
`<out>/runs/<cell>/seed_<s>/` (`metrics.csv`, `summary.json`); the grid is
run by `keras_sparse.analysis.sweep.run_grid`, so a rerun skips finished
runs. `aggregate` writes `table.csv`, `table.md`, `comparisons.csv`,
`ranking.md`, `aggregate.json` and the plots into `<out>/`.
"""

import copy
import csv
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_sparse.analysis import stats, sweep
from recipes import configs, launch, runner, studies

CELL_KEYS = ("name", "overrides", "method", "group", "sparsity", "baseline")
REPLACED = ("method", "sparsify", "baseline")  # a cell's value replaces the recipe's
METRIC = "val_accuracy"  # the headline: final test accuracy


def default_out(name, preset="cpu"):
    """`results/NAME` for the quick (cpu) tier, `results/NAME/PRESET` otherwise."""
    return Path("results") / name if preset == "cpu" else Path("results") / name / preset


def git_committer(out, log=print):
    """A `log` that also commits `out` after every finished run.

    For long studies: each finished (cell, seed) is committed at once with
    the progress line as its message, so a run cut off loses at most the
    run in progress. Run it from a `git worktree` pinned at the commit the
    study should use.
    """
    import subprocess

    def commit(line):
        log(line)
        subprocess.run(["git", "add", "--", str(out)], check=True)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode
        if staged:
            subprocess.run(["git", "commit", "-q", "-m", f"{out}: {line}"], check=True)

    return commit


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


# -- one run -----------------------------------------------------------------------


class DensityTrace(keras.callbacks.Callback):
    """Records the compute-weighted density of the kernels each step, and FLOPs.

    The density of a step is `sum_l macs_l * active_l / sum_l macs_l *
    size_l` over the kernels (the prunable weights of a sparse model, every
    `kernel` of a dense one), `macs_l` the multiply-adds per weight and
    example of layer `l` (1 for a Dense kernel, the output's spatial size
    for a convolution), read from the masks before the step. Summed over
    steps it gives the training cost in dense-equivalent epochs of the
    model trained; `flops` estimates the training FLOPs of the kernels as
    `6 * sum_steps sum_l macs_l * active_l * batch_size` (2 FLOPs per
    multiply-add, backward twice the forward; interpretation: biases,
    normalisation, the dense gradients some methods read at update steps and
    a smaller last batch are not counted). Also records the sparsity at the
    start and at each epoch end.

    The per-step sum is accumulated on the device and read once per epoch:
    reading the masks on the host every step doubled the step time of a
    LeNet-300-100 on a loaded 2-core machine.
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.steps, self.flops, self.per_epoch, self.end_sparsity = 0.0, 0.0, [], []
        self.start_sparsity = 0.0
        self._kernels = []

    def set_model(self, model):
        super().set_model(model)
        masked = getattr(model, "masked_weights", None) or []
        if masked:
            self._kernels = [(mw.weight, mw.mask, _macs_per_weight(mw.layer, mw.weight))
                             for mw in masked]
        else:
            self._kernels = [(w, None, _macs_per_weight(layer, w)) for layer in model.layers
                             for w in layer.weights if w.path.endswith("kernel")]
        self._full = sum(m * math.prod(w.shape) for w, _, m in self._kernels)
        self._sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self._add = tf.function(lambda: self._sum.assign_add(self._weighted_active()))

    def _weighted_active(self):
        """`sum_l macs_l * active_l` as a float64 tensor (no host read)."""
        total = tf.constant(0.0, tf.float64)
        for w, mask, m in self._kernels:
            active = (float(math.prod(w.shape)) if mask is None else
                      tf.reduce_sum(tf.cast(tf.convert_to_tensor(mask), tf.float64)))
            total += m * active
        return total

    def sparsity(self):
        size = sum(math.prod(w.shape) for w, _, _ in self._kernels)
        active = sum(math.prod(w.shape) if mask is None else float(keras.ops.sum(mask))
                     for w, mask, _ in self._kernels)
        return 1.0 - active / size if size else 0.0

    def on_train_begin(self, logs=None):
        self.start_sparsity = self.sparsity()

    def on_epoch_begin(self, epoch, logs=None):
        self._sum.assign(0.0)
        self._count = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._add()
        self._count += 1

    def on_epoch_end(self, epoch, logs=None):
        macs = float(self._sum.numpy())
        density = macs / self._full if self._full else float(self._count)
        self.per_epoch.append(density / max(self._count, 1))
        self.steps += density
        self.flops += 6.0 * macs * self.batch_size
        self.end_sparsity.append(self.sparsity())


def _macs_per_weight(layer, weight):
    """Multiply-adds per weight and example: the output's spatial size for a conv."""
    if len(weight.shape) <= 2:
        return 1
    try:
        return max(1, math.prod(layer.output.shape[1:-1]))
    except (AttributeError, ValueError, TypeError):
        return 1


def run_cell(study, cell, config, seed, out, verbose, data_cache, strategy=None,
             jit_compile=None, data_dir=None):
    """Trains one cell with one seed in `out/runs/<cell>/seed_<seed>/`; returns its result.

    `strategy` is a `tf.distribute.Strategy` or None; `jit_compile` and
    `data_dir` as in `recipes.runner.run`.
    """
    cpu = time.process_time()
    run_dir = sweep.run_dir(Path(out) / "runs", cell["name"], seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = (repr(sorted(config["data"].items())), config["batch_size"],
           repr(config["egf"]), config["label_smoothing"], seed)
    if key not in data_cache:
        data_cache.clear()  # one dataset at a time in memory
        data_cache[key] = runner._datasets(config, seed, data_dir, strategy)
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
            `git_committer`).

    Returns:
        The aggregate (see `aggregate`).
    """
    study, grid, resolved, seed_list = plan(name, preset, seeds, cells)
    launch.check_available(strategy)
    for config in resolved.values():
        launch.ensure_prepared(config["data"]["name"], data_dir, download)
    distribute = launch.make_strategy(strategy)
    out = Path(out or default_out(name, preset))
    verbose = runner.default_verbose() if verbose is None else verbose
    log = git_committer(out, log) if commit else log
    cache = {}
    with launch.precision(mixed_precision):
        sweep.run_grid(grid, seed_list,
                       lambda cell, seed: run_cell(study, cell, resolved[cell["name"]], seed,
                                                   out, verbose, cache, distribute,
                                                   jit_compile, data_dir),
                       out / "runs", headline=f"final.{METRIC}", log=log)
    return aggregate(name, out, preset=preset)


# -- aggregation --------------------------------------------------------------------


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _md(text):
    """`text` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(name, out=None, preset="cpu"):
    """Aggregates the finished runs of study `name` under `out` into tables and plots.

    Writes `table.csv`/`table.md` (per cell: mean ± std, 95% CI, test
    against the baseline cell on the seeds both have, Holm-adjusted over
    the cells), `comparisons.csv` (the study's extra pairs, Holm-adjusted
    together), `ranking.md` (methods ranked by mean accuracy within each
    group and sparsity, then by mean rank), `aggregate.json`, and the plots
    `accuracy_vs_sparsity.png` and `itop.png`.

    Returns:
        `{"rows", "comparisons", "ranking"}`.
    """
    from recipes import plots  # matplotlib only when aggregating

    study = studies.get(name, preset)
    out = Path(out or default_out(name, preset))
    found = {}
    for cell, seed, result in sweep.load_results(out / "runs"):
        found.setdefault(cell, {})[seed] = result
    grid = [c for c in study["grid"] if c["name"] in found]
    if not grid:
        raise ValueError(f"No finished runs of study {name!r} under {out / 'runs'}.")

    def accuracy(cell):
        return {s: r["final"][METRIC] for s, r in found[cell].items()}

    def test(a, b):
        x, y = accuracy(a), accuracy(b)
        common = sorted(set(x) & set(y))
        if a == b or len(common) < 2:
            return None
        return stats.paired_test([x[s] for s in common], [y[s] for s in common])

    rows = []
    for cell in grid:
        results = list(found[cell["name"]].values())
        summary = stats.summarize([r["final"][METRIC] for r in results])
        itop = [r["final"].get("dst/itop") for r in results]
        base = cell.get("baseline", study["baseline"])
        rows.append(dict(
            cell=cell["name"], method=results[0]["method"], group=results[0]["group"],
            sparsity=results[0]["nominal_sparsity"], n=summary["n"], mean=summary["mean"],
            std=summary["std"], ci95_lo=summary["ci95"][0], ci95_hi=summary["ci95"][1],
            final_sparsity=_mean([r["sparsity"] for r in results]),
            itop=_mean(itop), grown_ever=_mean([r["final"].get("dst/grown_ever")
                                                for r in results]),
            regrown_fraction=_mean([_regrown_fraction(r) for r in results]),
            epochs_to_sparsity=_mean([r.get("epochs_to_sparsity")
                                                        for r in results]),
            dense_equivalent_epochs=_mean([r.get("dense_equivalent_epochs") for r in results]),
            train_flops=_mean([r.get("train_flops") for r in results]),
            train_seconds=_mean([r["train_seconds"] for r in results]),
            plateau_change=_mean([plateau_change(r) for r in results]),
            baseline=base, test=test(cell["name"], base) if base in found else None))
    tested = [r for r in rows if r["test"]]
    for r, p in zip(tested, stats.holm([r["test"]["p_value"] for r in tested])):
        r["test"]["p_holm"] = p

    comparisons = [dict(a=a, b=b, test=test(a, b)) for a, b in study.get("comparisons", [])
                   if a in found and b in found]
    comparisons = [c for c in comparisons if c["test"]]
    for c, p in zip(comparisons, stats.holm([c["test"]["p_value"] for c in comparisons])):
        c["test"]["p_holm"] = p

    ranking = _ranking(rows)
    _write_tables(study, out, rows, comparisons, ranking, preset)
    plots.accuracy_vs_sparsity(rows, out / "accuracy_vs_sparsity.png", study["title"])
    histories = {}
    for cell in grid:
        for result in found[cell["name"]].values():
            if "dst/itop" in result["history"]:
                key = (result["group"], result["nominal_sparsity"], result["method"])
                histories.setdefault(key, []).append(result["history"]["dst/itop"])
    if histories:
        plots.itop_over_training(histories, out / "itop.png", study["title"])
    curves = {}
    for cell in grid:
        for result in found[cell["name"]].values():
            series = result["history"].get(METRIC, [])
            if len(series) == result.get("epochs"):  # evaluated every epoch
                key = (result["group"], result["nominal_sparsity"], result["method"])
                curves.setdefault(key, []).append(series)
    if curves:
        plots.history_over_training(curves, out / "learning_curves.png", study["title"],
                                    "test accuracy (mean over seeds)")
    regrown = {}
    for cell in grid:
        for result in found[cell["name"]].values():
            if "dst/regrown_fraction" in result["history"]:
                key = (result["group"], result["nominal_sparsity"], result["method"])
                regrown.setdefault(key, []).append(_updating_epochs(result,
                                                                    "dst/regrown_fraction"))
    if regrown:
        plots.history_over_training(
            regrown, out / "regrown.png", study["title"],
            "regrown fraction (mean over seeds)")
    aggregate_ = {"study": name, "preset": preset, "metric": f"final {METRIC}",
                  "rows": rows, "comparisons": comparisons, "ranking": ranking}
    sweep.write_json(out / "aggregate.json", aggregate_)
    return aggregate_


PLATEAU_SHARE = 0.2  # the last 20% of epochs
PLATEAU_POINTS = 0.003  # converged: test accuracy moved by less than 0.3 points


def plateau_change(result):
    """Test accuracy at the end minus at the start of the last 20% of epochs.

    A run has converged when its absolute value is below `PLATEAU_POINTS`.
    None when the test set was not evaluated every epoch.

    Example: 20 epochs with `val_accuracy` 0.8950 after epoch 16 and 0.8955
    after epoch 20 give +0.0005.
    """
    series = result["history"].get(METRIC, [])
    if len(series) < 2 or len(series) != result.get("epochs"):
        return None
    window = max(1, round(PLATEAU_SHARE * len(series)))
    return series[-1] - series[-1 - window]


def _updating_epochs(result, metric):
    """`metric` per epoch, over the epochs with at least one mask update."""
    history = result["history"]
    return [v for v, n in zip(history[metric], history["dst/updates"]) if n > 0]


def _regrown_fraction(result):
    """Mean over updating epochs of the fraction of grown connections active before."""
    if "dst/regrown_fraction" not in result["history"]:
        return None
    values = _updating_epochs(result, "dst/regrown_fraction")
    return sum(values) / len(values) if values else None


def _ranking(rows):
    """Methods ranked by mean accuracy within each (group, sparsity), then by mean rank."""
    settings = {}
    for r in rows:
        settings.setdefault((r["group"], r["sparsity"]), []).append(r)
    ranks = {}
    per_setting = []
    for (group, sparsity), members in sorted(settings.items(), key=lambda kv: (kv[0][0],
                                                                               kv[0][1])):
        ordered = sorted(members, key=lambda r: -r["mean"])
        per_setting.append({"group": group, "sparsity": sparsity,
                            "order": [r["method"] for r in ordered]})
        if len(members) > 1:
            for rank, r in enumerate(ordered, 1):
                ranks.setdefault(r["method"], []).append(rank)
    overall = sorted(({"method": m, "mean_rank": sum(v) / len(v), "settings": len(v)}
                      for m, v in ranks.items()), key=lambda x: x["mean_rank"])
    return {"overall": overall, "per_setting": per_setting}


def _write_tables(study, out, rows, comparisons, ranking, preset):
    out.mkdir(parents=True, exist_ok=True)
    columns = ["cell", "method", "group", "sparsity", "n", "mean", "std", "ci95_lo", "ci95_hi",
               "final_sparsity", "itop", "grown_ever", "regrown_fraction",
               "epochs_to_sparsity", "dense_equivalent_epochs",
               "train_flops", "train_seconds", "plateau_change", "baseline", "test",
               "mean_diff", "p_value", "p_holm"]
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            t = r["test"] or {}
            writer.writerow([r[c] for c in columns[:19]]
                            + [t.get("test"), t.get("mean_diff"), t.get("p_value"),
                               t.get("p_holm")])
    with open(out / "comparisons.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "test", "n", "mean_diff", "statistic", "p_value", "p_holm"])
        for c in comparisons:
            t = c["test"]
            writer.writerow([c["a"], c["b"], t["test"], t["n"], t["mean_diff"], t["statistic"],
                             t["p_value"], t["p_holm"]])
    tests = sorted({r["test"]["test"] for r in rows if r["test"]}
                   | {c["test"]["test"] for c in comparisons})
    names = {"ttest": "paired t-test (scipy.stats.ttest_rel)",
             "wilcoxon": "Wilcoxon signed-rank (scipy.stats.wilcoxon)"}
    lines = [f"# {study['title']}", "",
             f"Study `{study['name']}`, preset `{preset}`, recipe `{study['recipe']}`. "
             f"Metric: final test accuracy ({METRIC}), mean ± std over seeds, t-based 95% CI. "
             "Paired tests (two-sided) on the seeds both cells have: "
             + (", ".join(names[t] for t in tests) or "none")
             + "; p_holm is Holm-adjusted over the tests of the table. ITOP: final "
             "in-time over-parameterization rate (DST methods); grown ever: distinct "
             "connections ever grown; regrown: fraction of the grown connections that "
             "had been active before, mean over the epochs with mask updates. Epochs to "
             "sparsity: first "
             "epoch at whose end the target sparsity holds (0: sparse from the start). "
             "Dense-eq. epochs: training cost in epochs of the same model trained dense "
             "(compute-weighted density of the kernels summed over steps); train GFLOPs: "
             "6 x multiply-adds of the active kernels x examples (an estimate that "
             "compares models of different size). Reached: the sparsity at the end. "
             "Plateau: test accuracy change over the last 20% of epochs (converged when "
             "below 0.3 points; '-' when not evaluated every epoch).", "",
             "| cell | method | group | sparsity | reached | n | accuracy | 95% CI | plateau "
             "| ITOP | grown ever "
             "| regrown | epochs to sparsity | dense-eq. epochs | train GFLOPs | vs | diff | p "
             "| p_holm |",
             "|" + "---|" * 19]
    for r in rows:
        t = r["test"] or {}
        lines.append(
            f"| {r['cell']} | {_md(r['method'])} | {r['group']} | {_fmt(r['sparsity'], 3)} "
            f"| {_fmt(r['final_sparsity'], 4)} | {r['n']} "
            f"| {_fmt(r['mean'])} ± {_fmt(r['std'])} | [{_fmt(r['ci95_lo'])}, "
            f"{_fmt(r['ci95_hi'])}] | {_fmt(r['plateau_change'])} "
            f"| {_fmt(r['itop'], 3)} | {_fmt(r['grown_ever'], 0)} "
            f"| {_fmt(r['regrown_fraction'], 3)} | {_fmt(r['epochs_to_sparsity'], 1)} "
            f"| {_fmt(r['dense_equivalent_epochs'], 2)} "
            f"| {_fmt(r['train_flops'] / 1e9 if r['train_flops'] else None, 1)} "
            f"| {r['baseline'] if t else '-'} "
            f"| {_fmt(t.get('mean_diff'))} | {_fmt(t.get('p_value'), 3)} "
            f"| {_fmt(t.get('p_holm'), 3)} |")
    if comparisons:
        lines += ["", "## Comparisons (Holm over this list)", "",
                  "| a | b | test | n | mean diff (a - b) | p | p_holm |", "|" + "---|" * 7]
        lines += [f"| {c['a']} | {c['b']} | {c['test']['test']} | {c['test']['n']} "
                  f"| {_fmt(c['test']['mean_diff'])} | {_fmt(c['test']['p_value'], 3)} "
                  f"| {_fmt(c['test']['p_holm'], 3)} |" for c in comparisons]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    rank_lines = [f"# Ranking: {study['title']}", "",
                  "Mean rank of each method over the (group, sparsity) settings it "
                  "appears in with others (1 = best mean accuracy).", "",
                  "| method | mean rank | settings |", "|---|---|---|"]
    rank_lines += [f"| {_md(m['method'])} | {m['mean_rank']:.2f} | {m['settings']} |"
                   for m in ranking["overall"]]
    rank_lines += ["", "| group | sparsity | best to worst |", "|---|---|---|"]
    rank_lines += [f"| {s['group']} | {_fmt(s['sparsity'], 3)} | {_md(' > '.join(s['order']))} |"
                   for s in ranking["per_setting"]]
    (out / "ranking.md").write_text("\n".join(rank_lines) + "\n")
