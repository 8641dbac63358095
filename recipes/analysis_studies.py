"""The analysis papers' studies as data: SC-SDC sweeps (Tessera 2021) and paths (Evci 2019).

```
python -m recipes.analysis_studies list
python -m recipes.analysis_studies run tessera_scsdc [--preset P] [--seeds N] [--out DIR]
python -m recipes.analysis_studies run evci_paths [--preset P] [--seeds N] [--out DIR]
python -m recipes.analysis_studies report NAME [--preset P] [--out DIR]  # aggregate + plots only
# P: cpu (default), converged or paper
```

Both are resumable (one `summary.json` per run under `<out>/<cell>/seed_<s>/`;
a rerun skips finished runs). Outputs go to `results/<NAME>/` by default.
A study without the preset asked for is refused before anything is written,
with the presets it has.

Tiers: `cpu` is a quick smoke test of the ordering (10,000 examples, 3-8
epochs); `converged` trains on the whole training set with the paper's
optimizer family and a decaying learning rate until the test accuracy of
every network has stopped moving; `paper` is the paper's scale.

## The converged tier

Convergence: every trained network records its test accuracy after each
epoch, and `ks.analysis.stats.plateau` checks it: converged when the
largest and smallest value over the last 20% of the epochs (at least 2)
differ by less than 0.3 points. `report.json` says, per run and network,
whether it did (`"convergence"`), so a reader can check the curves.

**tessera_scsdc, converged**: Fashion-MNIST, all 60,000 training and
10,000 test images, batch 128; dense MLP 100-100 against the same-capacity
sparse MLP 400-400 (random static masks, matched per layer); 3 seeds.
- Optimizers: the paper's four (SGD, SGD + momentum 0.9, Adam, RMSprop),
  every network 8 epochs with cosine decay of the rate to 0
  (interpretation: the paper's epochs and schedule were not checked; a
  decaying rate is what lets a fixed budget per cell reach a plateau).
- Learning rate per optimizer: a reported sweep (`lr_sweep`, written to
  `lr_sweep.json` with every result, the rate picked and why): 3 rates per
  optimizer, 3x apart, one dense/sparse pair (ReLU, no regularizer, seed 0)
  trained 2 epochs on `train[:50000]` and scored on the held-out
  `train[50000:]`; the rate with the best mean of dense and sparse
  held-out accuracy is used for both networks. A pick at the edge of the
  candidates is flagged.
- Grid, most important first (a run cut short by the budget keeps the
  first cells): every optimizer x ReLU x {none, BatchNorm} (T2's dense
  defaults, T3's BatchNorm); {SGD, momentum} x {Swish, PReLU} (T3's
  activations with SGD); {SGD, Adam} x ReLU x {L2, augmentation} (T3's
  EWMA sensitivity): 16 configurations, 48 runs, 96 networks.
- T1 statistics: besides Kendall's tau of each measure, `kendall_differences`
  bootstraps tau(EGF p=2) - tau(other) for ||g||_2, ||g||_1 and EGF p=1,
  resampling configurations (a configuration's seeds and both its networks
  stay together; `stats.kendall_bootstrap`): signed and |tau| differences,
  95% percentile intervals, two-sided p-values.
- Scaled against the paper's sweep: one data set and task (no CIFAR), one
  sparse width, 16 of the 80 configurations (no Tanh or SELU; Swish and
  PReLU only with the SGD family; L2 and augmentation only with SGD and
  Adam), 8 epochs. Seeds are not reduced.
- Wall time, estimated from timed micro runs here: a dense + sparse pair
  takes ~17 s per epoch on the whole training set (Adam, 8 epochs, 140 s,
  measured with one other job on the 2 cores; SGD, 4 epochs: 20 CPU-s
  per epoch, 37 s of wall time with two other studies running), so 48
  runs x 8 epochs ~1.8 h, plus the sweep (12 pairs x 2 epochs on 50,000
  images) ~6 min: **about 2 hours**. In those
  timing runs the dense network met the criterion (Adam 1e-3, 8 epochs:
  0.8904, last-20% spread 0.0013; SGD 0.1, 4 epochs: 0.8743, 0.0023).
- T1's sign: the pages corpus of the search tool holds the paper's ICLR
  2021 submission ("KEEP THE GRADIENTS FLOWING: USING GRADIENT FLOW TO
  STUDY SPARSE NETWORK OPTIMIZATION", Anonymous) and the arXiv text, but it
  returns only the opening of each page (abstract and the start of the
  introduction); the Kendall-tau results come later and could not be read.
  The opening gives no sign: the arXiv abstract says EGF "better correlates
  to performance in sparse networks", the first author's announcement
  thread "We show EGF correlates better, than other GF measures, to ...
  performance". So the sign is not verified: read T1 as a claim about
  strength (|tau|, `abs_diff` in `kendall_differences`) and report the
  sign beside it without calling it reproduced.

**evci_paths, converged**: the Fashion-MNIST MLP part only (LeNet-300-100,
98% sparse, ERK), all 60,000 training and 10,000 test images, batch 128;
3 seeds.
- Solutions: P (gradual magnitude pruning from dense, cubic, to 98% over
  the first 75% of training), S, S' and L, each trained 20 epochs with SGD
  + momentum 0.9 (the optimizer family of the paper), rate 0.05 divided by
  10 at 50% and again at 75% of training (interpretation: a step schedule
  like the paper's ImageNet one; rate and epochs chosen here). Each
  solution's test-accuracy curve and its convergence verdict are recorded.
- Paths: linear paths on 10,000 fixed training images (29 points);
  Bezier curves trained 10 epochs on the whole training set (Adam 1e-3,
  constant, so the curve measured after k epochs is the curve a k-epoch
  run gives) and measured after 2, 5 and 10 epochs in the same run
  (`barrier_checkpoints`, and a paired test of the barrier after 10 vs 2
  epochs per curve: does the sparse barrier shrink with more training,
  E2?). Curves: sparse quadratic for S->P, L->P and S->S', sparse cubic
  for S->P, dense quadratic for S->P, L->P and S->S' (none for I->P: E1
  is about its linear path).
- Scaled: no CIFAR part; the MLP instead of the paper's ResNet-50 on
  ImageNet. Seeds are not reduced.
- Wall time, estimated from a timed micro run here (1 epoch per solution
  and 1 curve epoch, 225 CPU-s: solutions 86, curves 117, linear paths
  21): per seed ~4 x 20 epochs x ~12 s + 7 curves x (10 epochs x ~9 s +
  3 measurements x ~4 s) + ~20 s ~ 29 min, so **about 1.5 hours** for 3
  seeds.

Both converged studies together: about 3.5 hours on an otherwise idle
machine (the estimates take CPU time, or wall time measured beside one
other job, as the wall time); running them beside other studies roughly
doubles each.
"""

