"""Export: dense vs sparse SavedModels (csr, auto, auto with XLA): latency and size.

Built on `benchmarks.export_latency` (the export's own benchmark): its
TensorFlow-only serving worker (Keras, keras_sparse and tf_keras cannot be
imported there) loads every export from disk and times `serving_default`,
and its kernel sweep shows what each kernel does alone. The models: an MLP
784-4096-4096-10 and LeNet-300-100, each made sparse with uniform per-layer
sparsity and exported four times with `ks.export.export_for_serving`:
dense, `sparse_format="csr"`, `"auto"` (kernels timed per layer at export,
TF Serving-compatible) and `"auto"` with `allow_xla=True`. A second dense
export is the A/A control of every target row. At 98% and batch 1 the same
rounds also time the floor no sparse kernel can beat: a served model that
does almost nothing (the per-call cost) plus reading the model's nonzeros
once (memory bandwidth).
"""

import os
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_sparse as ks
from benchmarks import export_latency, harness, workloads

NAME = "export"
TITLE = "Export: dense vs sparse SavedModels, latency and size (TensorFlow-only loader)"
TARGET_SPARSITY = 0.98
BATCHES = export_latency.BATCHES
FORMATS = {
    "dense": dict(sparse_format=None),
    "csr": dict(sparse_format="csr"),
    "auto": dict(sparse_format="auto", batch_sizes=BATCHES),
    "auto_xla": dict(sparse_format="auto", batch_sizes=BATCHES, allow_xla=True),
    # A/A control: a second dense export of the same model, timed like the
    # others; its ratio to "dense" is the run's noise.
    "dense_again": dict(sparse_format=None),
}
LABELS = {"csr": "CSR", "auto": "auto", "auto_xla": "auto+XLA", "dense_again": "dense again"}
# Calls per timed round: enough that a round of the small model lasts tens
# of ms (one LeNet call is about 0.5 ms, so 10 calls measured mostly noise).
CALLS = {"mlp_4096": 10, "lenet_300_100": 100}
# Per (sparsity, batch) with target rows: more rounds until they resolve.
TIME_BOX_S = {"full": 120.0, "quick": 30.0, "tiny": 2.0}
# Hidden widths. Flat 784-pixel input named "pixels" and a "logits" output:
# what the export_latency worker feeds and reads (LeNet's Flatten holds no
# weights, so its kernels are the same).
MODELS = {"mlp_4096": (4096, 4096), "lenet_300_100": (300, 100)}
SPEED_TARGETS = {"mlp_4096": 3.0, "lenet_300_100": 1.0}
SIZE_TARGET = 1.3


def _latency_name(model, sparsity, kind, batch):
    return f"{model} {sparsity:.0%}: dense / {LABELS[kind]} latency, batch {batch}"


def _size_name(model, sparsity):
    return f"{model} {sparsity:.0%}: sparse kernel bytes / (density x dense kernel bytes)"


TARGETS = [
    dict(name=_latency_name(model, TARGET_SPARSITY, kind, batch), target=SPEED_TARGETS[model],
         op=">=", description=f"median latency of the dense export over the {LABELS[kind]} export")
    for model in MODELS for kind in ("auto", "auto_xla") for batch in BATCHES
] + [
    dict(name=_size_name(model, TARGET_SPARSITY), target=SIZE_TARGET, op="<=",
         description="stored values + positions of the sparse kernels over density times the "
                     "dense kernels' bytes (biases are stored alike in both)")
    for model in MODELS
]


def _build(model_name, sparsity):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    x = inputs
    for i, width in enumerate(MODELS[model_name], start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"fc{i}")(x)
    dense = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=model_name)
    return ks.sparsify(dense, sparsity, distribution="uniform", seed=0)


def _available():
    export = getattr(ks, "export", None)
    if export is None or "auto" not in getattr(export, "SPARSE_FORMATS", ()):
        raise harness.NotAvailable("ks.export.export_for_serving(sparse_format='auto') has not landed")
    return export


