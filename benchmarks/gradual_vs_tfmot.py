"""Gradual magnitude pruning: each framework's overhead over its own dense step.

keras_sparse (`GradualMagnitudePruning` on Keras 3) is compared with plain
Keras 3, and tfmot's `prune_low_magnitude` (under tf_keras, see
`tfmot_worker`) with plain tf_keras, in the same run: both prune with the
same dense-shaped matmuls, so what each adds to its own dense step is the
fair yardstick. Every side trains LeNet-300-100 on Fashion-MNIST in its own
process, from the same initial weights, on the same batches in the same
order, with the same SGD settings and the same `PolynomialDecay` schedule
(uniform per-layer sparsity, as tfmot prunes every layer to the schedule's
value). Each side runs one ordinary `fit`; the parent alternates them block
by block (`harness.paced`). Run as a module, this is the keras_sparse worker.
"""

import contextlib
import importlib.util
import json
import math
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_sparse as ks
from benchmarks import harness, workloads

NAME = "gradual_vs_tfmot"
TITLE = "Gradual magnitude pruning: keras_sparse over plain Keras, tfmot over plain tf_keras"
TARGET = 1.05
TARGETS = [dict(name="keras_sparse / Keras dense step", target=TARGET, op="<=",
                description="median step time during gradual pruning over the plain Keras step")]
MODEL = "lenet_300_100"
DATASET = "fashion_mnist"
_state = {}


# -- the keras_sparse worker ------------------------------------------------------


def setup(workdir, prune=True, callback=True):
    """Builds the model; `prune=False` gives the plain Keras reference.

    `callback=False` (profile only) is the sparse model with its masks all
    ones and no pruning callback: the sparse train step alone.
    """
    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    arrays = np.load(workdir / "data.npz")
    dense = workloads.build(MODEL)
    weights = np.load(workdir / "initial_weights.npz")
    dense.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    model = workloads.compile_model(ks.sparsify(dense, 0.0) if prune else dense)  # all active
    schedule = ks.schedules.PolynomialDecay(
        config["initial_sparsity"], config["final_sparsity"], begin_step=config["begin_step"],
        end_step=config["end_step"], frequency=config["frequency"],
    )
    callbacks = ([ks.callbacks.GradualMagnitudePruning(schedule, distribution="uniform")]
                 if prune and callback else [])
    _state.update(config=config, arrays=arrays, model=model, callbacks=callbacks)
    return {"framework": f"keras_sparse {ks.__version__}, keras {keras.__version__}"}


def train():
    config, arrays, model = _state["config"], _state["arrays"], _state["model"]
    dataset = workloads.batches(arrays["x_train"], arrays["y_train"], config["batch_size"])
    pacer = harness.paced(keras.callbacks.Callback, config["block_steps"])()
    model.fit(dataset, epochs=1, steps_per_epoch=config["total_steps"], verbose=0,
              callbacks=_state["callbacks"] + [pacer])
    return {"seconds": pacer.last_seconds, "step": config["total_steps"]}


def evaluate():
    arrays, model = _state["arrays"], _state["model"]
    _, accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=1000, verbose=0)
    sparsity = ks.sparsity_report(model)[-1]["sparsity"] if isinstance(model, ks.SparseModel) else 0.0
    return {"accuracy": float(accuracy), "sparsity": sparsity}


# -- the parent ---------------------------------------------------------------------


def _check_available():
    if getattr(ks.callbacks, "GradualMagnitudePruning", None) is None:
        raise harness.NotAvailable("ks.callbacks.GradualMagnitudePruning has not landed")
    for package in ("tensorflow_model_optimization", "tf_keras"):
        if importlib.util.find_spec(package) is None:
            raise harness.NotAvailable(f"{package} is not installed (pip install -e '.[tfmot]')")


