"""PNG plots of a recipe run (matplotlib, Agg backend, no pyplot state)."""

import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _figure(columns, title):
    figure = Figure(figsize=(5 * columns, 4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(textwrap.fill(title, 45 * columns), fontsize="medium")
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _epochs(values):
    return range(1, len(values) + 1)


def curves(histories, path, title):
    """Accuracy and loss per epoch: `histories` is `{arm: History.history}`."""
    figure, axes = _figure(2, title)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for arm, history in histories.items():
            if metric in history:
                line, = ax.plot(_epochs(history[metric]), history[metric], "--",
                                label=f"{arm} train")
                if f"val_{metric}" in history:
                    ax.plot(_epochs(history[f"val_{metric}"]), history[f"val_{metric}"],
                            color=line.get_color(), label=f"{arm} test")
        ax.set(xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    figure.savefig(path)


def gradient_flow(histories, path, title):
    """EGF (p = 1, 2) per epoch, log scale."""
    figure, axes = _figure(2, title)
    for ax, key in zip(axes, ("egf_l2", "egf_l1")):
        for arm, history in histories.items():
            if key in history:
                ax.plot(_epochs(history[key]), history[key], marker="o", label=arm)
        ax.set(xlabel="epoch", ylabel=f"EGF (p={key[-1]})", yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    figure.savefig(path)


def layer_sparsity(rows, path, title):
    """Bar chart of per-layer sparsity (`ks.sparsity_report` rows, no total)."""
    figure = Figure(figsize=(max(5, 0.35 * len(rows) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    names = [f"{r['layer']}/{r['weight']}" for r in rows]
    ax.bar(range(len(rows)), [r["sparsity"] for r in rows])
    ax.set_xticks(range(len(rows)), names, rotation=90, fontsize=7)
    ax.set(ylabel="sparsity", ylim=(0, 1), title=title)
    figure.savefig(path)


def accuracy_vs_sparsity(rows, path, title):
    """Mean test accuracy vs sparsity per method, 95% CI error bars, one panel per group.

    `rows` are the study table rows (`group`, `method`, `sparsity`, `mean`,
    `ci95_lo`, `ci95_hi`). Methods at a single sparsity 0 (dense references)
    are drawn as horizontal lines with a band.
    """
    groups = sorted({r["group"] for r in rows})
    figure, axes = _figure(len(groups), title)
    for ax, group in zip(axes, groups):
        methods = {}
        for r in rows:
            if r["group"] == group:
                methods.setdefault(r["method"], []).append(r)
        for method, points in methods.items():
            points.sort(key=lambda r: r["sparsity"])
            x = [r["sparsity"] for r in points]
            y = [r["mean"] for r in points]
            err = [[max(0.0, r["mean"] - r["ci95_lo"]) if r["n"] > 1 else 0.0 for r in points],
                   [max(0.0, r["ci95_hi"] - r["mean"]) if r["n"] > 1 else 0.0 for r in points]]
            if x == [0.0]:
                line = ax.axhline(y[0], linestyle=":", label=f"{method} (dense)")
                if points[0]["n"] > 1:
                    ax.axhspan(points[0]["ci95_lo"], points[0]["ci95_hi"],
                               color=line.get_color(), alpha=0.1)
            else:
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
        ax.set(xlabel="sparsity", ylabel="test accuracy (mean, 95% CI)",
               title=group or None)
        ax.legend(fontsize=7)
    figure.savefig(path)


def itop_over_training(histories, path, title):
    """ITOP rate per epoch (mean over seeds), one panel per (group, sparsity).

    `histories` maps `(group, sparsity, method)` to a list of per-seed
    `dst/itop` series.
    """
    history_over_training(histories, path, title, "ITOP rate (mean over seeds)")


def history_over_training(histories, path, title, ylabel):
    """A per-epoch metric (mean over seeds), one panel per (group, sparsity).

    `histories` maps `(group, sparsity, method)` to a list of per-seed series.
    """
    panels = sorted({(g, s) for g, s, _ in histories})
    figure, axes = _figure(len(panels), title)
    for ax, (group, sparsity) in zip(axes, panels):
        for (g, s, method), series in sorted(histories.items()):
            if (g, s) != (group, sparsity):
                continue
            length = min(len(v) for v in series)
            mean = [sum(v[i] for v in series) / len(series) for i in range(length)]
            ax.plot(_epochs(mean), mean, marker="o", label=method)
        ax.set(xlabel="epoch", ylabel=ylabel,
               title=f"{group} {sparsity:.0%}".strip())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    figure.savefig(path)
