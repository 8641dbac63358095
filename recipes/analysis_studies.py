"""The analysis papers' studies as data: SC-SDC sweeps (Tessera 2021) and paths (Evci 2019).

```
python -m recipes.analysis_studies list
python -m recipes.analysis_studies run tessera_scsdc [--preset cpu|paper] [--seeds N] [--out DIR]
python -m recipes.analysis_studies run evci_paths [--preset cpu|paper] [--seeds N] [--out DIR]
python -m recipes.analysis_studies report NAME [--out DIR]     # aggregate + plots only
```

Both are resumable (one `summary.json` per run under `<out>/<cell>/seed_<s>/`;
a rerun skips finished runs). Outputs go to `results/<NAME>/` by default.
"""

import argparse
import sys
from pathlib import Path

TESSERA = ("Tessera, Hooker, Rosman 2021, Keep the Gradients Flowing: Using Gradient Flow "
           "to Study Sparse Network Optimization, arXiv:2102.01670")
EVCI = ("Evci, Pedregosa, Gomez, Elsen 2019, The Difficulty of Training Sparse Neural "
        "Networks, arXiv:1906.10732")

_ALL = {"optimizer": ["sgd", "momentum", "adam", "rmsprop"],
        "activation": ["relu", "prelu", "swish", "selu", "tanh"],
        "regularizer": ["none", "l2", "batchnorm", "augmentation"]}

# A task: dataset, model family, dense width and sparse widths, data sizes.
_FMNIST_MLP = {"name": "fashion_mnist_mlp", "dataset": "fashion_mnist", "family": "mlp",
               "depth": 2, "dense_width": 100, "sparse_widths": [200, 400],
               "batch_size": 128, "subset": None, "eval_subset": None}
_CIFAR_CNN = {"family": "cnn", "dense_width": 32, "sparse_widths": [64, 128],
              "batch_size": 128, "subset": None, "eval_subset": None}

STUDIES = {
    "tessera_scsdc": {
        "kind": "scsdc",
        "title": "SC-SDC: same-capacity sparse vs dense networks over optimizer x activation "
                 "x regularizer, with EGF and gradient norms (claims T1-T3)",
        "paper": TESSERA,
        "claims": {
            "T1": "EGF correlates with final test accuracy better than |g|_1 and |g|_2 (Kendall tau)",
            "T2": "dense defaults (Adam, ReLU, no BatchNorm) disadvantage sparse networks; the "
                  "gap depends on optimizer, activation and regularizer",
            "T3": "BatchNorm matters more for sparse than dense; Adam/RMSprop are more sensitive "
                  "to L2 and augmentation; Swish and PReLU help with SGD",
        },
        "presets": {
            # ~30-40 min on 2 cores, 3 seeds: a Fashion-MNIST MLP, 10k training
            # examples, 3 epochs, one sparse width, and two blocks of the grid:
            # every optimizer x activation without regularizer, and every
            # optimizer x regularizer with ReLU and Swish (T3's pairs).
            "cpu": {
                "seeds": 3, "epochs": 3, "egf_examples": 1000,
                "tasks": [dict(_FMNIST_MLP, sparse_widths=[400], subset=10000,
                               eval_subset=2000)],
                "grid": [{"activation": _ALL["activation"], "regularizer": ["none"]},
                         {"activation": ["relu", "swish"], "regularizer": _ALL["regularizer"]}],
            },
            # The full grid on the paper's three data sets. interpretation:
            # the widths, epochs and learning rates were not checked against
            # the paper; these are this package's choices.
            "paper": {
                "seeds": 5, "epochs": 30, "egf_examples": 1000,
                "tasks": [_FMNIST_MLP,
                          dict(_CIFAR_CNN, name="cifar10_cnn", dataset="cifar10"),
                          dict(_CIFAR_CNN, name="cifar100_cnn", dataset="cifar100")],
                "grid": None,
            },
        },
    },
    "evci_paths": {
        "kind": "paths",
        "title": "Loss along linear and Bezier paths between the solutions I, P, S, L, S' "
                 "(claims E1-E4)",
        "paper": EVCI,
        "claims": {
            "E1": "the linear path from I to P decreases monotonically",
            "E2": "the linear path S->P has a barrier; quadratic and cubic Bezier curves inside "
                  "the sparse subspace do not remove it",
            "E3": "a Bezier curve in the dense space connects two sparse solutions with no (or a "
                  "much lower) barrier",
            "E4": "S and L end worse than P at the same sparsity",
        },
        "pairs": [["I", "P"], ["S", "P"], ["L", "P"], ["S", "S2"]],
        # Curves trained for every pair; the cubic sparse one only for S->P (E2).
        "curves": [{"subspace": "sparse", "order": 2},
                   {"subspace": "sparse", "order": 3, "pairs": [["S", "P"]]},
                   {"subspace": "dense", "order": 2}],
        "presets": {
            # ~30-40 min on 2 cores, 3 seeds.
            "cpu": {
                "seeds": 3,
                "parts": [
                    {"name": "fashion_mnist_mlp_98", "dataset": "fashion_mnist",
                     "family": "mlp", "widths": [300, 100], "batchnorm": False,
                     "sparsity": 0.98, "distribution": "erk", "epochs": 8,
                     "subset": 10000, "eval_subset": 2000, "path_subset": 2000,
                     "bn_subset": 1000, "batch_size": 128,
                     "optimizer": {"name": "momentum", "learning_rate": 0.05},
                     "curve_epochs": 4, "curve_learning_rate": 0.001,
                     "alphas": 29, "curve_points": 21},
                    {"name": "cifar10_cnn_bn_90", "dataset": "cifar10", "family": "cnn",
                     "width": 16, "batchnorm": True, "sparsity": 0.9, "distribution": "erk",
                     "epochs": 6, "subset": 10000, "eval_subset": 2000, "path_subset": 500,
                     "bn_subset": 250, "batch_size": 128,
                     "optimizer": {"name": "momentum", "learning_rate": 0.05},
                     "curve_epochs": 1, "curve_learning_rate": 0.001,
                     "alphas": 15, "curve_points": 11},
                ],
            },
            # ResNet-50 on ImageNet at 80% (the paper's setting; GPU/TPU scale).
            "paper": {
                "seeds": 3,
                "parts": [
                    {"name": "imagenet_resnet50_80", "dataset": "imagenet2012",
                     "family": "resnet50", "sparsity": 0.8, "distribution": "uniform",
                     "epochs": 100, "subset": None, "eval_subset": None,
                     "path_subset": 10000, "bn_subset": 5000, "batch_size": 256,
                     "optimizer": {"name": "momentum", "learning_rate": 0.1},
                     "curve_epochs": 10, "curve_learning_rate": 0.01,
                     "alphas": 29, "curve_points": 21},
                ],
            },
        },
    },
}


