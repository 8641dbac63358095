"""Peak memory (RSS) of sparse vs dense training, each in its own process.

Run as a module, this is the worker measuring one configuration: a fresh
process per configuration, so each peak belongs to that configuration alone.
"""

import gc

import keras_sparse as ks
from benchmarks import harness, workloads

NAME = "memory"
TITLE = "Peak memory (RSS) of sparse vs dense training"
SPARSITY = 0.9
TARGET = 2.0
TARGETS = [
    dict(name=f"{model}: sparse / dense {what}", target=TARGET, op="<=", description=meaning)
    for model in workloads.MODELS
    for what, meaning in (
        ("peak RSS", "peak resident memory of the process while building and training"),
        ("training growth", "peak RSS minus the RSS before the model was built"),
    )
]


def measure(model_name, kind, batch_size, steps):
    """Worker: trains `steps` steps of one configuration, returns its memory.

    The peak is restarted after TensorFlow and the data are loaded, so it
    is the peak while the model is built and trained (it still includes
    everything resident: TensorFlow, the data).
    """
    x, y, source = workloads.arrays(workloads.MODELS[model_name], batch_size * 4)
    dataset = workloads.batches(x, y, batch_size)
    gc.collect()
    restarted = harness.reset_peak_rss()
    baseline, _ = harness.rss_mb()
    model = workloads.build(model_name)
    if kind == "sparse":
        model = ks.sparsify(model, SPARSITY, distribution="erk", seed=0)
    workloads.compile_model(model)
    workloads.stepper(model, dataset, steps)()
    _, peak = harness.rss_mb()
    return dict(peak_rss_mb=peak, baseline_rss_mb=baseline if restarted else None, data=source)


def run(settings):
    models = list(workloads.MODELS) if settings.mode != "tiny" else ["lenet_300_100"]
    batch_size = settings.pick(128, 128, 32)
    steps = settings.pick(10, 5, 2)
    repeats = settings.pick(3, 1, 1)
    peaks = {(m, k): [] for m in models for k in ("dense", "sparse")}
    growth = {key: [] for key in peaks}
    data = {}
    for round_index in range(repeats):
        kinds = ("dense", "sparse") if round_index % 2 == 0 else ("sparse", "dense")
        for model_name in models:
            for kind in kinds:
                with harness.Worker("benchmarks.memory") as worker:
                    reply = worker.request(
                        "measure", model_name=model_name, kind=kind, batch_size=batch_size, steps=steps
                    )
                peaks[model_name, kind].append(reply["peak_rss_mb"])
                if reply["baseline_rss_mb"] is not None:
                    growth[model_name, kind].append(reply["peak_rss_mb"] - reply["baseline_rss_mb"])
                data[workloads.MODELS[model_name]] = reply["data"]
    measurements, comparisons = [], []
    for model_name in models:
        for label, table in (("peak RSS", peaks), ("training growth", growth)):
            target = next(t for t in TARGETS if t["name"] == f"{model_name}: sparse / dense {label}")
            if not table[model_name, "dense"]:  # no resettable peak on this OS
                comparisons.append(harness.missing(**target))
                continue
            dense = harness.summary(f"{model_name}/dense {label}", table[model_name, "dense"], "MiB")
            sparse = harness.summary(f"{model_name}/sparse {label}", table[model_name, "sparse"], "MiB")
            measurements += [dense, sparse]
            comparisons.append(harness.ratio(
                target["name"], sparse, dense, target=TARGET, op="<=", description=target["description"],
                paired=(table[model_name, "sparse"], table[model_name, "dense"]),
            ))
    return dict(
        config=dict(
            batch_size=batch_size, steps=steps, repeats=repeats, sparsity=SPARSITY, distribution="erk",
            process="one fresh process per configuration and repeat; peak = VmHWM restarted "
                    "after TensorFlow and the data are loaded",
        ),
        data=data,
        measurements=measurements,
        comparisons=comparisons,
        notes=[
            "peak RSS is the whole process while the model is built and trained: TensorFlow and "
            "the data (the same on both sides) included; training growth is that peak minus the "
            "RSS just before the model was built."
        ],
    )


if __name__ == "__main__":
    harness.serve({"measure": measure})
