"""The analysis papers' studies as data: SC-SDC sweeps (Tessera 2021) and paths (Evci 2019).

```
python -m recipes study tessera_scsdc [--preset P] [--seeds N] [--cells TASKS] [--out DIR]
python -m recipes study evci_paths [--preset P] [--seeds N] [--cells PARTS] [--out DIR]
python -m recipes study NAME [--preset P] --aggregate-only   # report and plots only
# P: cpu (default), converged or paper
```

Both run through `recipes.executor`, so they are resumable (one
`summary.json` per run under `<out>/<cell>/seed_<s>/`; a rerun skips
finished runs). The runs and reports are in `recipes.scsdc_study` and
`recipes.paths_study`. Outputs go to `results/<NAME>/` by default.
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
  `lr_sweep.json` with every result, the rate picked and why): 4 rates per
  optimizer, 3x apart, one dense/sparse pair (ReLU, no regularizer, seed 0)
  trained 2 epochs on `train[:50000]` and scored on the held-out
  `train[50000:]`; the rate with the best mean of dense and sparse
  held-out accuracy is used for both networks. A pick at the edge of the
  candidates is flagged. (The first sweep had 3 rates and picked the
  highest for every optimizer; a fourth, 3x higher, was added before any
  grid run finished.)
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
  runs x 8 epochs ~1.8 h, plus the sweep (16 pairs x 2 epochs on 50,000
  images) ~8 min: **about 2 hours**. In those
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

from pathlib import Path

from recipes import executor, launch, paths_study, scsdc_study

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
                    "candidates": {"sgd": [0.03, 0.1, 0.3, 1.0],
                                   "momentum": [0.01, 0.03, 0.1, 0.3],
                                   "adam": [3e-4, 1e-3, 3e-3, 1e-2],
                                   "rmsprop": [1e-4, 3e-4, 1e-3, 3e-3]},
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
    """The analysis study names."""
    return list(STUDIES)


def get(name):
    """The analysis study `name` as defined (every preset)."""
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


def cell_names(config):
    """What `--cells` selects in a resolved preset: its task names (SC-SDC) or parts (paths)."""
    return (scsdc_study.task_names if config["kind"] == "scsdc" else paths_study.part_names)(config)


def plan(name, preset="cpu", seeds=None, cells=None):
    """Checks a study and a selection of its cells; returns `(config, seeds)`; writes nothing.

    Args:
        name, preset, seeds: as in `resolve`.
        cells: names of tasks (SC-SDC) or parts (paths) to run; None: all.

    Raises:
        ValueError: as `resolve`, or an unknown cell (naming the known ones).
    """
    config, seed_list = resolve(name, preset, seeds)
    known = cell_names(config)
    unknown = [c for c in cells or [] if c not in known]
    if unknown:
        raise ValueError(f"The analysis study {name!r} ({preset}) has no cell {unknown[0]!r}; "
                         f"its cells ({'tasks' if config['kind'] == 'scsdc' else 'parts'}): "
                         f"{', '.join(known)}.")
    return config, seed_list


def preflight(name, preset="cpu", seeds=None, cells=None, data_dir=None, download=False):
    """`plan`, and checks that the selected cells' datasets are prepared; returns `plan`'s.

    Raises:
        ValueError: see `plan`.
        FileNotFoundError: a dataset is not prepared and `download` is False
            (with `download=True` it is downloaded and prepared here).
    """
    config, seed_list = plan(name, preset, seeds, cells)
    for dataset in datasets(config, cells):
        launch.ensure_prepared(dataset, data_dir, download)
    return config, seed_list


def datasets(config, cells=None):
    """The TFDS datasets the selected cells of a resolved preset read."""
    study = scsdc_study if config["kind"] == "scsdc" else paths_study
    return study.datasets(config, cells)


def run(name, preset="cpu", seeds=None, out=None, log=print, cells=None, data_dir=None,
        download=False, commit=False):
    """Runs (or resumes) analysis study `name`; returns its report.

    Args:
        name: one of `names()`.
        preset: one of the study's presets.
        seeds: number of seeds (default: the preset's).
        out: output directory (default `results/NAME`, or
            `results/NAME/PRESET` for a preset other than "cpu").
        log: called with one progress line per finished run.
        cells: names of the tasks (SC-SDC) or parts (paths) to run; None: all.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        download: let tensorflow-datasets download and prepare a missing dataset.
        commit: git-commit `out` after every finished run.

    Raises:
        ValueError: see `plan`; FileNotFoundError: a dataset is not prepared
            and `download` is False. Both before anything is written.

    Example:

    ```python
    run("evci_paths", "cpu", seeds=1, cells=["fashion_mnist_mlp_98"], commit=True)
    ```
    """
    config, seed_list = preflight(name, preset, seeds, cells, data_dir, download)
    out = Path(out or executor.default_out(name, preset))
    out.mkdir(parents=True, exist_ok=True)
    options = dict(log=log, data_dir=data_dir, commit=out if commit else None)
    if config["kind"] == "scsdc":
        return scsdc_study.run(config, seed_list, str(out), tasks=cells, **options)
    return paths_study.run(config, seed_list, str(out), parts=cells, **options)


def report(name, preset="cpu", out=None):
    """Aggregates the finished runs of study `name` without training."""
    config, _ = resolve(name, preset)
    out = str(out or executor.default_out(name, preset))
    if config["kind"] == "scsdc":
        return scsdc_study.report(config, out)
    return paths_study.report(config, out)