def names():
    return list(STUDIES)


def get(name):
    if name not in STUDIES:
        raise ValueError(f"Unknown analysis study: name={name!r}. Known: {', '.join(STUDIES)}.")
    return STUDIES[name]


def resolve(name, preset="cpu", seeds=None):
    """The study dict with its preset merged in, and the seed list."""
    study = get(name)
    if preset not in study["presets"]:
        raise ValueError(f"`preset` must be one of {sorted(study['presets'])}; got {preset!r}.")
    config = dict(study, **study["presets"][preset], preset=preset)
    n = config["seeds"] if seeds is None else seeds
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`seeds` must be a positive integer; got seeds={seeds!r}.")
    return config, list(range(n))


# -- model families ----------------------------------------------------------------


def cnn(width, input_shape, num_classes, activation="relu", batchnorm=False):
    """A small CNN whose channels scale with `width`.

    `conv(w) -> conv(w) -> pool -> conv(2w) -> conv(2w) -> pool -> global
    average -> dense`, 3x3 kernels, each conv followed by [BatchNorm] and
    the activation.
    """
    import keras

    from keras_sparse.applications import activation_layer, default_initializer

    init = default_initializer(activation)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, channels in enumerate((width, width, 2 * width, 2 * width), start=1):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=not batchnorm,
                                kernel_initializer=init, name=f"conv{i}")(x)
        if batchnorm:
            x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = activation_layer(activation, name=f"conv{i}_act")(x)
        if i in (2, 4):
            x = keras.layers.MaxPooling2D(2, name=f"pool{i // 2}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"cnn{width}")


def family(task, info):
    """`build(width, activation, batchnorm)` of a task's model family."""
    import keras_sparse as ks

    shape, classes = info["input_shape"], info["num_classes"]
    if task["family"] == "mlp":
        return lambda w, activation, batchnorm: ks.models.mlp(
            (w,) * task["depth"], shape, classes, activation=activation, batchnorm=batchnorm)
    if task["family"] == "cnn":
        return lambda w, activation, batchnorm: cnn(w, shape, classes, activation, batchnorm)
    raise ValueError(f"Unknown model family {task['family']!r}; use 'mlp' or 'cnn'.")


def _loader(task):
    import keras_sparse as ks

    def data(augment, seed):
        load = dict(name=task["dataset"], batch_size=task["batch_size"], seed=seed)
        train = ks.data.load(split="train", shuffle=True, augment=augment,
                             subset=task["subset"], **load)
        test = ks.data.load(split="test", shuffle=False, subset=task["eval_subset"], **load)
        return train, test
    return data


# -- runners -----------------------------------------------------------------------


def run_scsdc(config, seeds, out, log=print):
    import keras_sparse as ks

    tasks = {}
    for task in config["tasks"]:
        info = ks.data.info(task["dataset"])
        tasks[task["name"]] = {"build": family(task, info), "data": _loader(task),
                               "dense_width": task["dense_width"],
                               "sparse_widths": task["sparse_widths"],
                               "dataset": task["dataset"]}
    return ks.analysis.sc_sdc(tasks, out, seeds=seeds, epochs=config["epochs"],
                              grid=config["grid"], learning_rates=config.get("learning_rates"),
                              l2=config.get("l2", 5e-4), egf_examples=config["egf_examples"],
                              log=log, verbose=0)


def _optimizer(spec):
    from keras_sparse.analysis.scsdc import make_optimizer

    return lambda: make_optimizer(spec["name"], spec["learning_rate"])


def _part_build(part, info):
    import keras_sparse as ks

    shape, classes = info["input_shape"], info["num_classes"]
    if part["family"] == "mlp":
        return lambda: ks.models.mlp(part["widths"], shape, classes,
                                     batchnorm=part["batchnorm"])
    if part["family"] == "cnn":
        return lambda: cnn(part["width"], shape, classes, batchnorm=part["batchnorm"])
    if part["family"] == "resnet50":
        return lambda: ks.models.resnet50(input_shape=shape, num_classes=classes)
    raise ValueError(f"Unknown model family {part['family']!r}.")


def _curve_runs(config, pair):
    for curve in config["curves"]:
        if "pairs" not in curve or list(pair) in [list(p) for p in curve["pairs"]]:
            yield curve, f"bezier_{curve['subspace']}_{curve['order']}"


def run_paths_cell(config, part, seed):
    """Solutions and paths of one part and seed; the JSON-ready result."""
    import keras
    import numpy as np

    import keras_sparse as ks

    keras.backend.clear_session()
    info = ks.data.info(part["dataset"])
    load = dict(name=part["dataset"], batch_size=part["batch_size"], seed=seed)
    train = ks.data.load(split="train", shuffle=True, subset=part["subset"], **load)
    test = ks.data.load(split="test", shuffle=False, subset=part["eval_subset"], **load)
    # Paths are measured on a fixed, unaugmented subset of the training set.
    probe = ks.data.load(split="train", shuffle=False, augment=False,
                         subset=part["path_subset"], **load).cache()
    bn_data = ks.data.load(split="train", shuffle=False, augment=False,
                           subset=part["bn_subset"], **dict(load, batch_size=part["bn_subset"]))
    sol = ks.analysis.evci_solutions(
        _part_build(part, info), train, part["sparsity"], part["epochs"],
        optimizer=_optimizer(part["optimizer"]), test_data=test, seed=seed,
        distribution=part["distribution"])
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
                eval_data=probe, bn_data=bn_data, num_points=part["curve_points"], seed=seed)
            entry[key] = {"points": out["points"], "barrier": out["barrier"]}
        result["paths"][f"{a}->{b}"] = entry
    return result