FIXED = "probe/fixed cost"
STREAM = "probe/stream"
# What a sparse kernel must read per call at batch 1: a float32 value and
# an int32 column per nonzero.
BYTES_PER_NONZERO = 8


def _fixed_cost_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(inputs))


def _nonzeros(reports, sparsity):
    return sum(r["nonzero"] for r in _kernel_rows(reports[f"{sparsity}/dense"]))


def _floor(model_name, sparsity, times, latency, reports):
    """The batch-1 floor of a served sparse model: the per-call cost of a
    served model that does almost nothing, plus streaming its nonzeros
    (`BYTES_PER_NONZERO` each) from memory once; and how far the dense and
    the auto exports are from it."""
    nonzeros = _nonzeros(reports, sparsity)
    nbytes = nonzeros * BYTES_PER_NONZERO
    stream = times[STREAM]
    prefix = f"{model_name} {sparsity:.0%}"
    fixed = harness.summary(f"{prefix} fixed cost per call (a served 784-10 Dense), batch 1",
                            times[FIXED], "ms/call", scale=1000.0)
    streamed = harness.summary(f"{prefix} streaming its {nonzeros:,} nonzeros x "
                               f"{BYTES_PER_NONZERO} B ({nbytes / 2**20:.2f} MiB) once",
                               stream, "ms", scale=1000.0)
    floor_samples = [f + t for f, t in zip(times[FIXED], stream)]
    floor = harness.summary(f"{prefix} floor: fixed cost + stream, batch 1", floor_samples,
                            "ms/call", scale=1000.0)
    comparisons = [harness.ratio(
        f"{prefix}: dense / floor latency, batch 1", latency["dense"], floor,
        paired=(times["dense"], floor_samples),
        description="the largest speed-up any sparse kernel could give here (memory "
                    "bandwidth and the per-call cost)")]
    for kind in ("auto", "auto_xla"):
        comparisons.append(harness.ratio(
            f"{prefix}: {LABELS[kind]} / floor latency, batch 1", latency[kind], floor,
            paired=(times[kind], floor_samples),
            description=f"how far the {LABELS[kind]} export is from that floor"))
    return [fixed, streamed, floor], comparisons


def _timed_rounds(worker, model_name, sparsity, batch, calls, repeats, reports, settings):
    """`(times, info)`: every export (and at the target sparsity and batch 1
    the floor's two probes) timed in alternating rounds; rows with a target
    get more rounds until they resolve, within the time box."""
    candidates = {
        kind: (lambda kind=kind: worker.request(
            "time", kind=f"{sparsity}/{kind}", batch=batch, calls=calls)["seconds"])
        for kind in FORMATS
    }
    if sparsity == TARGET_SPARSITY and batch == 1:
        nbytes = _nonzeros(reports, sparsity) * BYTES_PER_NONZERO
        candidates[FIXED] = lambda: worker.request(
            "time", kind=FIXED, batch=1, calls=calls)["seconds"]
        candidates[STREAM] = lambda: worker.request(
            "stream", nbytes=nbytes, calls=calls)["seconds"]
    targets = {kind: _target(_latency_name(model_name, sparsity, kind, batch)) for kind in LABELS}
    targets = {kind: target for kind, target in targets.items() if target}

    def score(times):
        return [harness.ratio("", *[harness.summary(k, times[k], "s") for k in ("dense", kind)],
                              paired=(times["dense"], times[kind]), control=_control(times),
                              **target)["status"]
                for kind, target in targets.items()]

    # Two warm-up rounds first, as before; one at the start of each later batch.
    return harness.resolve(
        lambda k, warmup: harness.interleaved(candidates, repeats=k, warmup=warmup + 1),
        score, repeats=repeats, time_box_s=TIME_BOX_S[settings.mode] if targets else 0,
        max_rounds=4 * repeats)


def _control(times):
    """The A/A control's paired samples: the dense export against its twin."""
    return (times["dense_again"], times["dense"])


def _target(name):
    target = next((t for t in TARGETS if t["name"] == name), None)
    return {} if target is None else dict(target=target["target"], op=target["op"])


def _model(model_name, sparsities, x, settings, workdir):
    """Exports, loads and times one model at every sparsity."""
    export = _available()
    paths, reports, expected = {}, {}, {}
    for sparsity in sparsities:
        model = _build(model_name, sparsity)
        expected[sparsity] = np.asarray(model(x, training=False))
        for kind, kwargs in FORMATS.items():
            name = f"{sparsity}/{kind}"
            paths[name] = export.export_for_serving(
                model, workdir / model_name / name.replace("/", "_"), **kwargs)
            reports[name] = export.report(paths[name])
    # The per-call cost of a served model that does almost nothing (784 -> 10).
    paths[FIXED] = export.export_for_serving(_fixed_cost_model(), workdir / model_name / "fixed")
    np.save(workdir / "x.npy", x)
    repeats = settings.pick(9, 4, 2)
    calls = settings.pick(CALLS[model_name], 5, 2)
    measurements, comparisons, notes, resolution = [], [], [], {}
    with harness.Worker("benchmarks.export_latency", "--worker") as worker:
        loaded = worker.request("load", paths=paths, inputs=str(workdir / "x.npy"))
        for name, outputs in loaded["outputs"].items():
            if name == FIXED:
                continue
            difference = float(np.abs(np.asarray(outputs) - expected[float(name.split("/")[0])]).max())
            if difference > 1e-5:
                raise RuntimeError(f"{model_name} export {name} differs from the Keras model by {difference}")
        for sparsity in sparsities:
            for batch in BATCHES:
                times, resolution[f"{sparsity:.0%}, batch {batch}"] = _timed_rounds(
                    worker, model_name, sparsity, batch, calls, repeats, reports, settings)
                latency = {kind: harness.summary(f"{model_name} {sparsity:.0%} {kind} latency, batch {batch}",
                                                 samples, "ms/call", scale=1000.0)
                           for kind, samples in times.items() if kind in FORMATS}
                measurements += latency.values()
                for kind in LABELS:
                    label = _latency_name(model_name, sparsity, kind, batch)
                    description = (
                        "control: the dense export over a second, identical dense export; "
                        "differences this large are noise" if kind == "dense_again" else
                        f"median latency of the dense export over the {LABELS[kind]} export")
                    target = _target(label)
                    comparisons.append(harness.ratio(
                        label, latency["dense"], latency[kind], paired=(times["dense"], times[kind]),
                        description=description,
                        control=_control(times) if target else None, **target))
                if FIXED in times:
                    m, c = _floor(model_name, sparsity, times, latency, reports)
                    measurements += m
                    comparisons += c
            comparisons += _sizes(model_name, sparsity, reports, measurements)
            notes += _choices(model_name, sparsity, reports)
    notes.append(f"{model_name}, rounds timed (rows with a target run more rounds until they "
                 f"resolve, {TIME_BOX_S[settings.mode]:.0f} s per sparsity and batch, at most "
                 f"{4 * repeats}): " + "; ".join(
                     f"{key}: {info['rounds']} ({info['stopped']})"
                     for key, info in resolution.items()))
    return measurements, comparisons, notes, loaded["keras_importable"]


def _kernel_rows(report):
    return [row for row in report["layers"] if row["weight"] == "kernel"]


def _sizes(model_name, sparsity, reports, measurements):
    dense, sparse = reports[f"{sparsity}/dense"], reports[f"{sparsity}/auto"]
    density = (sum(r["nonzero"] for r in _kernel_rows(dense))
               / sum(r["total"] for r in _kernel_rows(dense)))
    size = {}
    for kind in FORMATS:
        report = reports[f"{sparsity}/{kind}"]
        for what, number in (("raw", report["size_bytes"]), ("gzip", report["gzip_bytes"]),
                             ("kernels", sum(r["bytes"] for r in _kernel_rows(report)))):
            size[kind, what] = harness.value(f"{model_name} {sparsity:.0%} {kind} export, {what}",
                                             number / 2**20, "MiB")
            measurements.append(size[kind, what])
    label = _size_name(model_name, sparsity)
    scaled = harness.value(f"{model_name} {sparsity:.0%} density x dense kernel bytes",
                           density * size["dense", "kernels"]["median"], "MiB")
    formats = sorted({r["index_format"] for r in _kernel_rows(sparse) if r.get("index_format")})
    return [
        harness.ratio(label, size["auto", "kernels"], scaled, **_target(label),
                      description=f"stored values + positions ({', '.join(formats)}) over density "
                                  "times the dense kernels' bytes"),
        harness.ratio(f"{model_name} {sparsity:.0%}: sparse / dense raw size", size["auto", "raw"],
                      size["dense", "raw"], description="SavedModel directories, bytes on disk"),
        harness.ratio(f"{model_name} {sparsity:.0%}: sparse / dense gzip size", size["auto", "gzip"],
                      size["dense", "gzip"], description="the two exports as .tar.gz"),
    ]


def _choices(model_name, sparsity, reports):
    """One note per auto export: each layer's kernel per batch size, with its export-time ms."""
    notes = []
    for kind in ("auto", "auto_xla"):
        parts = []
        for layer, record in reports[f"{sparsity}/{kind}"]["kernels"].items():
            chosen = []
            for batch, kernel in record["chosen"].items():
                times = record["timings_ms"][batch]
                chosen.append(f"b{batch} {kernel} {times[kernel]:.3g} ms (dense {times['dense']:.3g})")
            parts.append(f"{layer}: " + ", ".join(chosen))
        check = reports[f"{sparsity}/{kind}"].get("model_check") or {}
        whole = ""
        if check.get("timings_ms"):
            whole = ("; whole model at export: " + ", ".join(
                f"b{b} auto {t['auto']:.3g} ms (dense {t['dense']:.3g})"
                for b, t in check["timings_ms"].items())
                + (f", sent back to dense at batch {check['fallback']}" if check["fallback"] else ""))
        notes.append(f"{model_name} {sparsity:.0%} {LABELS[kind]} export chose (export-time, "
                     f"in-process timings per layer): " + "; ".join(parts) + whole)
        kernels = {k for record in reports[f"{sparsity}/{kind}"]["kernels"].values()
                   for k in record["chosen"].values()}
        if kernels <= {"dense"}:
            notes.append(f"{model_name} {sparsity:.0%}: the {LABELS[kind]} export kept every "
                         "layer dense at every batch size, so each layer runs the dense "
                         "export's ops (MatMul, BiasAdd, activation, on a kernel rebuilt once at "
                         "load): its latency rows are in effect an A/A pair, and a ratio whose "
                         "true value is 1 cannot resolve against a target of 1.")
    return notes


def load_note(start, end):
    """The machine's load during the run: ratios under heavy load are noisy."""
    return (f"load: 1-min load average {start[0]:.1f} at the start and {end[0]:.1f} at the end "
            f"on {os.cpu_count()} logical cores (other processes shared the CPUs); dense and "
            "sparse exports are timed in alternating rounds in one worker, so both sides see the "
            "same load, but TensorFlow's multi-threaded dense matmul suffers more from "
            "oversubscription than the mostly single-threaded sparse kernels, which inflates "
            "the batch-64 ratios under load.")


def missed_notes(measurements, comparisons):
    """A line per missed latency target: the latencies, and the best kernel alone.

    Built from the run's own measurements: the export's latencies, and the
    kernel sweep (one 4096x4096 layer at 98% with every kernel alone), which
    bounds what any per-layer choice can gain on the MLP's largest layer.
    """
    median = {m["name"]: m["median"] for m in measurements}
    sweep = {c["name"]: c["ratio"] for c in comparisons if c["name"].startswith("kernel batch")}
    notes = []
    for c in comparisons:
        if c["status"] != "not met" or "latency" not in c["name"]:
            continue
        head, _, batch = c["name"].rpartition(", batch ")
        model, _, rest = head.partition(" ")
        sparsity, kind = rest.split(":")[0], rest.split(" / ")[1].split(" latency")[0]
        kind = {v: k for k, v in LABELS.items()}[kind]
        dense = median.get(f"{model} {sparsity} dense latency, batch {batch}")
        mine = median.get(f"{model} {sparsity} {kind} latency, batch {batch}")
        best = {k.split(" / ")[1]: r for k, r in sweep.items()
                if k.startswith(f"kernel batch {batch}: ")}
        probe = best.pop(export_latency.CSR_BUILT_ONCE, None)
        line = (f"not met: {c['name']} = {c['ratio']:.3g}: {mine:.3g} ms vs dense {dense:.3g} ms "
                f"per call.")
        control = next((x["ratio"] for x in comparisons if x["name"] == _latency_name(
            model, float(sparsity.rstrip("%")) / 100, "dense_again", int(batch))), None)
        if control is not None:
            line += f" The A/A control (two identical dense exports) gave {control:.3g} here."
        if model != "mlp_4096":
            line += (" Per-layer choices are in the note above; at a batch size where every "
                     "layer multiplies densely, an all-dense layer runs the same ops as the dense "
                     "export (MatMul, BiasAdd, activation), so what is left is the batch-size "
                     "switch of a layer that is sparse at another batch size, and timing noise.")
        elif best:
            top = max(best, key=best.get)
            line += (f" The 4096x4096 98% layer alone (kernel rows, bias+ReLU included): best "
                     f"kernel {top}, dense/{top} = {best[top]:.3g}x at batch {batch}; tried "
                     f"{', '.join(f'{k} {r:.2g}x' for k, r in sorted(best.items()))}.")
            if probe is not None:
                line += (f" The CSR product with its matrix built once, which no SavedModel "
                         f"can hold in TF 2.21 (see the probe row): {probe:.3g}x.")
        notes.append(line)
    return notes


def run(settings):
    load_start = os.getloadavg()
    models = list(MODELS) if settings.mode != "tiny" else ["lenet_300_100"]
    sparsities = (0.9, 0.95, TARGET_SPARSITY) if settings.mode == "full" else (TARGET_SPARSITY,)
    images, _, source = workloads.arrays("fashion_mnist", max(BATCHES), split="test")
    x = images.reshape(len(images), -1)
    measurements, comparisons, notes, keras_importable = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in models:
            m, c, n, keras_importable[model_name] = _model(model_name, sparsities, x, settings,
                                                           Path(tmp))
            measurements += m
            comparisons += c
            notes += n
    if settings.mode != "tiny":
        # export_latency's profile: one 4096x4096 kernel at 98%, every kernel alone.
        sweep_m, sweep_c = export_latency._kernel_sweep(4096, settings.pick(9, 4, 2), settings.pick(10, 5, 2))
        measurements += sweep_m
        comparisons += sweep_c
    notes += missed_notes(measurements, comparisons)
    notes.append(load_note(load_start, os.getloadavg()))
    return dict(
        config=dict(models={m: f"784-{'-'.join(map(str, MODELS[m]))}-10" for m in models},
                    sparsities=list(sparsities), distribution="uniform", batches=list(BATCHES),
                    formats={k: {a: v for a, v in kw.items()} for k, kw in FORMATS.items()},
                    loader="benchmarks.export_latency worker: tf.saved_model.load with keras, "
                           "keras_sparse and tf_keras blocked from import",
                    keras_importable_in_worker=keras_importable),
        data={"inputs": source},
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )
