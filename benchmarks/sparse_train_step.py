"""Train-step time of the true-sparse path, `SparseDense(compute="sparse")`,
against dense Keras, on the MLP 784-4096-4096-10 at batch 128.

For each uniform sparsity (90%, 98%) these models run Keras' own compiled
`train_function` (what `fit` runs per step), side by side in one process,
alternating order, all from the same weights and masks, SGD with momentum:
dense Keras (twice per round: the A/A control), `compute="sparse"` as the
layer's default and with each weight gradient
("dense": read out of `x^T @ dy`; "active": SDDMM), and the products as
they were before issue 21 (`sparse_before`). Rounds are added while a
target row is unresolved, within `TIME_BOX_S`.

Inside `SparseModel.fit` a `compute="sparse"` layer trains a vector of its
active weights (the optimizer's variable and slots cover them alone). At
98% the step is split into the forward+backward pass alone (no optimizer),
the optimizer's update alone (of the active values, and of dense-shaped
kernels for comparison), and the rest.
"""

import keras
import numpy as np
import tensorflow as tf

import keras_sparse as ks
from benchmarks import harness, sparse_before, workloads
from keras_sparse.layers.raw_reads import raw_reads

NAME = "sparse_train_step"
TITLE = "True-sparse train step (SparseDense compute='sparse') vs dense Keras, MLP 784-4096-4096-10"
SPARSITIES = (0.9, 0.98)
TARGET = {0.9: 1.5, 0.98: 3.0}  # dense / sparse step
PROFILED_SPARSITY = 0.98
HIDDEN = 4096
AGAIN = "dense, again"  # A/A control: the dense step timed twice per round
BEFORE = "sparse, before"  # the products before issue 21, same rounds
# More rounds while a target row is unresolved: at most this long per sparsity.
TIME_BOX_S = {"full": 240.0, "quick": 60.0, "tiny": 5.0}


def _label(sparsity):
    return f"mlp_4096 {sparsity:.0%}"


TARGETS = [
    dict(name=f"{_label(s)}: dense / sparse-compute step", target=TARGET[s], op=">=",
         description="step time, dense Keras over SparseDense(compute='sparse')")
    for s in SPARSITIES
]


def _dense_mlp(hidden):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10),
    ], name="mlp")


# name -> (compute, weight_gradient of the SparseDense layers, old products?)
VARIANTS = {
    "masked": ("masked", None, False),
    "sparse": ("sparse", None, False),  # the layer's default
    "sparse, dense dW": ("sparse", "dense", False),
    "sparse, SDDMM dW": ("sparse", "active", False),
    BEFORE: ("sparse", "dense", True),
}


def _variants(dense, sparsity, names):
    """The sparse models of `dense` at `sparsity` (same weights and masks)."""
    models = {}
    for name in names:
        compute, weight_gradient, before = VARIANTS[name]
        model = ks.sparsify(dense, sparsity, distribution="uniform", seed=0, compute=compute)
        if weight_gradient is not None:
            model = _with_weight_gradient(model, weight_gradient)
        model = workloads.compile_model(model)
        if before:
            sparse_before.use_before_products(model)
        models[name] = model
    return models


def _with_weight_gradient(model, weight_gradient):
    """`model` rebuilt with `SparseDense(weight_gradient=...)`: same weights and masks."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, ks.layers.SparseDense):
            config["weight_gradient"] = weight_gradient
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    if not isinstance(copy, ks.SparseModel):
        copy = ks.SparseModel(copy.inputs, copy.outputs, name=model.name)
    copy.set_weights(model.get_weights())  # masks are weights too
    return copy


def _forward_backward(model, x, y, passes):
    """`passes` compiled forward and backward passes as in the train step, no optimizer."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def one():
        with tf.GradientTape() as tape:
            with raw_reads(getattr(model, "masked_weights", [])):  # as the train step reads
                loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)  # value vectors too
        return tf.add_n([tf.reduce_sum(g[:1]) for g in grads])

    def run():
        for _ in range(passes):
            out = one()
        float(out)

    return run


def _optimizer_update(shapes, passes):
    """`passes` SGD-momentum updates of fresh variables of `shapes`."""
    variables = [keras.Variable(tf.zeros(shape)) for shape in shapes]
    grads = [tf.ones(shape) * 1e-3 for shape in shapes]
    optimizer = keras.optimizers.SGD(**workloads.OPTIMIZER)
    optimizer.build(variables)

    @tf.function
    def one():
        optimizer.apply(grads, variables)
        return optimizer.iterations

    def run():
        for _ in range(passes):
            out = one()
        int(out)

    return run


def _where_the_time_goes(label, models, x, y, steps, repeats, step_ms):
    """Measurements and one note splitting the sparse step's time."""
    dense, sparse = models["dense"], models["sparse"]
    active = [int(np.count_nonzero(mw.mask.numpy())) for mw in sparse.masked_weights]
    times = harness.interleaved({
        "dense fwd+bwd": _forward_backward(dense, x, y, steps),
        "sparse fwd+bwd": _forward_backward(sparse, x, y, steps),
        "optimizer, dense-shaped weights": _optimizer_update(
            [tuple(w.shape) for w in dense.trainable_weights], steps),
        "optimizer, active values only": _optimizer_update(
            [(n,) for n in active] + [tuple(w.shape) for w in dense.trainable_weights
                                      if len(w.shape) == 1], steps),
    }, repeats=repeats)
    parts = {key: harness.summary(f"{label}/{key} (no optimizer)" if "fwd" in key
                                  else f"{label}/{key}", samples, "ms/step",
                                  scale=1000.0 / steps)
             for key, samples in times.items()}
    ms = {key: m["median"] for key, m in parts.items()}
    optimizer = ms["optimizer, active values only"]
    rest = step_ms["sparse"] - ms["sparse fwd+bwd"] - optimizer
    note = (
        f"{label}: the compute='sparse' step takes {step_ms['sparse']:.1f} ms against "
        f"{step_ms['dense']:.1f} ms dense. Its parts, timed alone: forward+backward "
        f"{ms['sparse fwd+bwd']:.1f} ms (dense {ms['dense fwd+bwd']:.1f} ms), "
        f"the optimizer's update of the {sum(active):,} active values {optimizer:.2f} ms "
        f"(dense-shaped kernels: {ms['optimizer, dense-shaped weights']:.1f} ms), the rest "
        f"(train-step bookkeeping, metrics) {rest:.1f} ms."
    )
    return list(parts.values()), note


