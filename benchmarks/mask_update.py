"""The cost of mask updates: RigL (ΔT=100) vs static sparse, and one update per layer size."""

import contextlib
import functools
import time

import keras
import numpy as np
import tensorflow as tf

import keras_sparse as ks
from benchmarks import harness, workloads

NAME = "mask_update"
TITLE = "Epoch time of RigL (ΔT=100) vs static sparse, and one mask update per layer size"
SPARSITY = 0.9
DELTA_T = 100
TARGET = 1.01
NO_UPDATES = "RigL, no update"  # profile side: RigL's per-step cost alone
CONTROL = "static, 2nd process"  # A/A control: how far two identical processes differ
TARGETS = [
    dict(name=f"{model}: RigL / static epoch", target=TARGET, op="<=",
         description="median epoch time, RigL over a static mask")
    for model in workloads.MODELS
] + [
    dict(name=f"{kind} update, SparseDense 4096x4096 at 98%: indexed round / 50 ms", target=1.0,
         op="<=", description="one drop-and-grow update within 50 ms")
    for kind in ("RigL", "SET", "DSTEE")
]


def _rigl():
    callback = getattr(ks.callbacks, "RigL", None)
    if callback is None:
        raise harness.NotAvailable("ks.callbacks.RigL has not landed")
    return callback


_state = {}


# -- the worker: one side of the epoch comparison ------------------------------


def setup(model_name, kind, batch_size, examples, steps, epochs, delta_t):
    x, y, source = workloads.arrays(workloads.MODELS[model_name], examples)
    model = workloads.compile_model(ks.sparsify(workloads.build(model_name), SPARSITY, seed=0))
    last = epochs * steps
    if kind == "RigL":
        # end_step past the last epoch: every timed epoch has its updates.
        callback = _rigl()(delta_t=delta_t, end_step=last + 1)
    elif kind == NO_UPDATES:
        # Everything RigL does per step, but its first update is after the run.
        callback = _rigl()(delta_t=delta_t, begin_step=last + 1, end_step=last + 2)
    else:  # "static" and CONTROL
        callback = ks.callbacks.Static()
    _state.update(model=model, callback=callback, dataset=workloads.batches(x, y, batch_size),
                  steps=steps, epochs=epochs)
    return {"data": source}


def train():
    model, steps, epochs = _state["model"], _state["steps"], _state["epochs"]
    pacer = harness.paced(keras.callbacks.Callback, steps)()
    history = model.fit(_state["dataset"], epochs=epochs, steps_per_epoch=steps, verbose=0,
                        callbacks=[_state["callback"], pacer])
    _state["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return {"seconds": pacer.last_seconds}


def history():
    return _state["history"]


# -- the parent -------------------------------------------------------------------


def _epochs(model_name, settings, delta_t):
    """RigL vs static epochs, one `fit` per side in its own process, alternated per epoch."""
    _rigl()
    batch_size = settings.pick(128, 128, 32)
    if model_name == "lenet_300_100":  # full: a real epoch, the whole training set
        examples = settings.pick(60000, 30000, 8 * batch_size)
        steps = examples // batch_size
        repeats = settings.pick(6, 3, 1)
    else:  # a ResNet-20 epoch is minutes on 2 cores: a slice of one (one update)
        examples = 50 * batch_size
        steps, repeats = DELTA_T, 5
    epochs = 1 + repeats  # the first epoch (tracing) is the warm-up
    arguments = dict(model_name=model_name, batch_size=batch_size, examples=examples,
                     steps=steps, epochs=epochs, delta_t=delta_t)
    kinds = ("static", "RigL", NO_UPDATES, CONTROL)
    with contextlib.ExitStack() as stack:
        workers = {kind: stack.enter_context(harness.Worker("benchmarks.mask_update")) for kind in kinds}
        data = {kind: w.request("setup", kind=kind, **arguments)["data"] for kind, w in workers.items()}
        times = harness.interleaved({kind: harness.blocks(w) for kind, w in workers.items()},
                                    repeats=repeats, warmup=1)
        logs = workers["RigL"].request("history")
    epoch = {
        kind: harness.summary(f"{model_name}/{kind} epoch ({steps} steps)", samples, "s")
        for kind, samples in times.items()
    }

    def epoch_ratio(a, b, description, **target):
        return harness.ratio(f"{model_name}: {a} / {b} epoch", epoch[a], epoch[b], description=description,
                             paired=(times[a], times[b]), **target)

    comparisons = [
        epoch_ratio("RigL", "static", "epoch time, RigL over a static mask (A/A: the second "
                    "static process)", target=TARGET, op="<=", control=(times[CONTROL], times["static"])),
        epoch_ratio(NO_UPDATES, "static", "profile: RigL's per-step cost (dense-gradient capture in "
                    "the train step, per-batch callback work) without any update"),
        epoch_ratio("RigL", NO_UPDATES, "profile: the mask updates themselves"),
        epoch_ratio(CONTROL, "static", "control: two identical static processes; differences "
                    "between processes this large are noise"),
    ]
    measurements = list(epoch.values())
    notes = []
    updates = logs.get("dst/updates", [])[1:]
    if updates and updates[0]:
        per_update = harness.summary(f"{model_name}/RigL update (callback's dst/update_ms)",
                                     logs["dst/update_ms"][1:], "ms/update")
        measurements.append(per_update)
        capture_measurements, capture, step_ms = _capture_cost(model_name, settings, delta_t)
        measurements += capture_measurements
        comparisons.append(capture)
        # The epoch ratio's parts, each per step and in one process.
        amortized = per_update["median"] / delta_t
        static_step = step_ms["without capture"]
        # From the paired ratio, whose A/A control says how much of it is noise.
        capture_ms = (capture["ratio"] - 1.0) * static_step
        control = capture["control"]
        measurements += [
            harness.value(f"{model_name}/update_ms / delta_t", amortized, "ms/step"),
            harness.value(f"{model_name}/capture cost ((step ratio with / without - 1) x step)",
                          capture_ms, "ms/step"),
        ]
        ms = {kind: 1000.0 * epoch[kind]["median"] for kind in kinds}
        notes.append(
            f"{model_name}: per step, in one process: the update costs update_ms / delta_t = "
            f"{per_update['median']:.1f} / {delta_t} = {amortized:.3f} ms, the dense-gradient "
            f"capture {capture_ms:.3f} ms (step ratio {capture['ratio']:.3f} "
            f"[{capture['ci_low']:.3f}-{capture['ci_high']:.3f}], A/A {control['ratio']:.3f} "
            f"[{control['low']:.3f}-{control['high']:.3f}]), against a static step of "
            f"{static_step:.3f} ms: expected RigL / static = "
            f"{(static_step + amortized + capture_ms) / static_step:.3f} "
            f"(epoch ratio measured across processes: {comparisons[0]['ratio']:.3f}). "
            f"Per epoch: RigL adds {ms['RigL'] - ms['static']:.0f} ms to {ms['static']:.0f} ms; "
            f"{ms[NO_UPDATES] - ms['static']:.0f} ms per-step cost without updates, "
            f"{ms['RigL'] - ms[NO_UPDATES]:.0f} ms for {np.median(updates):.0f} updates."
        )
    config = dict(batch_size=batch_size, steps_per_epoch=steps, timed_epochs=repeats)
    return measurements, comparisons, notes, {workloads.MODELS[model_name]: data["RigL"]}, config


def _capture_cost(model_name, settings, delta_t):
    """Profile: the train step with RigL's dense-gradient capture vs without, in one process."""
    batch_size = settings.pick(128, 128, 32)
    x, y, _ = workloads.arrays(workloads.MODELS[model_name], 8 * batch_size)
    dataset = workloads.batches(x, y, batch_size)
    steps = {"lenet_300_100": settings.pick(250, 100, 3), "resnet20": 4}[model_name]

    def model(capture):
        built = workloads.compile_model(ks.sparsify(workloads.build(model_name), SPARSITY, seed=0))
        if capture:
            built.request_dense_gradients(when=lambda step: (step + 1) % delta_t == 0)
        return workloads.stepper(built, dataset, steps)

    # A second model without capture is the A/A control: two identical
    # models in one process differ by this much.
    times = harness.interleaved({
        "without capture": model(False), "with capture": model(True),
        "without capture, again": model(False),
    }, repeats=settings.pick(15, 5, 2))
    step = {kind: harness.summary(f"{model_name}/sparse step {kind} (no callback)", samples,
                                  "ms/step", scale=1000.0 / steps)
            for kind, samples in times.items()}
    return list(step.values()), harness.ratio(
        f"{model_name}: step with / without dense-gradient capture", step["with capture"],
        step["without capture"], paired=(times["with capture"], times["without capture"]),
        control=(times["without capture, again"], times["without capture"]),
        description="profile: SparseModel.train_step with request_dense_gradients(when=every "
                    f"{delta_t} steps) over without, same process (A/A: a second model "
                    "without)"), {kind: m["median"] for kind, m in step.items()}


def _one_update(callback, step):
    callback.update_masks(step=step)  # returns after the new masks are on the host


def _layer(width, sparsity, kind, delta_t):
    """A square SparseDense whose callback has made one update in `fit` (so the
    dense gradient a RigL round reads is a real one)."""
    inputs = keras.Input((width,))
    model = ks.SparseModel(inputs, ks.layers.SparseDense(width, use_bias=False)(inputs))
    ks.pruning.random(model, sparsity)
    model.compile(keras.optimizers.SGD(**workloads.OPTIMIZER), "mse")
    callback = getattr(ks.callbacks, kind)(delta_t=delta_t, end_step=10**9)
    x = np.random.default_rng(0).standard_normal((2 * 32, width), dtype=np.float32)
    model.fit(x, x, batch_size=32, epochs=1, verbose=0, callbacks=[callback])  # update at step 2
    return model, callback


def _per_layer_size(settings, delta_t):
    """One RigL update (`update_masks`) of a single square SparseDense layer, per size."""
    widths = settings.pick((256, 1024, 2048, 4096), (256, 1024, 2048), (64,))
    repeats = settings.pick(5, 3, 2)
    candidates, sizes = {}, {}
    for width in widths:
        _, callback = _layer(width, SPARSITY, "RigL", 2)
        candidates[f"{width}x{width}"] = functools.partial(_one_update, callback, 2)
        sizes[f"{width}x{width}"] = width * width
    times = harness.interleaved(candidates, repeats=repeats)
    return [
        harness.summary(f"one RigL update, SparseDense {name} at {SPARSITY:.0%} "
                        f"({sizes[name]:,} weights)",
                        samples, "ms", scale=1000.0)
        for name, samples in times.items()
    ]


ROUND_SPARSITY = 0.98
ROUND_FRACTION = 0.3  # the cosine schedule's drop fraction at its first update
ROUND_BUDGET_MS = 50.0
ROUND_METHODS = ("RigL", "SET", "DSTEE")
# More rounds while a method's "/ 50 ms" row is unresolved: at most this long per method.
ROUND_TIME_BOX_S = {"full": 120.0, "quick": 30.0, "tiny": 2.0}


def _timed_round(callback):
    def once():
        _, ms = callback.update(callback.model, 2, ROUND_FRACTION, 1,
                                callback.reads_dense_gradients)
        return ms / 1000.0  # the update itself, as `dst/update_ms` logs it
    return once


def _indexed_vs_dense(settings):
    """One drop-and-grow update of a 4096x4096 layer at 98%: indexed vs dense round."""
    from keras_sparse.callbacks import drop_grow_indexed

    width = settings.pick(4096, 4096, 256)
    repeats = settings.pick(15, 7, 2)
    measurements, comparisons, resolved = [], [], {}
    for kind in ROUND_METHODS:
        candidates = {}
        for path in ("dense round", "indexed round"):
            saved = drop_grow_indexed.MIN_SIZE
            # Read when the update is traced (in fit): the dense model keeps its dense round.
            drop_grow_indexed.MIN_SIZE = 10**12 if path == "dense round" else 0
            try:
                _, callback = _layer(width, ROUND_SPARSITY, kind, 2)
            finally:
                drop_grow_indexed.MIN_SIZE = saved
            candidates[path] = _timed_round(callback)
        candidates[FLOOR] = _timed_floor(callback)
        if kind == "SET":  # the floor of SET's update while it keeps its masks
            candidates.update(_timed_draws(width))
        label = f"{kind} update, SparseDense {width}x{width} at {ROUND_SPARSITY:.0%}"
        times, resolved[kind] = harness.resolve(
            lambda n, warmup: harness.interleaved(candidates, repeats=n, warmup=warmup),
            functools.partial(_round_status, label), repeats=repeats,
            time_box_s=ROUND_TIME_BOX_S[settings.mode], max_rounds=repeats * 8)
        m = {path: harness.summary(f"{label}: {path}", samples, "ms", scale=1000.0)
             for path, samples in times.items()}
        measurements += list(m.values())
        comparisons += [
            harness.ratio(f"{label}: indexed / dense round", m["indexed round"], m["dense round"],
                          paired=(times["indexed round"], times["dense round"]),
                          description="profile: the same update, on indices vs over every "
                                      "position (same masks, bit for bit)"),
            _within_budget(label, times["indexed round"], m["indexed round"]),
        ]
        comparisons.append(harness.ratio(
            f"{label}: indexed round / {FLOOR}", m["indexed round"], m[FLOOR],
            paired=(times["indexed round"], times[FLOOR]),
            description="profile: the update over one multi-threaded read of every tensor it "
                        "must read whole (the mask; the dense gradient and DST-EE's counter "
                        "where the rule reads them; not SET's draw, timed below)"))
        if "random scores alone" in m:
            comparisons.append(harness.ratio(
                f"{label}: random scores alone / indexed round", m["random scores alone"],
                m["indexed round"], paired=(times["random scores alone"], times["indexed round"]),
                description="profile: drawing the layer's uniform grow scores (stateless "
                            "Philox, one per position), which SET's masks depend on"))
            for probe in XLA_DRAWS:
                comparisons.append(harness.ratio(
                    f"{label}: {probe} / random scores alone", m[probe],
                    m["random scores alone"],
                    paired=(times[probe], times["random scores alone"]),
                    description="profile: the same draw in plain ops compiled by XLA "
                                "(benchmarks/philox_xla.py), so that it could fuse into "
                                "the pass that reads it"))
    return measurements, comparisons, resolved


def _within_budget(label, samples, measured=None):
    """The target row: the indexed round over the 50 ms budget, paired round by round."""
    measured = measured or harness.summary(f"{label}: indexed round", samples, "ms", scale=1000.0)
    return harness.ratio(
        f"{label}: indexed round / {ROUND_BUDGET_MS:.0f} ms", measured,
        harness.value(f"{ROUND_BUDGET_MS:.0f} ms budget", ROUND_BUDGET_MS, "ms"),
        target=1.0, op="<=", paired=(samples, [ROUND_BUDGET_MS / 1000.0] * len(samples)),
        description=f"one update (drop fraction {ROUND_FRACTION}) within {ROUND_BUDGET_MS:.0f} "
                    "ms; more rounds while unresolved (see config: round_rounds)")


def _round_status(label, times):
    return [_within_budget(label, times["indexed round"])["status"]]


FLOOR = "floor: reading its inputs once"


def _timed_floor(callback):
    """Seconds to read once, as fast as TensorFlow reads, every per-position
    tensor the round cannot avoid reading whole: the mask, plus the dense
    gradient and DST-EE's counter where the rule reads them. The round's
    work at the positions it finds (the active weights, the candidates)
    comes on top, so this bounds it from below."""
    from keras_sparse.callbacks.drop_grow import Exploration
    from keras_sparse.layers.parameter import DENSE_GRAD

    weight = callback.model.masked_weights[0]
    read = [weight.mask]
    if callback.reads_dense_gradients:
        read.append(weight.state(DENSE_GRAD))
    if weight.has_state(Exploration.COUNT):
        read.append(weight.state(Exploration.COUNT))
    total = tf.function(lambda: tf.add_n([tf.reduce_sum(tf.cast(v, tf.float32)) for v in read]))
    total()  # traced outside the timing

    def once():
        start = time.perf_counter()
        total().numpy()
        return time.perf_counter() - start
    return once


XLA_DRAWS = ("random scores, bit-identical Philox in XLA",
             "random scores, Philox in XLA, compute only")


def _timed_draws(width):
    """Seconds to draw SET's grow scores for a `width` x `width` layer:
    TensorFlow's kernel (what SET uses), the same bits computed by XLA
    position by position, and XLA's Philox compute alone (each 4-number
    block once, outputs left in 4 lanes)."""
    from benchmarks import philox_xla
    from keras_sparse.masks import stateless_uniform

    size = width * width
    seed = tf.constant([0, 2], tf.int64)  # the key `stateless_uniform(..., 0, 2, 0)` uses
    positions = tf.range(size, dtype=tf.int64)
    draws = {
        "random scores alone": tf.function(lambda: stateless_uniform([width, width], 0, 2, 0)),
        XLA_DRAWS[0]: tf.function(lambda: philox_xla.uniform_at(positions, seed),
                                  jit_compile=True),
        XLA_DRAWS[1]: tf.function(lambda: philox_xla.mantissa_lanes(size, seed),
                                  jit_compile=True),
    }

    def timed(draw):
        draw()  # trace and compile outside the timing

        def once():
            start = time.perf_counter()
            draw()
            return time.perf_counter() - start
        return once
    return {name: timed(draw) for name, draw in draws.items()}


def run(settings):
    delta_t = settings.pick(DELTA_T, DELTA_T, 2)
    # ResNet-20 epochs take minutes on 2 cores: full runs only.
    models = list(workloads.MODELS) if settings.mode == "full" else ["lenet_300_100"]
    measurements, comparisons, notes, data, configs = [], [], [], {}, {}
    for model_name in models:
        m, c, n, d, configs[model_name] = _epochs(model_name, settings, delta_t)
        measurements += m
        comparisons += c
        notes += n
        data.update(d)
    measurements += _per_layer_size(settings, delta_t)
    round_measurements, round_comparisons, resolved = _indexed_vs_dense(settings)
    measurements += round_measurements
    comparisons += round_comparisons
    return dict(
        config=dict(delta_t=delta_t, sparsity=SPARSITY, distribution="erk",
                    optimizer=f"SGD {workloads.OPTIMIZER}", epochs=configs,
                    timing="one fit per side in its own process, alternated epoch by epoch; "
                           "first epoch (tracing) excluded",
                    round_rounds={k: v["rounds"] for k, v in resolved.items()},
                    round_resolution={k: v["stopped"] for k, v in resolved.items()}),
        data=data,
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )


if __name__ == "__main__":
    harness.serve({"setup": setup, "train": train, "history": history})
