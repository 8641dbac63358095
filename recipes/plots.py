"""PNG plots of a recipe run (matplotlib, Agg backend, no pyplot state)."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _figure(columns, title):
    figure = Figure(figsize=(5 * columns, 4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
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