def run_paths(config, seeds, out, log=print):
    from keras_sparse.analysis import sweep

    parts = {p["name"]: p for p in config["parts"]}
    cells = [{"name": name} for name in parts]
    sweep.run_grid(cells, seeds, lambda cell, seed: run_paths_cell(config, parts[cell["name"]],
                                                                   seed),
                   out, headline="metrics.P.test_accuracy", log=log)
    return paths_report(config, out)


def paths_report(config, out):
    """Aggregates path runs: barriers over seeds, E1-E4 numbers; writes report.json + PNGs."""
    from keras_sparse.analysis import stats, sweep

    rows = sweep.load_results(out)
    parts = [p["name"] for p in config["parts"]]
    report = {}
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
        report[part] = entry
        plot_paths(runs, Path(out) / f"paths_{part}.png", f"{part} (mean of {len(runs)} seeds)")
    sweep.write_json(Path(out) / "report.json", report)
    return report


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


def run(name, preset="cpu", seeds=None, out=None, log=print):
    """Runs (or resumes) analysis study `name`; returns its report."""
    config, seed_list = resolve(name, preset, seeds)
    out = Path(out or Path("results") / name)
    out.mkdir(parents=True, exist_ok=True)
    runner = run_scsdc if config["kind"] == "scsdc" else run_paths
    return runner(config, seed_list, str(out), log=log)


def report(name, preset="cpu", out=None):
    """Aggregates the finished runs of study `name` without training."""
    config, _ = resolve(name, preset)
    out = str(out or Path("results") / name)
    if config["kind"] == "scsdc":
        from keras_sparse.analysis import scsdc

        result = scsdc.report(out)
        scsdc.plot_kendall(result, f"{out}/kendall.png")
        scsdc.plot_gaps(result, f"{out}/gap_heatmap.png")
        return result
    return paths_report(config, out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recipes.analysis_studies",
                                     description="Run the SC-SDC and loss-path studies.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the studies")
    for command in ("run", "report"):
        sub = commands.add_parser(command, help=f"{command} one study")
        sub.add_argument("name", choices=names())
        sub.add_argument("--preset", choices=("cpu", "paper"), default="cpu")
        sub.add_argument("--out", help="output directory (default results/NAME)")
        if command == "run":
            sub.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, study in STUDIES.items():
            print(f"{name:<15} {study['title']}  [presets: {', '.join(study['presets'])}]")
        return 0
    try:
        if args.command == "run":
            run(args.name, args.preset, args.seeds, args.out)
        else:
            report(args.name, args.preset, args.out)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"python -m recipes.analysis_studies: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