import argparse
import sys
from pathlib import Path

TESSERA = ("Tessera, Hooker, Rosman 2021, Keep the Gradients Flowing: Using Gradient Flow "
           "to Study Sparse Network Optimization, arXiv:2102.01670")
EVCI = ("Evci, Pedregosa, Gomez, Elsen 2019, The Difficulty of Training Sparse Neural "
        "Networks, arXiv:1906.10732")

PRESETS = ("cpu", "converged", "paper")
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
            # The converged tier (see the module docstring): all 60,000
            # training and 10,000 test images, 3 seeds, every network trained
            # 8 epochs with cosine decay of a rate picked per optimizer by a
            # reported sweep; 16 configurations, most important first.
            "converged": {
                "seeds": 3, "epochs": 8, "schedule": "cosine", "egf_examples": 1000,
                "bootstrap_resamples": 2000,
                "tasks": [dict(_FMNIST_MLP, sparse_widths=[400])],
                "grid": [
                    # T2's dense defaults and T3's BatchNorm, every optimizer.
                    {"activation": ["relu"], "regularizer": ["none", "batchnorm"]},
                    # T3: Swish and PReLU with SGD (plain and momentum).
                    {"optimizer": ["sgd", "momentum"], "activation": ["swish", "prelu"],
                     "regularizer": ["none"]},
                    # T3: EWMA (Adam) vs SGD under L2 and augmentation.
                    {"optimizer": ["sgd", "adam"], "activation": ["relu"],
                     "regularizer": ["l2", "augmentation"]},
                ],
                "lr_sweep": {
                    "candidates": {"sgd": [0.03, 0.1, 0.3], "momentum": [0.01, 0.03, 0.1],
                                   "adam": [3e-4, 1e-3, 3e-3], "rmsprop": [1e-4, 3e-4, 1e-3]},
                    "epochs": 2, "train_split": "train[:50000]", "eval_split": "train[50000:]",
                    "activation": "relu", "regularizer": "none", "seed": 0,
                },
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
            # The converged tier (see the module docstring): the Fashion-MNIST
            # MLP part on all 60,000 images, SGD+momentum with step decay,
            # Bezier barriers measured after 2, 5 and 10 curve epochs.
            "converged": {
                "seeds": 3,
                # Every pair but I->P gets its curves (E1 is about the linear path).
                "curves": [{"subspace": "sparse", "order": 2,
                            "pairs": [["S", "P"], ["L", "P"], ["S", "S2"]]},
                           {"subspace": "sparse", "order": 3, "pairs": [["S", "P"]]},
                           {"subspace": "dense", "order": 2,
                            "pairs": [["S", "P"], ["L", "P"], ["S", "S2"]]}],
                "parts": [
                    {"name": "fashion_mnist_mlp_98", "dataset": "fashion_mnist",
                     "family": "mlp", "widths": [300, 100], "batchnorm": False,
                     "sparsity": 0.98, "distribution": "erk", "epochs": 20,
                     "subset": None, "eval_subset": None, "path_subset": 10000,
                     "bn_subset": 1000, "batch_size": 128, "curves": True,
                     "optimizer": {"name": "momentum", "learning_rate": 0.05,
                                   "schedule": "step"},
                     "curve_epochs": 10, "curve_checkpoints": [2, 5, 10],
                     "curve_learning_rate": 0.001, "alphas": 29, "curve_points": 21},
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
    """The study dict with its preset merged in, and the seed list.

    Args:
        name: one of `names()`.
        preset: one of the study's presets (`PRESETS` lists the tiers; a
            study need not have all of them).
        seeds: number of seeds (default: the preset's).

    Raises:
        ValueError: an unknown study, a preset the study does not have
            (the message names the ones it has), or a bad `seeds`.

    Example:

    ```python
    config, seeds = resolve("evci_paths", "converged")
    config["parts"][0]["epochs"], seeds
    ```
    """
    study = get(name)
    if preset not in study["presets"]:
        raise ValueError(f"The analysis study {name!r} has no preset {preset!r}; its presets: "
                         f"{', '.join(study['presets'])}.")
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
        return lambda w, activation, batchnorm: ks.applications.mlp(
            (w,) * task["depth"], shape, classes, activation=activation, batchnorm=batchnorm)
    if task["family"] == "cnn":
        return lambda w, activation, batchnorm: cnn(w, shape, classes, activation, batchnorm)
    raise ValueError(f"Unknown model family {task['family']!r}; use 'mlp' or 'cnn'.")


def _loader(task):
    import keras_sparse as ks

    def data(augment, seed):
        load = dict(name=task["dataset"], batch_size=task["batch_size"], seed=seed)
        train = ks.data.load(split=task.get("train_split", "train"), shuffle=True,
                             augment=augment, subset=task["subset"], **load)
        test = ks.data.load(split=task.get("eval_split", "test"), shuffle=False, augment=False,
                            subset=task["eval_subset"], **load)
        return train, test
    return data


# -- runners -----------------------------------------------------------------------


def _scsdc_task(task):
    import keras_sparse as ks

    info = ks.data.info(task["dataset"])
    return {"build": family(task, info), "data": _loader(task),
            "dense_width": task["dense_width"], "sparse_widths": task["sparse_widths"],
            "dataset": task["dataset"]}


def lr_sweep(config, out, log=print):
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
    from keras_sparse.analysis import scsdc, sweep

    spec = config["lr_sweep"]
    task = dict(config["tasks"][0], train_split=spec["train_split"],
                eval_split=spec["eval_split"], subset=spec.get("subset"),
                eval_subset=spec.get("eval_subset"))
    task = dict(task, sparse_widths=task["sparse_widths"][:1])
    built = _scsdc_task(task)
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

    runs = sweep.run_grid(cells, [spec["seed"]], run_cell, Path(out) / "lr_sweep",
                          headline="sparse.final.val_accuracy", log=log)
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


def run_scsdc(config, seeds, out, log=print):
    import keras_sparse as ks

    tasks = {task["name"]: _scsdc_task(task) for task in config["tasks"]}
    rates = config.get("learning_rates")
    if config.get("lr_sweep"):
        rates = dict(rates or {}, **lr_sweep(config, out, log)["picked"])
    result = ks.analysis.sc_sdc(tasks, out, seeds=seeds, epochs=config["epochs"],
                                grid=config["grid"], learning_rates=rates,
                                l2=config.get("l2", 5e-4), egf_examples=config["egf_examples"],
                                log=log, verbose=0, schedule=config.get("schedule", "constant"),
                                bootstrap_resamples=config.get("bootstrap_resamples", 2000))
    if config.get("lr_sweep"):
        result["lr_sweep"] = str(Path(out) / "lr_sweep.json")
    return result


def _optimizer(spec, total_steps=None):
    """A factory of fresh optimizers from `{"name", "learning_rate"[, "schedule"]}`."""
    from keras_sparse.analysis.scsdc import learning_rate_schedule, make_optimizer

    kind = spec.get("schedule", "constant")
    return lambda: make_optimizer(spec["name"], learning_rate_schedule(
        kind, spec["learning_rate"], total_steps))


def _part_build(part, info):
    import keras_sparse as ks

    shape, classes = info["input_shape"], info["num_classes"]
    if part["family"] == "mlp":
        return lambda: ks.applications.mlp(part["widths"], shape, classes,
                                     batchnorm=part["batchnorm"])
    if part["family"] == "cnn":
        return lambda: cnn(part["width"], shape, classes, batchnorm=part["batchnorm"])
    if part["family"] == "resnet50":
        return lambda: ks.applications.resnet50(input_shape=shape, num_classes=classes)
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
    total_steps = int(train.cardinality()) * part["epochs"]
    sol = ks.analysis.evci_solutions(
        _part_build(part, info), train, part["sparsity"], part["epochs"],
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
        report[part] = entry
        plot_paths(runs, Path(out) / f"paths_{part}.png", f"{part} (mean of {len(runs)} seeds)")
    sweep.write_json(Path(out) / "report.json", report)
    return report


def _barrier_at(run, pair, kind, epoch):
    return next(c["barrier"] for c in run["paths"][pair][kind]["checkpoints"]
                if c["epoch"] == epoch)


def _checkpoint_barriers(runs):
    """`{pair: {curve: {epoch: summary over seeds}}}` for curves measured at checkpoints."""
    from keras_sparse.analysis import stats

    found = {}
    for pair, kinds in runs[0]["paths"].items():
        for kind, path in kinds.items():
            for c in path.get("checkpoints", []):
                found.setdefault(pair, {}).setdefault(kind, {})[str(c["epoch"])] = \
                    stats.summarize([_barrier_at(r, pair, kind, c["epoch"]) for r in runs])
    return found


def _solution_convergence(runs, fraction=0.2, tolerance=0.003):
    """Per solution: did its per-epoch test accuracy plateau (`stats.plateau`), per seed?"""
    from keras_sparse.analysis import stats

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


def default_out(name, preset="cpu"):
    """`results/NAME` for the cpu preset, `results/NAME/PRESET` otherwise."""
    return Path("results") / name if preset == "cpu" else Path("results") / name / preset


def run(name, preset="cpu", seeds=None, out=None, log=print):
    """Runs (or resumes) analysis study `name`; returns its report.

    `log` receives one progress line per finished run (e.g.
    `recipes.study.git_committer(out)` to commit each at once).
    """
    config, seed_list = resolve(name, preset, seeds)
    out = Path(out or default_out(name, preset))
    out.mkdir(parents=True, exist_ok=True)
    runner = run_scsdc if config["kind"] == "scsdc" else run_paths
    return runner(config, seed_list, str(out), log=log)


def report(name, preset="cpu", out=None):
    """Aggregates the finished runs of study `name` without training."""
    config, _ = resolve(name, preset)
    out = str(out or default_out(name, preset))
    if config["kind"] == "scsdc":
        from keras_sparse.analysis import scsdc

        result = scsdc.report(out, bootstrap_resamples=config.get("bootstrap_resamples", 2000))
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
        sub.add_argument("--preset", choices=PRESETS, default="cpu",
                         help="cpu: quick; converged: the whole training set, trained to a "
                              "plateau; paper: the paper's scale")
        sub.add_argument("--out", help="output directory (default results/NAME)")
        if command == "run":
            sub.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, study in STUDIES.items():
            print(f"{name:<15} {study['title']}  [presets: {', '.join(study['presets'])}]")
        return 0
    try:
        resolve(args.name, args.preset, getattr(args, "seeds", None))  # before anything is written
        if args.command == "run":
            run(args.name, args.preset, args.seeds, args.out)
        else:
            report(args.name, args.preset, args.out)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"python -m recipes.analysis_studies: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