def _write_workdir(workdir, settings):
    batch_size = settings.pick(128, 128, 32)
    # Whole batches only, so both sides see the same batch at every step.
    steps_per_epoch = settings.pick(60000, 60000, 256) // batch_size
    x, y, train_source = workloads.arrays(DATASET, steps_per_epoch * batch_size)
    x_test, y_test, test_source = workloads.arrays(DATASET, settings.pick(10000, 10000, 256), "test")
    np.savez(workdir / "data.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    weights = workloads.build(MODEL).get_weights()
    np.savez(workdir / "initial_weights.npz", **{f"w{i}": w for i, w in enumerate(weights)})
    block = settings.pick(100, 100, 5)
    config = dict(
        batch_size=batch_size,
        total_steps=settings.pick(3000, 600, 20),
        block_steps=block,
        initial_sparsity=0.0,
        final_sparsity=0.9,
        begin_step=0,
        end_step=settings.pick(2000, 400, 10),
        frequency=block,
        optimizer=workloads.OPTIMIZER,
        num_classes=workloads.NUM_CLASSES,
    )
    (workdir / "config.json").write_text(json.dumps(config))
    return config, {"train": train_source, "test": test_source}


# side -> (worker module, setup arguments); the dense sides are the floor each
# framework starts from; "keras_sparse, no callback" (profile) is the sparse
# train step alone, so the report can say where pruning time goes.
AGAIN = "Keras dense, again"
_SIDES = {  # neighbours in a round are the compared pairs (the order alternates)
    "keras_sparse": ("benchmarks.gradual_vs_tfmot", dict(prune=True)),
    "Keras dense": ("benchmarks.gradual_vs_tfmot", dict(prune=False)),
    # A/A control: a second plain Keras worker; its ratio to "Keras dense" is the run's noise.
    AGAIN: ("benchmarks.gradual_vs_tfmot", dict(prune=False)),
    "keras_sparse, no callback": ("benchmarks.gradual_vs_tfmot", dict(prune=True, callback=False)),
    "tfmot": ("benchmarks.tfmot_worker", dict(prune=True)),
    "tf_keras dense": ("benchmarks.tfmot_worker", dict(prune=False)),
}


def _update_blocks(config, blocks):
    """Recorded blocks (0-based, warm-up excluded) during which keras_sparse updates masks.

    The mask for pruning step `t` is applied at the end of step `t - 1`.
    """
    steps = range(config["begin_step"], config["end_step"] + 1, config["frequency"])
    touched = {(t - 1) // config["block_steps"] for t in steps if t >= 1}
    return [b - 1 for b in range(1, blocks) if b in touched]


def run(settings):
    _check_available()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        config, data = _write_workdir(workdir, settings)
        workers, frameworks = {}, {}
        for side, (module, arguments) in _SIDES.items():
            env = {"TF_USE_LEGACY_KERAS": "1"} if module.endswith("tfmot_worker") else {}
            workers[side] = stack.enter_context(harness.Worker(module, env=env))
            frameworks[side] = workers[side].request("setup", workdir=str(workdir),
                                                     **arguments)["framework"]
        blocks = config["total_steps"] // config["block_steps"]
        # The first block (tracing) is the warm-up.
        times = harness.interleaved({side: harness.blocks(w) for side, w in workers.items()},
                                    repeats=blocks - 1, warmup=1)
        final = {side: w.request("evaluate") for side, w in workers.items()}
    step = {
        side: harness.summary(f"{side} step", samples, "ms/step", scale=1000.0 / config["block_steps"])
        for side, samples in times.items()
    }
    measurements = list(step.values())
    for side in ("keras_sparse", "tfmot"):
        measurements.append(harness.value(f"{side} final sparsity", final[side]["sparsity"], "fraction"))
    accuracy = {side: harness.value(f"{side} final test accuracy", final[side]["accuracy"], "fraction")
                for side in ("keras_sparse", "tfmot", "Keras dense", "tf_keras dense")}
    measurements += list(accuracy.values())

    def step_ratio(a, b, description, blocks=None, label="", **target):
        numerator, denominator = step[a], step[b]
        paired = (times[a], times[b])
        if blocks is not None:
            paired = tuple([samples[i] for i in blocks] for samples in paired)
            numerator, denominator = (
                harness.summary(f"{side} step{label}", samples, "ms/step",
                                scale=1000.0 / config["block_steps"])
                for side, samples in zip((a, b), paired))
        return harness.ratio(f"{a} / {b} step{label}", numerator, denominator,
                             description=description, paired=paired, **target)

    updating = _update_blocks(config, blocks)
    quiet = [i for i in range(blocks - 1) if i not in updating]
    comparisons = [
        step_ratio("keras_sparse", "Keras dense", "median step time during gradual pruning over the "
                   "plain Keras step", target=TARGET, op="<=",
                   control=(times[AGAIN], times["Keras dense"])),
        step_ratio(AGAIN, "Keras dense", "control: two identical plain Keras workers; "
                   "differences this large are noise"),
        step_ratio("tfmot", "tf_keras dense", "beside it, same run: tfmot's pruning step over the "
                   "plain tf_keras step"),
        step_ratio("keras_sparse, no callback", "Keras dense", "profile: the sparse train step alone "
                   "(masks all ones, no callback) over plain Keras"),
        step_ratio("keras_sparse", "keras_sparse, no callback", "profile: what the callback adds "
                   "(mask updates and per-step checks)"),
    ]
    if updating and quiet:
        comparisons += [
            step_ratio("keras_sparse", "Keras dense", "profile: blocks of steps in which masks are "
                       "updated", blocks=updating, label=" (blocks with a mask update)"),
            step_ratio("keras_sparse", "Keras dense", "profile: blocks of steps without a mask "
                       "update", blocks=quiet, label=" (blocks without)"),
        ]
    comparisons += [
        step_ratio("tf_keras dense", "Keras dense", "profile: the two frameworks without pruning"),
        step_ratio("tfmot", "keras_sparse", "profile: the two pruning steps, tfmot over keras_sparse"),
        harness.ratio("keras_sparse / tfmot final accuracy", accuracy["keras_sparse"], accuracy["tfmot"],
                      description="test accuracy after training"),
    ]
    notes = []
    if not math.isclose(final["keras_sparse"]["sparsity"], final["tfmot"]["sparsity"], abs_tol=1e-3):
        notes.append(
            f"final sparsities differ: keras_sparse {final['keras_sparse']['sparsity']:.4f}, "
            f"tfmot {final['tfmot']['sparsity']:.4f}."
        )
    ratios = {c["name"]: c["ratio"] for c in comparisons}
    # The breakdown, also when the target is met: under load the headline
    # moves by several percent from run to run.
    text = (
        ("where the time goes" if comparisons[0]["status"] == "not met" else "profile")
        + ": keras_sparse's pruning step is "
        f"{ratios['keras_sparse / Keras dense step']:.3f}x plain Keras (tfmot's is "
        f"{ratios['tfmot / tf_keras dense step']:.3f}x plain tf_keras). The sparse train step "
        f"alone is {ratios['keras_sparse, no callback / Keras dense step']:.3f}x plain Keras "
        "(the gradient masking, see train_step), and the callback multiplies that by "
        f"{ratios['keras_sparse / keras_sparse, no callback step']:.3f}")
    if updating and quiet:
        text += (
            f"; blocks of {config['block_steps']} steps with a mask update are "
            f"{ratios['keras_sparse / Keras dense step (blocks with a mask update)']:.3f}x "
            "plain Keras, blocks without "
            f"{ratios['keras_sparse / Keras dense step (blocks without)']:.3f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes.append(text + f" (1-min load average {load:.1f} on {os.cpu_count()} cores at the end).")
    return dict(
        config=dict(config, model=MODEL, frameworks=frameworks, schedule="PolynomialDecay, power 3",
                    timing=f"one fit per side in its own process, alternated every "
                           f"{config['block_steps']} steps; first block excluded",
                    update_blocks=len(updating)),
        data=data,
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )


if __name__ == "__main__":
    harness.serve({"setup": setup, "train": train, "evaluate": evaluate})
