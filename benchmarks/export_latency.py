"""Serving latency and size: dense vs CSR export of a wide 98%-sparse MLP.

`python -m benchmarks.export_latency [--quick | --tiny]` runs it standalone
(it follows the harness protocol: `NAME`, `TITLE`, `TARGETS`, `run`), prints
the ratios and sizes and writes `benchmarks/results/export_latency.json`.

The MLP 784-4096-4096-10 gets a random 98% mask on every layer (uniform) and
is exported twice with `ks.export.export_for_serving`: dense kernels, and
`sparse_format="csr"`. Both SavedModels are loaded from disk by one worker
process in which keras, keras_sparse and tf_keras cannot be imported (as in
TF Serving), and their `serving_default` signatures are timed side by side:
rounds alternate the order, warm-up rounds are dropped, each round is the
mean of `calls` calls, the result is the median over rounds.

"kernel" rows (informational) time one hidden x hidden 98% kernel alone in
this process at several batch sizes: dense matmul vs every kernel of
`keras_sparse.export.kernels` (what `sparse_format="auto"` chooses from;
the COO/CSR crossover is where the "csr" format's batch-8 switch comes from).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness

NAME = "export_latency"
TITLE = "TF Serving export: CSR vs dense SavedModel, MLP 784-4096-4096-10 at 98%"
SPARSITY = 0.98
BATCHES = (1, 64)
KERNEL_BATCHES = (1, 4, 8, 16, 64)
FORMATS = {"dense": None, "csr": "csr"}
TARGETS = [
    dict(name=f"batch {b}: csr / dense latency", target=1.0, op="<=",
         description="median serving_default call time, CSR export over dense export")
    for b in BATCHES
] + [
    dict(name=f"csr / dense {what}", target=1.0, op="<=", description=meaning)
    for what, meaning in (("size", "SavedModel directory, bytes on disk"),
                          ("gzip size", "SavedModel directory as an in-memory .tar.gz"))
]


def _model(hidden):
    import keras

    import keras_sparse as ks

    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    dense = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    return ks.sparsify(dense, SPARSITY, distribution="uniform", seed=0)


def run(settings):
    import keras_sparse as ks
    from benchmarks import workloads

    hidden = settings.pick(4096, 4096, 256)
    rounds = settings.pick(30, 10, 2)
    calls = settings.pick(20, 10, 2)
    images, _, source = workloads.arrays("fashion_mnist", max(BATCHES), split="test")
    x = images.reshape(len(images), -1)
    model = _model(hidden)
    expected = np.asarray(model(x, training=False))

    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: ks.export.export_for_serving(model, Path(tmp) / "mlp", sparse_format=fmt)
                 for kind, fmt in FORMATS.items()}
        reports = {kind: ks.export.report(path) for kind, path in paths.items()}
        np.save(Path(tmp) / "x.npy", x)
        with harness.Worker("benchmarks.export_latency", "--worker") as worker:
            loaded = worker.request("load", paths=paths, inputs=str(Path(tmp) / "x.npy"))
            measurements, comparisons = [], []
            for batch in BATCHES:
                times = harness.interleaved(
                    {kind: (lambda kind=kind: worker.request(
                        "time", kind=kind, batch=batch, calls=calls)["seconds"])
                     for kind in paths},
                    repeats=rounds, warmup=2,
                )
                found = {kind: harness.summary(f"batch {batch}: {kind} export", samples, "ms/call",
                                               scale=1000.0)
                         for kind, samples in times.items()}
                measurements += found.values()
                comparisons.append(harness.ratio(
                    f"batch {batch}: csr / dense latency", found["csr"], found["dense"],
                    **_target(f"batch {batch}: csr / dense latency"),
                    paired=(times["csr"], times["dense"])))

    kernel_measurements, kernel_comparisons = _kernel_sweep(hidden, rounds, calls)
    measurements += kernel_measurements
    comparisons += kernel_comparisons
    sizes = {}
    for what, key, unit in (("size", "size_bytes", "bytes"), ("gzip size", "gzip_bytes", "bytes")):
        sizes[what] = {kind: harness.value(f"{kind} export {what}", reports[kind][key], unit)
                       for kind in FORMATS}
        measurements += sizes[what].values()
        comparisons.append(harness.ratio(f"csr / dense {what}", sizes[what]["csr"],
                                         sizes[what]["dense"], **_target(f"csr / dense {what}")))
    diffs = {kind: float(np.abs(np.asarray(out) - expected).max())
             for kind, out in loaded["outputs"].items()}
    if max(diffs.values()) > 1e-5:
        raise RuntimeError(f"the exports disagree with the Keras model: {diffs}")
    return dict(
        config=dict(model=f"MLP 784-{hidden}-{hidden}-10", sparsity=SPARSITY,
                    distribution="uniform", batches=list(BATCHES), rounds=rounds,
                    calls_per_round=calls, warmup_rounds=2),
        data=dict(inputs=source, max_abs_diff_vs_keras=diffs,
                  keras_importable_in_worker=loaded["keras_importable"],
                  kernels={kind: [(r["layer"], r["format"], r["sparsity"])
                                  for r in reports[kind]["layers"] if r["weight"] == "kernel"]
                           for kind in FORMATS}),
        measurements=measurements,
        comparisons=comparisons,
    )


def _kernel_sweep(hidden, rounds, calls):
    """The hidden x hidden kernel alone (bias and ReLU included): every export kernel vs dense."""
    import tensorflow as tf

    from keras_sparse.export import encoding, kernels

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((hidden, hidden)).astype("float32")
    kernel[rng.random(kernel.shape) < SPARSITY] = 0.0
    bias = tf.constant(rng.standard_normal(hidden).astype("float32"))
    rows, cols, values = encoding.nonzeros(kernel)
    width = int(np.bincount(rows, minlength=hidden).max())
    tensors = kernels.eager_tensors(rows, cols, values, hidden, hidden, width,
                                    sorted({n for k in kernels.KERNELS for n in kernels.NEEDS[k]}))
    functions = {k: tf.function(lambda x, k=k: kernels.apply(k, x, tensors, bias, tf.nn.relu, hidden))
                 for k in kernels.KERNELS}
    functions[CSR_BUILT_ONCE] = _csr_built_once(tensors, bias, hidden, hidden)
    measurements, comparisons = [], []
    for batch in KERNEL_BATCHES:
        x = tf.constant(rng.standard_normal((batch, hidden)).astype("float32"))

        def timed(fn, x=x):
            start = time.perf_counter()
            for _ in range(calls):
                fn(x).numpy()
            return (time.perf_counter() - start) / calls

        times = harness.interleaved({k: (lambda fn=fn: timed(fn)) for k, fn in functions.items()},
                                    repeats=rounds, warmup=2)
        found = {k: harness.summary(f"kernel batch {batch}: {k}", samples, "ms/call", scale=1000.0)
                 for k, samples in times.items()}
        measurements += found.values()
        for k in kernels.KERNELS[1:] + (CSR_BUILT_ONCE,):
            comparisons.append(harness.ratio(
                f"kernel batch {batch}: dense / {k}", found["dense"], found[k],
                description=(f"{hidden}x{hidden} kernel at {SPARSITY:.0%} with bias and ReLU, "
                             "alone, in process" + (CSR_PROBE if k == CSR_BUILT_ONCE else "")),
                paired=(times["dense"], times[k])))
    return measurements, comparisons


# A probe, not an export kernel: what `csr` would take if the SavedModel
# could keep its CSR matrix instead of converting the COO positions per call.
CSR_BUILT_ONCE = "csr built once (probe)"
CSR_PROBE = ("; probe: the CSR matrix built once in this process and the product run eagerly. "
             "No SavedModel can do this in TF 2.21: a CSR matrix read from a resource carries "
             "no dense shape, and `tf.saved_model.load` rebuilds every function with shape "
             "inference, where `SparseMatrixMatMul` then fails (\"Unable to access shape and "
             "type info from variant input 0\")")


def _csr_built_once(tensors, bias, units, input_dim):
    """`csr`'s product and epilogue on a CSR matrix converted once (eager: a
    traced function cannot take the matrix as an argument, see CSR_PROBE)."""
    import tensorflow as tf

    matrix = tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=tensors["coo_indices"], values=tensors["values"],
        dense_shape=tf.constant([units, input_dim], tf.int64))

    def call(x):
        y = tf.raw_ops.SparseMatrixMatMul(a=matrix, b=x, transpose_b=True, transpose_output=True)
        return tf.nn.relu(tf.nn.bias_add(y, bias))
    return call


def _target(name):
    target = next(t for t in TARGETS if t["name"] == name)
    return dict(target=target["target"], op=target["op"], description=target["description"])


# -- the TensorFlow-only worker -------------------------------------------------

_served = {}


def _load(paths, inputs):
    import tensorflow as tf

    _served["x"] = np.load(inputs)
    outputs = {}
    for kind, path in paths.items():
        fn = tf.saved_model.load(path).signatures["serving_default"]
        _served[kind] = fn
        outputs[kind] = fn(pixels=tf.constant(_served["x"]))["logits"].numpy().tolist()
    importable = [m for m, module in sys.modules.items() if module is not None
                  and m.split(".")[0] in ("keras", "keras_sparse", "tf_keras")]
    return dict(outputs=outputs, keras_importable=bool(importable))


def _time(kind, batch, calls):
    import tensorflow as tf

    fn, x = _served[kind], tf.constant(_served["x"][:batch])
    start = time.perf_counter()
    for _ in range(calls):
        fn(pixels=x)["logits"].numpy()
    return dict(seconds=(time.perf_counter() - start) / calls)


def _stream(nbytes, calls):
    """Seconds to read `nbytes` of float32 once (a sum), less the same call
    on 4 bytes: what streaming them from memory costs."""
    import tensorflow as tf

    if (nbytes, "big") not in _served:  # built once per size, then reused every round
        big = tf.Variable(tf.ones([max(1, nbytes // 4)], tf.float32))
        small = tf.Variable(tf.ones([1], tf.float32))
        _served[nbytes, "big"] = tf.function(lambda: tf.reduce_sum(big))
        _served[nbytes, "small"] = tf.function(lambda: tf.reduce_sum(small))
        _served[nbytes, "big"]()
        _served[nbytes, "small"]()
    seconds = {"big": 0.0, "small": 0.0}
    for _ in range(calls):  # alternating, so that both see the same state of the machine
        for which in ("big", "small"):
            start = time.perf_counter()
            _served[nbytes, which]().numpy()
            seconds[which] += time.perf_counter() - start
    return dict(seconds=max(0.0, seconds["big"] - seconds["small"]) / calls)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_latency",
                                     description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds")
    size.add_argument("--tiny", action="store_true", help="256-unit MLP, a few rounds (tests)")
    size.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        for name in ("keras", "keras_sparse", "tf_keras"):
            sys.modules[name] = None  # as in TF Serving: the export must not need them
        harness.serve({"load": _load, "time": _time, "stream": _stream})
        return 0
    settings = harness.Settings("quick" if args.quick else "tiny" if args.tiny else "full")
    result = harness.run(sys.modules[__name__], settings)
    for m in result["measurements"]:
        print(f"{m['name']:>28}: median {m['median']:.4g} {m['unit']} "
              f"[{m['q1']:.4g}-{m['q3']:.4g}]")
    for c in result["comparisons"]:
        print(f"{c['name']:>28}: ratio {c['ratio']} -> {c['status']}")
    ok = result["status"] == "ok"
    print(f"status ok, {result['duration_s']} s" if ok else result["notes"][-1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