def _score(label, target):
    def score(times):
        row = harness.ratio(f"{label}: dense / sparse-compute step", *_medians(times, "dense", "sparse"),
                            target=target, op=">=", paired=(times["dense"], times["sparse"]),
                            control=(times[AGAIN], times["dense"]))
        return [row["status"]]
    return score


def _medians(times, a, b):
    return [harness.summary(name, times[name], "s") for name in (a, b)]


def run(settings):
    hidden = settings.pick(HIDDEN, HIDDEN, 256)
    batch_size = 128
    steps = settings.pick(4, 2, 1)
    repeats = settings.pick(9, 5, 2)
    sparsities = settings.pick(SPARSITIES, SPARSITIES, (PROFILED_SPARSITY,))
    # The masked model is about as slow as dense (0.97x in earlier runs): left out to save time.
    timed = [name for name in VARIANTS if name != "masked"]
    names = settings.pick(timed, timed, ["sparse", BEFORE])
    time_box = TIME_BOX_S[settings.mode]
    x, y, source = workloads.arrays("fashion_mnist", batch_size * 4)
    x = x.reshape(len(x), -1)
    ds = workloads.batches(x, y, batch_size)
    dense = workloads.compile_model(_dense_mlp(hidden))
    label_of = _label if hidden == HIDDEN else (lambda s: f"mlp_{hidden} {s:.0%}")
    measurements, comparisons, notes, resolved = [], [], [], {}
    for sparsity in sparsities:
        label = label_of(sparsity)
        models = {"dense": dense, **_variants(dense, sparsity, names)}
        candidates = {name: workloads.stepper(model, ds, steps) for name, model in models.items()}
        candidates[AGAIN] = candidates["dense"]
        times, resolved[label] = harness.resolve(
            lambda n, warmup: harness.interleaved(candidates, repeats=n, warmup=warmup),
            _score(label, TARGET[sparsity]), repeats=repeats, time_box_s=time_box,
            max_rounds=repeats * 8)
        step = {name: harness.summary(f"{label}/{name} step", samples, "ms/step",
                                      scale=1000.0 / steps)
                for name, samples in times.items()}
        measurements += list(step.values())
        comparisons.append(harness.ratio(
            f"{label}: dense / sparse-compute step", step["dense"], step["sparse"],
            target=TARGET[sparsity], op=">=",
            description="step time, dense Keras over SparseDense(compute='sparse')",
            paired=(times["dense"], times["sparse"]), control=(times[AGAIN], times["dense"])))
        for name, meaning in (
            (AGAIN, "control: the dense step over itself, timed twice per round"),
            ("masked", "profile: the masked SparseModel (compute='masked')"),
            ("sparse, dense dW", "profile: compute='sparse', values' gradient read out of the "
                                 "dense x^T dy"),
            ("sparse, SDDMM dW", "profile: compute='sparse', values' gradient by SDDMM at the "
                                 "active positions only"),
            (BEFORE, "before issue 21: CSR of W built each step, forward with transpose_a, "
                     "gradient from the dense x^T dy"),
        ):
            if name in times:
                comparisons.append(harness.ratio(
                    f"{label}: dense / {name} step", step["dense"], step[name], target=None,
                    description=meaning, paired=(times["dense"], times[name])))
        if BEFORE in times:
            comparisons.append(harness.ratio(
                f"{label}: before / after (sparse step)", step[BEFORE], step["sparse"],
                description="speed-up of compute='sparse' by issue 21, same rounds",
                paired=(times[BEFORE], times["sparse"])))
        if sparsity == PROFILED_SPARSITY:
            xb, yb = tf.constant(x[:batch_size]), tf.constant(y[:batch_size])
            parts, note = _where_the_time_goes(
                label, models, xb, yb, steps, repeats,
                {k: m["median"] for k, m in step.items()})
            measurements += parts
            notes.append(note)
        del models
    notes.append(
        "jit_compile: not measured for compute='sparse'. TensorFlow's CSR ops "
        "(SparseMatrixMatMul, SparseTensorToCSRSparseMatrix) have no XLA kernels, so the "
        "layer sets supports_jit=False. Each product alone, and the SDDMM compiled by XLA, "
        "are timed by `python -m benchmarks.sparse_training_kernels`."
    )
    return dict(
        config=dict(
            model=f"MLP 784-{hidden}-{hidden}-10 (relu)", batch_size=batch_size,
            sparsities=[float(s) for s in sparsities], distribution="uniform",
            mask="random, static", optimizer=f"SGD {workloads.OPTIMIZER}",
            steps_per_block=steps, first_rounds=repeats,
            rounds={k: v["rounds"] for k, v in resolved.items()},
            resolution={k: v["stopped"] for k, v in resolved.items()},
            time_box=f"{time_box:.0f} s per sparsity, at most {repeats * 8} rounds",
            timing="Keras train_function on an in-memory iterator (what fit runs per step)",
            jit_compile=bool(dense.jit_compile),
        ),
        data={"fashion_mnist": source},
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )
