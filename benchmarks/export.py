"""Export: dense vs CSR SavedModel latency and size at 90, 95 and 98% sparsity.

Built on `benchmarks.export_latency` (the export's own benchmark): its
TensorFlow-only serving worker (Keras, keras_sparse and tf_keras cannot be
imported there) loads both exports from disk and times `serving_default`,
and its kernel sweep explains a missed latency target. Here the sweep
covers the issue's models and sparsities: an MLP 784-4096-4096-10 and
LeNet-300-100, each made sparse with uniform per-layer sparsity (so every
kernel reaches the CSR threshold) and exported twice with
`ks.export.export_for_serving` (`sparse_format=None` and `"csr"`).
"""

import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_sparse as ks
from benchmarks import export_latency, harness, workloads

NAME = "export"
TITLE = "Export: dense vs CSR SavedModel latency and size (TensorFlow-only loader)"
SPEED_TARGET = 3.0
SIZE_TARGET = 1.1
TARGET_SPARSITY = 0.98
BATCHES = export_latency.BATCHES
# Hidden widths. Flat 784-pixel input named "pixels" and a "logits" output:
# what the export_latency worker feeds and reads (LeNet's Flatten holds no
# weights, so its kernels are the same).
MODELS = {"mlp_4096": (4096, 4096), "lenet_300_100": (300, 100)}
TARGETS = [
    dict(name=f"{model} 98%: dense / CSR latency, batch {batch}", target=SPEED_TARGET, op=">=",
         description="median latency of the dense export over the CSR export")
    for model in MODELS for batch in BATCHES
] + [
    dict(name=f"{model} 98%: CSR size / (density x dense size)", target=SIZE_TARGET, op="<=",
         description="raw SavedModel bytes of the CSR export over density times the dense export's")
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
    if export is None or "csr" not in getattr(export, "SPARSE_FORMATS", ()):
        raise harness.NotAvailable("ks.export.export_for_serving(sparse_format='csr') has not landed")
    return export


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
        for kind, sparse_format in export_latency.FORMATS.items():
            name = f"{sparsity}/{kind}"
            paths[name] = export.export_for_serving(
                model, workdir / model_name / name.replace("/", "_"), sparse_format=sparse_format)
            reports[name] = export.report(paths[name])
    np.save(workdir / "x.npy", x)
    repeats = settings.pick(9, 4, 2)
    calls = settings.pick(10, 5, 2)
    measurements, comparisons = [], []
    with harness.Worker("benchmarks.export_latency", "--worker") as worker:
        loaded = worker.request("load", paths=paths, inputs=str(workdir / "x.npy"))
        for name, outputs in loaded["outputs"].items():
            difference = float(np.abs(np.asarray(outputs) - expected[float(name.split("/")[0])]).max())
            if difference > 1e-5:
                raise RuntimeError(f"{model_name} export {name} differs from the Keras model by {difference}")
        for sparsity in sparsities:
            for batch in BATCHES:
                times = harness.interleaved({
                    kind: (lambda kind=kind: worker.request(
                        "time", kind=f"{sparsity}/{kind}", batch=batch, calls=calls)["seconds"])
                    for kind in export_latency.FORMATS
                }, repeats=repeats, warmup=2)
                latency = {kind: harness.summary(f"{model_name} {sparsity:.0%} {kind} latency, batch {batch}",
                                                 samples, "ms/call", scale=1000.0)
                           for kind, samples in times.items()}
                measurements += latency.values()
                label = f"{model_name} {sparsity:.0%}: dense / CSR latency, batch {batch}"
                comparisons.append(harness.ratio(
                    label, latency["dense"], latency["csr"], paired=(times["dense"], times["csr"]),
                    description="median latency of the dense export over the CSR export", **_target(label)))
            comparisons += _sizes(model_name, sparsity, reports, measurements)
    return measurements, comparisons, loaded["keras_importable"]


def _sizes(model_name, sparsity, reports, measurements):
    dense, csr = reports[f"{sparsity}/dense"], reports[f"{sparsity}/csr"]
    kernels = [row for row in csr["layers"] if row["weight"] == "kernel"]
    density = sum(r["nonzero"] for r in kernels) / sum(r["total"] for r in kernels)
    size = {}
    for kind, report in (("dense", dense), ("csr", csr)):
        for what, number in (("raw", report["size_bytes"]), ("gzip", report["gzip_bytes"]),
                             ("weights", report["layers"][-1]["bytes"])):
            size[kind, what] = harness.value(f"{model_name} {sparsity:.0%} {kind} export, {what}",
                                             number / 2**20, "MiB")
            measurements.append(size[kind, what])
    label = f"{model_name} {sparsity:.0%}: CSR size / (density x dense size)"
    scaled = harness.value(f"{model_name} {sparsity:.0%} density x dense raw size",
                           density * size["dense", "raw"]["median"], "MiB")
    return [
        harness.ratio(label, size["csr", "raw"], scaled, **_target(label),
                      description="raw SavedModel bytes of the CSR export over density times the dense export's"),
        harness.ratio(f"{model_name} {sparsity:.0%}: CSR weights / (density x dense weights)",
                      size["csr", "weights"],
                      harness.value(f"{model_name} {sparsity:.0%} density x dense weights",
                                    density * size["dense", "weights"]["median"], "MiB"),
                      description="profile: stored variables only (CSR keeps an int32 index per value)"),
        harness.ratio(f"{model_name} {sparsity:.0%}: CSR / dense gzip size", size["csr", "gzip"],
                      size["dense", "gzip"], description="the two exports as .tar.gz"),
    ]


def run(settings):
    models = list(MODELS) if settings.mode != "tiny" else ["lenet_300_100"]
    sparsities = (0.9, 0.95, TARGET_SPARSITY) if settings.mode == "full" else (TARGET_SPARSITY,)
    images, _, source = workloads.arrays("fashion_mnist", max(BATCHES), split="test")
    x = images.reshape(len(images), -1)
    measurements, comparisons, keras_importable = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in models:
            m, c, keras_importable[model_name] = _model(model_name, sparsities, x, settings, Path(tmp))
            measurements += m
            comparisons += c
    notes = [
        "CSR size: each nonzero is stored as a float32 value plus an int32 column index, so CSR "
        "weights take about 2 x density x the dense weights; the rest of each SavedModel is its "
        "graph and metadata, which does not shrink with sparsity (see the weights rows)."
    ]
    missed = [c for c in comparisons if "latency" in c["name"] and c["status"] == "not met"]
    if missed and settings.mode != "tiny":
        # export_latency's profile: one 4096x4096 kernel, dense matmul vs the two sparse kernels.
        sweep_m, sweep_c = export_latency._kernel_sweep(4096, settings.pick(9, 4, 2), settings.pick(10, 5, 2))
        measurements += sweep_m
        comparisons += sweep_c
        notes.append(
            f"latency missed in {len(missed)} case(s); the kernel rows time one 4096x4096 kernel at "
            f"{TARGET_SPARSITY:.0%} alone: the export uses the COO kernel up to batch "
            f"{ks.export.csr.SMALL_BATCH} and the CSR kernel above, so the kernel ratios bound "
            "what the whole export can gain; the rest is per-layer fixed cost (biases, activations, "
            "the call itself), which dominates small models such as LeNet-300-100."
        )
    return dict(
        config=dict(models={m: f"784-{'-'.join(map(str, MODELS[m]))}-10" for m in models},
                    sparsities=list(sparsities), distribution="uniform", batches=list(BATCHES),
                    loader="benchmarks.export_latency worker: tf.saved_model.load with keras, "
                           "keras_sparse and tf_keras blocked from import",
                    keras_importable_in_worker=keras_importable),
        data={"inputs": source},
        measurements=measurements,
        comparisons=comparisons,
        notes=notes,
    )
