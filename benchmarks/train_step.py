"""Train-step time: dense Keras vs `SparseModel` with a static 90% ERK mask."""

import keras
import tensorflow as tf

from benchmarks import harness, workloads

NAME = "train_step"
TITLE = "Train-step time, dense Keras vs SparseModel (static 90% ERK mask)"
SPARSITY = 0.9
TARGET = 1.05
TARGETS = [
    dict(name=f"{model}: sparse / dense step", target=TARGET, op="<=",
         description="median step time, sparse over dense")
    for model in workloads.MODELS
]


def _passes(model, x, y, passes, backward):
    """`passes` compiled forward (and backward) passes, no optimizer."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def one():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)[0] if backward else loss

    def run():
        for _ in range(passes):
            out = one()
        float(tf.reduce_sum(out))  # wait for the device

    return run


def _breakdown(model_name, models, x, y, repeats, passes):
    """Where the sparse step's extra time goes: forward, backward, the rest."""
    candidates = {
        (kind, part): _passes(model, x, y, passes, backward=part == "forward+backward")
        for kind, model in models.items()
        for part in ("forward", "forward+backward")
    }
    times = harness.interleaved({f"{k} {p}": fn for (k, p), fn in candidates.items()}, repeats=repeats)
    return {
        key: harness.summary(f"{model_name}/{key} (no optimizer)", samples, "ms/pass", scale=1000.0 / passes)
        for key, samples in times.items()
    }


def run(settings):
    batch_size = settings.pick(128, 128, 32)
    models = list(workloads.MODELS) if settings.mode != "tiny" else ["lenet_300_100"]
    # Steps per timed block: about 0.5 s (full) on 2 cores.
    steps = {"lenet_300_100": settings.pick(250, 100, 3), "resnet20": settings.pick(4, 2, 1)}
    steps = {m: steps[m] for m in models}
    repeats = settings.pick(15, 5, 2)
    measurements, comparisons, data, notes = [], [], {}, []
    for model_name in models:
        dataset_name = workloads.MODELS[model_name]
        x, y, data[dataset_name] = workloads.arrays(dataset_name, batch_size * 8)
        dense, sparse = workloads.dense_and_sparse(model_name, SPARSITY)
        ds = workloads.batches(x, y, batch_size)
        n = steps[model_name]
        times = harness.interleaved(
            {
                "dense": workloads.stepper(dense, ds, n),
                "sparse": workloads.stepper(sparse, ds, n),
            },
            repeats=repeats,
        )
        step = {
            kind: harness.summary(f"{model_name}/{kind} step", samples, "ms/step", scale=1000.0 / n)
            for kind, samples in times.items()
        }
        measurements += list(step.values())
        comparison = harness.ratio(
            f"{model_name}: sparse / dense step", step["sparse"], step["dense"],
            target=TARGET, op="<=", description="median step time, sparse over dense",
            paired=(times["sparse"], times["dense"]),
        )
        comparisons.append(comparison)
        if comparison["status"] == "not met":
            parts = _breakdown(model_name, {"dense": dense, "sparse": sparse}, x[:batch_size],
                               y[:batch_size], repeats, n)
            measurements += parts.values()
            extra = {
                part: parts[f"sparse {part}"]["median"] - parts[f"dense {part}"]["median"]
                for part in ("forward", "forward+backward")
            }
            whole = step["sparse"]["median"] - step["dense"]["median"]
            notes.append(
                f"{model_name}: the sparse step takes {whole:.3f} ms more than the dense one: "
                f"{extra['forward']:.3f} ms in the forward pass (W*M per layer), "
                f"{extra['forward+backward'] - extra['forward']:.3f} ms in the backward pass, "
                f"{whole - extra['forward+backward']:.3f} ms in the rest of the step (optimizer, "
                "metrics, SparseModel.train_step bookkeeping)."
            )
    return dict(
        config=dict(
            batch_size=batch_size, sparsity=SPARSITY, distribution="erk", mask="random, static",
            optimizer=f"SGD {workloads.OPTIMIZER}", steps_per_block=steps, repeats=repeats,
            timing="Keras train_function on an in-memory iterator (what fit runs per step)",
            jit_compile=bool(dense.jit_compile),
        ),
        data=data,
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )
