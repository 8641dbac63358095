"""Runs a recipe: one training loop (`model.fit`) for every recipe config.

```python
from recipes import runner
summary = runner.run("quickstart", preset="cpu", out="runs/quickstart")
```
"""

import copy
import importlib
import inspect
import logging
import re
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

import keras_sparse as ks
from recipes import configs, executor, launch, plots

PRESETS = ("cpu", "paper", "converged")
_REPO = Path(__file__).resolve().parent.parent
# The repository's saved_models/ (editable install); else ./saved_models.
DEFAULT_EXPORT_ROOT = (_REPO if (_REPO / "setup.py").exists() else Path()) / "saved_models"
DEFAULTS = {
    "data": {"train_split": "train", "eval_split": "test", "subset": None,
             "eval_subset": None, "augment": None},
    "label_smoothing": 0.0,
    "validation_freq": 1,
    "method": None,
    "sparsity": 0.0,
    "distribution": "erk",
    "mask_init": "random",
    "sparsify": {},
    "egf": {"num_examples": 1000, "every": "epoch"},
    "baseline": None,
    "published": [],
    "budget": None,
    "notes": "",
    "presets": {},
}
_STEPS = re.compile(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?(total_steps|steps_per_epoch)\s*$")
_LOG = logging.getLogger("recipes")


def merge(base, overrides):
    """`base` updated by `overrides`: dicts merge key by key, the rest replaces."""
    result = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def resolve(name, preset="cpu", epochs=None, overrides=None, strict=True):
    """The full config of recipe `name` under `preset`, checked.

    Args:
        name: a recipe name (`configs.names()`).
        preset: "cpu" (reduced scale), "paper" (the paper's settings) or
            "converged" (the paper's protocol on the whole small dataset;
            only where the recipe or study defines it).
        epochs: overrides the preset's number of epochs.
        overrides: a dict merged last (e.g. a smaller `data.subset`).
        strict: refuse "converged" when the recipe does not define it (a
            study passes False: its own preset supplies the settings).
    """
    recipe = configs.get(name)
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {PRESETS}; got preset={preset!r}.")
    if strict and preset == "converged" and preset not in recipe.get("presets", {}):
        raise ValueError(f"Recipe {name!r} has no 'converged' preset; its presets: "
                         f"{['cpu', 'paper'] + sorted(set(recipe.get('presets', {})) - {'cpu', 'paper'})}. "
                         "The converged tier is defined by the studies "
                         "(python -m recipes study NAME --preset converged).")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"`epochs` must be a positive integer; got epochs={epochs!r}.")
    config = merge(DEFAULTS, recipe)
    config = merge(config, config.pop("presets").get(preset, {}))
    config = merge(config, overrides)
    if epochs is not None:
        config["epochs"] = epochs
    config["preset"] = preset
    config.setdefault("label", "dense" if config["method"] is None else "sparse")
    if config["baseline"]:
        config["baseline"].setdefault("label", "baseline")
    check(config)
    return config


def _lookup(path):
    """`"keras.optimizers.SGD"` or `"ks.schedules.PolynomialDecay"` -> object."""
    head, _, rest = path.partition(".")
    package = {"keras": "keras", "ks": "keras_sparse"}.get(head)
    module, _, attr = rest.rpartition(".")
    if package is None or not attr:
        raise ValueError(f"Object spec class={path!r} must be 'keras.<...>' or 'ks.<...>'.")
    try:
        return getattr(importlib.import_module(".".join(filter(None, [package, module]))), attr)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Object spec class={path!r} does not resolve: {error}.") from None


def _callback_class(name):
    available = sorted(n for n in dir(ks.callbacks)
                       if isinstance(getattr(ks.callbacks, n), type)
                       and issubclass(getattr(ks.callbacks, n), keras.callbacks.Callback))
    if name not in available:
        raise ValueError(f"Recipe method name={name!r} is not a ks.callbacks class; "
                         f"available: {available}.")
    return getattr(ks.callbacks, name)


def _specs(value):
    """Every `"class"` path inside a (nested) config value."""
    if isinstance(value, dict):
        found = [value["class"]] if "class" in value else []
        return found + [s for v in value.values() for s in _specs(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _specs(v)]
    return []


def baseline_config(config):
    """The config of the baseline arm: `config` updated by `config["baseline"]`.

    The baseline's `method` replaces the recipe's (a different method, e.g.
    `Static` against `KStarts`, must not inherit the other method's args);
    everything else merges as in `merge`.
    """
    baseline = merge(config, config["baseline"])
    if "method" in config["baseline"]:
        baseline["method"] = copy.deepcopy(config["baseline"]["method"])
    return baseline


def check(config):
    """Raises ValueError if a name in `config` does not resolve."""
    if config["baseline"] and config["baseline"]["label"] == config["label"]:
        raise ValueError(f"Recipe {config['name']!r}: the baseline needs a label other "
                         f"than {config['label']!r}.")
    for arm in [config] + ([baseline_config(config)] if config["baseline"] else []):
        if arm["model"]["name"] not in ks.applications.names():
            raise ValueError(f"Recipe {config['name']!r}: model {arm['model']['name']!r} "
                             f"is not in ks.applications.names() {ks.applications.names()}.")
        if arm["data"]["name"] not in ks.data.names():
            raise ValueError(f"Recipe {config['name']!r}: dataset {arm['data']['name']!r} "
                             f"is not in ks.data.names() {ks.data.names()}.")
        for method in _methods(arm):
            _callback_class(method["name"])
        if arm["method"] is not None:
            ks.pruning.get(arm["mask_init"])
        for path in _specs([arm["optimizer"], arm["method"]]):
            _lookup(path)


def _build(value, context):
    """Object specs become objects and step expressions integers."""
    if isinstance(value, dict) and "class" in value:
        return _lookup(value["class"])(**_build(value.get("args", {}), context))
    if isinstance(value, dict):
        return {k: _build(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_build(v, context) for v in value]
    if isinstance(value, str) and _STEPS.match(value):
        factor, unit = _STEPS.match(value).groups()
        steps = int(round(float(factor or 1.0) * context[unit]))
        # A positive fraction is at least one step (a tiny run's delta_t).
        return max(steps, 1) if float(factor or 1.0) > 0 else steps
    return value


# -- data ------------------------------------------------------------------------


def datasets(config, seed, data_dir=None, strategy=None):
    """The data of a resolved config: `(info, train, test, probe, steps_per_epoch)`.

    Args:
        config: a resolved recipe config (`resolve`); its `batch_size` is the
            global batch.
        seed: seeds the shuffling and augmentation of the training split.
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        strategy: a `tf.distribute.Strategy` or None (the pipelines are
            sharded per worker under a multi-worker one).

    Example:

    ```python
    info, train, test, probe, steps_per_epoch = datasets(resolve("quickstart"), seed=0)
    ```
    """
    data, batch = config["data"], config["batch_size"]
    info = ks.data.info(data["name"], data_dir=data_dir)
    load = dict(name=data["name"], batch_size=batch, seed=seed, data_dir=data_dir)
    train = ks.data.load(split=data["train_split"], shuffle=True, augment=data["augment"],
                         subset=data["subset"], **load)
    test = ks.data.load(split=data["eval_split"], shuffle=False, subset=data["eval_subset"], **load)
    # Fixed EGF set (also the data of data-driven mask_init): the first
    # examples of the training split, unaugmented, in batches that fit memory.
    probe = ks.data.load(split=data["train_split"], shuffle=False, augment=False,
                         subset=config["egf"]["num_examples"],
                         **dict(load, batch_size=min(batch, 256)))
    if config["label_smoothing"]:
        classes = info["num_classes"]
        one_hot = lambda x, y: (x, tf.one_hot(y, classes))  # noqa: E731
        train, test, probe = (d.map(one_hot) for d in (train, test, probe))
    # Under a strategy, Keras' fit splits each batch over the replicas.
    train, test = (launch.shard_per_worker(d, strategy) for d in (train, test))
    steps_per_epoch = int(train.cardinality())
    if steps_per_epoch < 1:
        raise ValueError(f"Dataset {data['name']!r} split {data['train_split']!r} has "
                         "unknown or zero length; set data.subset.")
    return info, train, test, probe, steps_per_epoch


# -- one arm -----------------------------------------------------------------------


def _tensorboard(log_dir):
    if not ks.utils.tensorboard.available():
        _LOG.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard).")
        return None
    return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)


def _methods(config):
    """The method specs of a config: None, one spec, or a list applied together."""
    method = config["method"]
    return [] if method is None else list(method) if isinstance(method, list) else [method]


def _method_callback(method, context, seed):
    cls = _callback_class(method["name"])
    args = _build(method.get("args", {}), context)
    takes_seed = any("seed" in inspect.signature(c.__init__).parameters
                     for c in cls.__mro__ if "__init__" in vars(c))
    if takes_seed and "seed" not in args:
        args["seed"] = seed
    return cls(**args)


def default_verbose():
    """Keras `fit` verbosity: a progress bar (1) on a terminal, else one line per epoch (2)."""
    return 1 if sys.stdout.isatty() else 2


def train_arm(config, label, data, out, seed, verbose, csv_name, strategy=None,
              jit_compile=None, callbacks=(), tensorboard=True):
    """Builds, trains and reports one model of the recipe; returns (model, result).

    The model, its masks, the mask-rule callbacks and the optimizer are made
    under `strategy.scope()` (`strategy` None: the default device);
    `jit_compile` None leaves Keras' "auto". `callbacks` are added after the
    method's (they see its logs); `tensorboard=False` skips the TensorBoard logs.
    """
    info, train, test, probe, steps_per_epoch = data
    context = {"steps_per_epoch": steps_per_epoch,
               "total_steps": steps_per_epoch * config["epochs"]}
    keras.utils.set_random_seed(seed)  # same initial weights in every arm
    extra_callbacks, callbacks = list(callbacks), []
    with launch.scope(strategy):
        model = ks.applications.get(config["model"]["name"], input_shape=info["input_shape"],
                              num_classes=info["num_classes"],
                              **config["model"].get("args", {}))
        if config["method"] is not None:
            extra = dict(config["sparsify"])
            start = extra.pop("start_sparsity", config["sparsity"])
            model = ks.sparsify(model, start, distribution=config["distribution"],
                                mask_init=config["mask_init"], data=probe, seed=seed, **extra)
            callbacks.extend(_method_callback(m, context, seed) for m in _methods(config))
        elif launch.spans_workers(strategy):
            # Keras' own fit cannot train across workers; SparseModel's can,
            # and with no sparse layer it trains the same dense model.
            model = ks.SparseModel(model.inputs, model.outputs, name=model.name)
        if config["label_smoothing"]:
            loss = keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config["label_smoothing"])
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=_build(config["optimizer"], context), loss=loss,
                      metrics=["accuracy"],
                      jit_compile="auto" if jit_compile is None else jit_compile)
    egf = config["egf"]
    callbacks.append(ks.callbacks.EGFLogger(probe, every=egf["every"],
                                            num_examples=egf["num_examples"],
                                            batch_size=min(config["batch_size"], 256)))
    callbacks.extend(extra_callbacks)
    board = _tensorboard(out / "tensorboard" / label) if tensorboard else None
    if board is not None:
        callbacks.append(board)
    callbacks.append(keras.callbacks.CSVLogger(str(out / csv_name)))

    print(f"-- {config['name']}: training {label} ({config['epochs']} epochs, seed {seed})",
          flush=True)
    start = time.perf_counter()
    # The pipeline shuffles (seeded); fit's own shuffle does not apply to it.
    history = model.fit(train, validation_data=test, epochs=config["epochs"], shuffle=False,
                        validation_freq=config["validation_freq"], callbacks=callbacks,
                        verbose=verbose)
    wall = time.perf_counter() - start
    rows = ks.sparsity_report(model)
    history = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    result = {
        "final": {k: v[-1] for k, v in history.items()},
        "history": history,
        "sparsity": rows[-1]["sparsity"],
        "active": rows[-1]["active"],
        "prunable": rows[-1]["total"],
        "layers": [dict(r, shape=list(r["shape"])) for r in rows[:-1]],
        "train_seconds": wall,
        # The strategy the model's variables live in (Keras records it at creation).
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "compute_dtype": model.dtype_policy.compute_dtype,
        "jit_compile": bool(model.jit_compile),
    }
    return model, result


