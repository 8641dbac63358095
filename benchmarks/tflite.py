"""TFLite: dense vs sparse flatbuffer, size and batch-1 latency, XNNPACK on and off.

`python -m benchmarks.tflite [--quick | --tiny]` runs it standalone (harness
protocol: `NAME`, `TITLE`, `TARGETS`, `run`) and writes
`benchmarks/results/tflite.json`.

Three models, each exported twice with `ks.export.export_tflite`
(`optimize_sparsity=False` for the dense flatbuffer):

- the MLP 784-4096-4096-10 with a random 98% mask on every layer (uniform);
- the same MLP with 98% of its 1x4 blocks inactive, the block TFLite's
  sparse FULLY_CONNECTED kernel reads: four consecutive inputs of one unit
  (`ks.structures.Block((4, 1))` on a Keras `(inputs, units)` kernel);
- a MobileNet-style CNN (3x3 stride-2 stem, depthwise 3x3 + pointwise 1x1
  blocks, global average pool) at 90% (ERK, the stem dense), built to the
  shape rules of XNNPACK's sparse inference (symmetric padding, 1x1
  pointwise convolutions, a spatial MEAN at the end).

A worker process that imports only TensorFlow loads every flatbuffer with
`tf.lite.Interpreter` twice: with the default XNNPACK delegate, and with
`BUILTIN_WITHOUT_DEFAULT_DELEGATES` (TFLite's own kernels). It reports how
many nodes of each operator the delegate took and times `invoke()` at
batch 1, the variants interleaved round by round. Whether XNNPACK's sparse
path ran is read from the measurements, not assumed: a FULLY_CONNECTED
node the delegate did not take runs TFLite's own (sparse) kernel, and
XNNPACK's sparse CNN path would take the DENSIFY nodes and make the sparse
flatbuffer faster than the dense one under XNNPACK.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness

NAME = "tflite"
TITLE = "TFLite export: sparse vs dense flatbuffer, MLP-4096 at 98% and a MobileNet-style CNN at 90%"
MODELS = ("mlp_unstructured", "mlp_block_1x4", "cnn")
TARGETS = [
    dict(name="mlp_unstructured: sparse / dense size", target=0.10, op="<=",
         description="98%: a sparse format costs at most a value and an index per weight kept"),
    dict(name="mlp_block_1x4: sparse / dense size", target=0.10, op="<=",
         description="98% of 1x4 blocks inactive"),
    dict(name="cnn: sparse / dense size", target=0.25, op="<=",
         description="90% ERK; the stem, biases and batch norm stay dense"),
    dict(name="mlp_unstructured: sparse / dense latency, XNNPACK", target=1.0, op="<=",
         description="batch 1, invoke() time; never slower than the dense flatbuffer"),
    dict(name="mlp_block_1x4: sparse / dense latency, XNNPACK", target=1.0, op="<=",
         description="batch 1, invoke() time"),
]


def _mlp(hidden, block):
    import keras

    import keras_sparse as ks

    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    dense = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    if not block:
        return ks.sparsify(dense, 0.98, distribution="uniform", seed=0)
    if not hasattr(ks, "structures"):
        raise harness.NotAvailable("ks.structures (block masks) is not in this build")
    return ks.sparsify(dense, 0.98, distribution="uniform", seed=0,
                       structure=ks.structures.Block((4, 1)))


def _cnn(width, size):
    """A MobileNet-v1-style network within XNNPACK's sparse-inference rules."""
    import keras

    import keras_sparse as ks

    keras.utils.set_random_seed(0)
    layers = keras.layers

    def unit(x, filters, stride):
        if stride == 2:  # symmetric padding 1, as XNNPACK's sparse subgraph needs
            x = layers.ZeroPadding2D(1)(x)
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same" if stride == 1 else "valid",
                                   use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        return layers.ReLU(6.0)(layers.BatchNormalization()(x))

    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(width, 3, strides=2, use_bias=False, name="stem")(layers.ZeroPadding2D(1)(inputs))
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    for filters, stride in ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (16, 1), (32, 2)):
        x = unit(x, width * filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    dense = keras.Model(inputs, layers.Dense(10, name="logits")(x))
    return ks.sparsify(dense, 0.9, distribution="erk", seed=0, dense_layers=["stem"])


def run(settings):
    import keras_sparse as ks

    hidden = settings.pick(4096, 4096, 128)
    width, size = settings.pick((32, 224), (32, 224), (8, 32))
    rounds = settings.pick(30, 10, 2)
    calls = settings.pick(20, 10, 2)
    rng = np.random.default_rng(0)
    builders = {"mlp_unstructured": lambda: _mlp(hidden, block=False),
                "mlp_block_1x4": lambda: _mlp(hidden, block=True),
                "cnn": lambda: _cnn(width, size)}
    measurements, comparisons, data, notes = [], [], {}, []
    with tempfile.TemporaryDirectory() as tmp, \
            harness.Worker("benchmarks.tflite", "--worker") as worker:
        for name in MODELS:
            try:
                model = builders[name]()
            except harness.NotAvailable as error:
                notes.append(f"{name}: not available: {error}")
                continue
            x = rng.standard_normal((1,) + tuple(model.input_shape[1:])).astype("float32")
            expected = np.asarray(model(x, training=False))
            paths = {kind: str(Path(tmp) / f"{name}_{kind}.tflite") for kind in ("dense", "sparse")}
            reports = {kind: ks.export.export_tflite(model, paths[kind],
                                                     optimize_sparsity=kind == "sparse")
                       for kind in paths}
            np.save(Path(tmp) / f"{name}.npy", x)
            loaded = worker.request("load", name=name, paths=paths, inputs=str(Path(tmp) / f"{name}.npy"))
            diffs = {key: float(np.abs(np.asarray(out) - expected).max())
                     for key, out in loaded["outputs"].items()}
            if max(diffs.values()) > 1e-4:
                raise RuntimeError(f"{name}: TFLite outputs differ from Keras: {diffs}")
            variants = [f"{kind}/{delegate}" for kind in paths for delegate in ("xnnpack", "builtin")]
            times = harness.interleaved(
                {v: (lambda v=v: worker.request("time", name=name, variant=v, calls=calls)["seconds"])
                 for v in variants}, repeats=rounds, warmup=2)
            found = {v: harness.summary(f"{name}: {v}", times[v], "ms/call", scale=1000.0)
                     for v in variants}
            measurements += found.values()
            for delegate, label in (("xnnpack", "XNNPACK"), ("builtin", "TFLite kernels")):
                comparisons.append(harness.ratio(
                    f"{name}: sparse / dense latency, {label}", found[f"sparse/{delegate}"],
                    found[f"dense/{delegate}"], paired=(times[f"sparse/{delegate}"],
                                                        times[f"dense/{delegate}"]),
                    **_target(f"{name}: sparse / dense latency, {label}",
                              "batch 1, invoke() time")))
            comparisons.append(harness.ratio(
                f"{name}: sparse with / without XNNPACK latency", found["sparse/xnnpack"],
                found["sparse/builtin"], paired=(times["sparse/xnnpack"], times["sparse/builtin"]),
                description="below 1: the delegate speeds the sparse flatbuffer up"))
            sizes = {kind: harness.value(f"{name}: {kind} flatbuffer", reports["sparse"][key], "bytes")
                     for kind, key in (("dense", "dense_size_bytes"), ("sparse", "size_bytes"))}
            measurements += sizes.values()
            comparisons.append(harness.ratio(f"{name}: sparse / dense size", sizes["sparse"],
                                             sizes["dense"], **_target(f"{name}: sparse / dense size", "")))
            data[name] = dict(
                max_abs_diff_vs_keras=diffs,
                stored_sparse={r["layer"]: r["stored_sparse"] for r in reports["sparse"]["layers"]},
                operators_delegated_of_total=loaded["operators"],
                fully_connected_delegated=loaded["fully_connected_delegated"],
            )
    return dict(config=dict(mlp=f"MLP 784-{hidden}-{hidden}-10 at 98% (uniform)",
                            cnn=f"MobileNet-style, width {width}, {size}x{size}x3 at 90% (ERK, stem dense)",
                            batch=1, rounds=rounds, calls_per_round=calls, warmup_rounds=2,
                            interpreter="tf.lite.Interpreter, num_threads=1"),
                data=data, measurements=measurements, comparisons=comparisons, notes=notes)


def _target(name, description):
    for target in TARGETS:
        if target["name"] == name:
            return dict(target=target["target"], op=target["op"], description=target["description"])
    return dict(description=description)


# -- the TensorFlow-only worker -------------------------------------------------

_loaded = {}


def _interpreter(path, delegate):
    import tensorflow as tf
    from tensorflow.lite.python.interpreter import OpResolverType

    options = {} if delegate == "xnnpack" else dict(
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = tf.lite.Interpreter(model_path=path, num_threads=1, **options)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, x):
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _load(name, paths, inputs):
    import warnings

    warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
    x = np.load(inputs)
    outputs, operators, delegated = {}, {}, {}
    for kind, path in paths.items():
        for delegate in ("xnnpack", "builtin"):
            interpreter = _interpreter(path, delegate)
            key = f"{kind}/{delegate}"
            _loaded[(name, key)] = (interpreter, x)
            outputs[key] = _run(interpreter, x).tolist()
            operators[key] = _delegated(interpreter)
            delegated[key] = operators[key].get("FULLY_CONNECTED", [0, 0])[0] > 0
    return dict(outputs=outputs, operators=operators, fully_connected_delegated=delegated)


def _delegated(interpreter):
    """`{operator: [nodes the delegate took, nodes]}` of the model's own nodes.

    The node list keeps every original node and appends one DELEGATE node
    per partition, with the partition's input and output tensors. A node is
    delegated when it lies between them: reached walking back from a
    partition's outputs through the producers, stopping at its inputs.
    """
    nodes = interpreter._get_ops_details()
    own = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in own for t in n["outputs"]}
    taken = set()
    for partition in (n for n in nodes if n["op_name"] == "DELEGATE"):
        stop = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            node = producer.get(tensor)
            if tensor in stop or node is None or node in taken:
                continue
            taken.add(node)
            pending += [int(t) for t in nodes[node]["inputs"] if int(t) >= 0]
    counts = {}
    for n in own:
        entry = counts.setdefault(n["op_name"], [0, 0])
        entry[0] += n["index"] in taken
        entry[1] += 1
    return counts


def _time(name, variant, calls):
    interpreter, x = _loaded[(name, variant)]
    start = time.perf_counter()
    for _ in range(calls):
        _run(interpreter, x)
    return dict(seconds=(time.perf_counter() - start) / calls)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tflite", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds")
    size.add_argument("--tiny", action="store_true", help="small models, a few rounds (tests)")
    size.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        for module in ("keras", "keras_sparse", "tf_keras"):
            sys.modules[module] = None  # the flatbuffer must not need them
        harness.serve({"load": _load, "time": _time})
        return 0
    settings = harness.Settings("quick" if args.quick else "tiny" if args.tiny else "full")
    result = harness.run(sys.modules[__name__], settings)
    for m in result["measurements"]:
        print(f"{m['name']:>40}: {m['median']:.4g} {m['unit']}")
    for c in result["comparisons"]:
        print(f"{c['name']:>52}: {c['ratio']} -> {c['status']}")
    print(result["notes"])
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
