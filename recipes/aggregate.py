"""Aggregates a study's finished runs into tables, a ranking and plots.

```python
from recipes import aggregate
aggregate.aggregate("haroon_init", out="results/haroon_init")
```

Reads `<out>/runs/<cell>/seed_<s>/summary.json` and writes `table.csv`,
`table.md`, `comparisons.csv`, `ranking.md`, `aggregate.json` and the plots
into `<out>/`.
"""

import csv
import math
from pathlib import Path

from keras_sparse.analysis import stats, sweep
from recipes import studies
from recipes.executor import default_out

METRIC = "val_accuracy"  # the headline: final test accuracy


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