# -- the run -----------------------------------------------------------------------


def preflight(name, preset="cpu", epochs=None, overrides=None, strategy="none",
              jit_compile=None, data_dir=None, download=False):
    """Checks a run before anything is written; returns the resolved config.

    Checks the config (`resolve`), that this machine can provide `strategy`
    (`recipes.launch.check_available`), `jit_compile`, and that the dataset
    is prepared (with `download=True` it is downloaded and prepared here).
    Arguments as in `run`.

    Raises:
        ValueError: a bad argument or config, or an unavailable strategy.
        FileNotFoundError: the dataset is not prepared and `download` is False.
    """
    launch.check_available(strategy)
    if jit_compile is not None and not isinstance(jit_compile, bool):
        raise ValueError(f"`jit_compile` must be True, False or None; got "
                         f"jit_compile={jit_compile!r}.")
    config = resolve(name, preset, epochs, overrides)
    # One pipeline feeds every arm, so the recipe's dataset is the only one.
    launch.ensure_prepared(config["data"]["name"], data_dir, download)
    return config


def run(name, preset="cpu", epochs=None, seed=0, out=None, export_root=None,
        overrides=None, verbose=None, strategy="none", mixed_precision=False,
        jit_compile=None, data_dir=None, download=False, commit=False, log=print):
    """Runs recipe `name` and writes its outputs.

    Writes into `out` (default `runs/NAME`): `metrics.csv` (and
    `metrics_<baseline>.csv`), `summary.json`, `tensorboard/<arm>/`, and the
    plots `curves.png`, `egf.png`, `sparsity.png`; exports the trained model
    with `ks.export.export_for_serving` to `<export_root>/NAME/<version>/`
    (default root: the repository's `saved_models/`). Prints a final table.

    Everything that can be checked is checked before anything is written:
    the config, the strategy (a TPU that is not there is an error), and the
    dataset (prepared, or downloaded with `download=True`).

    Args:
        name: recipe name (see `python -m recipes list`).
        preset: "cpu" or "paper".
        epochs: overrides the preset's epochs.
        seed: seeds weights, masks, data order and augmentation.
        out: output directory.
        export_root: root of the TF Serving export.
        overrides: dict merged into the config last (for reduced runs/tests).
        verbose: Keras `fit` verbosity; default 1 (progress bar) when stdout
            is a terminal, else 2 (one line per epoch, readable in logs).
        strategy: "none", "mirrored", "multiworker" or "tpu" (see
            `recipes.launch.make_strategy`). The recipe's `batch_size` is the
            global batch, split over the replicas.
        mixed_precision: train under the Keras `mixed_float16` policy (the
            previous policy is restored afterwards).
        jit_compile: True compiles with XLA, False never; None: Keras' "auto".
        data_dir: TFDS data directory (default `$TFDS_DATA_DIR`).
        download: let tensorflow-datasets download and prepare a missing
            dataset; otherwise a missing one raises `FileNotFoundError` whose
            message says how to prepare it.
        commit: git-commit `out` when the run has finished.
        log: called with the progress line.

    The run is the one-cell case of `recipes.executor` (the cell is the
    recipe, its directory `out`); unlike a study's runs it always trains,
    replacing a finished run in `out`.

    Returns:
        The summary dict also written to `summary.json`.

    Raises:
        ValueError: a bad argument or config, or a strategy this machine
            cannot provide.
        FileNotFoundError: the dataset is not prepared and `download` is False.

    Example:
        >>> summary = run("quickstart", epochs=1, strategy="mirrored")  # doctest: +SKIP
    """
    if verbose is None:
        verbose = default_verbose()
    config = preflight(name, preset, epochs, overrides, strategy=strategy,
                       jit_compile=jit_compile, data_dir=data_dir, download=download)
    out = Path(out or Path("runs") / name)
    launched = dict(preset=preset, seed=seed, export_root=export_root, verbose=verbose,
                    strategy=strategy, mixed_precision=mixed_precision,
                    jit_compile=jit_compile, data_dir=data_dir)
    headline = f"arms.{config['label']}.final.val_accuracy"
    [done] = executor.execute([{"name": name}], [seed],
                              lambda cell, seed: _train(config, out, **launched),
                              lambda cell, seed: out, headline=headline, log=log,
                              commit=out if commit else None, resume=False)
    print(table(done["result"]))
    return done["result"]


def _train(config, out, preset, seed, export_root, verbose, strategy, mixed_precision,
           jit_compile, data_dir):
    """Trains every arm of a resolved recipe into `out`; returns the summary."""
    start = time.perf_counter()
    name = config["name"]
    distribute = launch.make_strategy(strategy)
    with launch.precision(mixed_precision):
        data = datasets(config, seed, data_dir, distribute)
        out.mkdir(parents=True, exist_ok=True)
        export_root = Path(export_root or DEFAULT_EXPORT_ROOT)
        arms = {}
        train = dict(strategy=distribute, jit_compile=jit_compile)
        model, arms[config["label"]] = train_arm(config, config["label"], data, out, seed,
                                                 verbose, "metrics.csv", **train)
        export = ks.export.export_for_serving(model, str(export_root / name))
        if config["baseline"]:
            baseline = baseline_config(config)
            label = baseline["label"]
            _, arms[label] = train_arm(baseline, label, data, out, seed, verbose,
                                       f"metrics_{label}.csv", **train)

    plots.curves({k: a["history"] for k, a in arms.items()}, out / "curves.png", name)
    plots.gradient_flow({k: a["history"] for k, a in arms.items()}, out / "egf.png", name)
    plots.layer_sparsity(arms[config["label"]]["layers"], out / "sparsity.png",
                         f"{name}: {config['label']}")
    return {
        "recipe": name,
        "preset": preset,
        "seed": seed,
        "epochs": config["epochs"],
        "config": config,
        "launch": {"strategy": strategy,
                   "replicas": distribute.num_replicas_in_sync if distribute else 1,
                   "mixed_precision": bool(mixed_precision), "jit_compile": jit_compile,
                   "data_dir": launch.data_dir_of(data_dir), "global_batch_size":
                   config["batch_size"]},
        "arms": arms,
        "published": config["published"],
        "export": str(export),
        "wall_seconds": time.perf_counter() - start,
    }


def table(summary):
    """The final comparison table of a run, as text."""
    header = ("model", "test acc", "sparsity", "active weights", "EGF (p=2)", "grad L2", "train s")
    rows = [header]
    for label, arm in summary["arms"].items():
        final = arm["final"]
        rows.append((label, f"{final.get('val_accuracy', float('nan')):.4f}",
                     f"{arm['sparsity']:.3f}", f"{arm['active']:,} / {arm['prunable']:,}",
                     f"{final.get('egf_l2', float('nan')):.3e}",
                     f"{final.get('grad_norm_l2', float('nan')):.3e}",
                     f"{arm['train_seconds']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{summary['recipe']} (preset {summary['preset']}, {summary['epochs']} epochs, "
             f"seed {summary['seed']}, {summary['wall_seconds']:.0f} s)"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    quoted = [ref for ref in summary["published"] if ref["value"] is not None]
    for ref in quoted:
        lines.append(f"published: {ref['setting']}: {ref['metric']} {ref['value']} "
                     f"({ref['source']})")
    if len(quoted) < len(summary["published"]):
        lines.append("published: no checked number for this setting (see summary.json)")
    lines.append(f"exported: {summary['export']}")
    return "\n".join(lines)
