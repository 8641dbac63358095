"""Train-step time: dense Keras vs `SparseModel` with a static 90% ERK mask."""

import os

import keras
import tensorflow as tf

import keras_sparse as ks
from benchmarks import harness, workloads
from keras_sparse.layers.raw_reads import raw_reads

NAME = "train_step"
TITLE = "Train-step time, dense Keras vs SparseModel (static 90% ERK mask)"
SPARSITY = 0.9
# sparse / dense step, per model.
TARGET = {"lenet_300_100": 1.03, "resnet20": 1.02}
TARGETS = [
    dict(name=f"{model}: sparse / dense step", target=TARGET[model], op="<=",
         description="step time, sparse over dense")
    for model in workloads.MODELS
]
AGAIN = "dense, again"  # A/A control: the dense step timed twice per round
# More rounds while a target row is unresolved: at most this long per model.
TIME_BOX_S = {"full": 300.0, "quick": 60.0, "tiny": 5.0}


def _unmasked(model_name):
    """Profile only: a sparse model whose train step skips the gradient masking.

    Breaks the invariants (inactive weights move); it tells how much of the
    sparse step's extra time the masking is. Same weights and masks as the
    measured sparse model (same seeds).
    """
    _, sparse = workloads.dense_and_sparse(model_name, SPARSITY)
    return workloads.compile_model(_UnmaskedStep(sparse.inputs, sparse.outputs, name="unmasked"))


class _UnmaskedStep(ks.SparseModel):
    """Keras' own train step over the raw kernels, as the sparse step reads
    them, but without its gradient masking."""

    def train_step(self, data):
        with raw_reads(self.masked_weights):
            return keras.Model.train_step(self, data)


def _xla_pair(model_name, ds, steps, repeats):
    """The same comparison with both models compiled by XLA (`jit_compile=True`)."""
    dense, sparse = workloads.dense_and_sparse(model_name, SPARSITY)
    for model in (dense, sparse):
        model.compile(optimizer=keras.optimizers.SGD(**workloads.OPTIMIZER),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=True)
    times = harness.interleaved(
        {"dense": workloads.stepper(dense, ds, steps), "sparse": workloads.stepper(sparse, ds, steps)},
        repeats=repeats,
    )
    return times, {
        kind: harness.summary(f"{model_name}/{kind} step, jit_compile=True", samples, "ms/step",
                              scale=1000.0 / steps)
        for kind, samples in times.items()
    }


def run(settings):
    batch_size = settings.pick(128, 128, 32)
    models = list(workloads.MODELS) if settings.mode != "tiny" else ["lenet_300_100"]
    # Short blocks, many rounds: on a shared machine the load changes within
    # seconds, and the sides of a round should see the same load.
    steps = {"lenet_300_100": settings.pick(50, 50, 3), "resnet20": settings.pick(2, 2, 1)}
    steps = {m: steps[m] for m in models}
    repeats = {"lenet_300_100": settings.pick(61, 11, 2), "resnet20": settings.pick(31, 5, 2)}
    measurements, comparisons, data, notes, resolved = [], [], {}, [], {}
    for model_name in models:
        dataset_name = workloads.MODELS[model_name]
        x, y, data[dataset_name] = workloads.arrays(dataset_name, batch_size * 8)
        dense, sparse = workloads.dense_and_sparse(model_name, SPARSITY)
        ds = workloads.batches(x, y, batch_size)
        n = steps[model_name]
        candidates = {"dense": workloads.stepper(dense, ds, n), "sparse": workloads.stepper(sparse, ds, n)}
        # The profile side (no gradient masking) runs in the same rounds.
        candidates["sparse, gradients unmasked"] = workloads.stepper(_unmasked(model_name), ds, n)
        candidates[AGAIN] = candidates["dense"]

        def score(times, model_name=model_name):
            return [harness.ratio("", *[harness.summary(k, times[k], "s") for k in ("sparse", "dense")],
                                  target=TARGET[model_name], paired=(times["sparse"], times["dense"]),
                                  control=(times[AGAIN], times["dense"]))["status"]]

        first = repeats[model_name]
        times, resolved[model_name] = harness.resolve(
            lambda k, warmup: harness.interleaved(candidates, repeats=k, warmup=warmup), score,
            repeats=first, time_box_s=TIME_BOX_S[settings.mode], max_rounds=4 * first)
        step = {
            kind: harness.summary(f"{model_name}/{kind} step", samples, "ms/step", scale=1000.0 / n)
            for kind, samples in times.items()
        }
        measurements += list(step.values())
        comparison = harness.ratio(
            f"{model_name}: sparse / dense step", step["sparse"], step["dense"],
            target=TARGET[model_name], op="<=", description="step time, sparse over dense",
            paired=(times["sparse"], times["dense"]), control=(times[AGAIN], times["dense"]),
        )
        comparisons += [comparison, harness.ratio(
            f"{model_name}: sparse, gradients unmasked / dense step",
            step["sparse, gradients unmasked"], step["dense"],
            description="profile: the sparse step without its gradient masking (breaks the "
                        "invariants; shows what the masking costs)",
            paired=(times["sparse, gradients unmasked"], times["dense"]))]
        xla = None
        if model_name == "lenet_300_100":
            xla_times, xla = _xla_pair(model_name, ds, n, repeats[model_name])
            measurements += list(xla.values())
            comparisons.append(harness.ratio(
                f"{model_name}: sparse / dense step, both jit_compile=True", xla["sparse"], xla["dense"],
                description="profile: with XLA the gradient masking fuses into the optimizer update",
                paired=(xla_times["sparse"], xla_times["dense"])))
        if comparison["status"] != "met":
            notes.append(_where_the_time_goes(model_name, step, xla))
    return dict(
        config=dict(
            batch_size=batch_size, sparsity=SPARSITY, distribution="erk", mask="random, static",
            optimizer=f"SGD {workloads.OPTIMIZER}", steps_per_block=steps, first_rounds=repeats,
            rounds={k: v["rounds"] for k, v in resolved.items()},
            resolution={k: v["stopped"] for k, v in resolved.items()},
            time_box=f"{TIME_BOX_S[settings.mode]:.0f} s per model, at most 4x the first rounds",
            timing="Keras train_function on an in-memory iterator (what fit runs per step)",
            jit_compile=bool(dense.jit_compile),
        ),
        data=data,
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )


def _where_the_time_goes(model_name, step, xla):
    dense, sparse = step["dense"]["median"], step["sparse"]["median"]
    unmasked = step["sparse, gradients unmasked"]["median"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        f"where the time goes, {model_name}: the sparse step takes {sparse - dense:.3f} ms "
        f"({(sparse / dense - 1) * 100:.1f}%) more than the dense one ({dense:.3f} ms). Its graph is "
        "the dense step's plus, per prunable kernel, one mask read and one multiply_no_nan (the "
        "gradient masking by selection that keeps inactive weights, their optimizer slots and "
        "NaN/Inf gradients apart); the forward pass reads the raw kernels (no W*M; "
        "tests/test_model.py checks both). Measured "
        f"without the masking, the sparse step is {unmasked / dense:.3f}x the dense one: the "
        f"masking accounts for {sparse - unmasked:.3f} ms, an extra memory-bound pass over each "
        "kernel's gradient that TensorFlow's op-by-op CPU executor cannot fuse into the matmul "
        "producing the gradient or into the optimizer's own passes; the other "
        f"{unmasked - dense:.3f} ms lies between two steps with the same operations, so it is "
        f"timing noise (1-min load average {load:.1f} on {os.cpu_count()} cores at the end).")
    if xla is not None:
        text += (f" With jit_compile=True on both models XLA fuses the masking into the update: "
                 f"sparse / dense = {xla['sparse']['median'] / xla['dense']['median']:.3f}.")
    return text
