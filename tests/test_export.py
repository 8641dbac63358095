"""TF Serving export: fresh-process loading, CSR, versions, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_sparse as ks
from keras_sparse.export import csr

TFDS_DIR = str(
    Path(os.environ["TFDS_DATA_DIR"]).resolve()
    if os.environ.get("TFDS_DATA_DIR")
    else Path(__file__).resolve().parents[2] / "shared" / "tfds"
)
TOL = 1e-5

# The serving side: a process where keras, keras_sparse and tf_keras cannot
# be imported (`import tensorflow` alone would load Keras when installed),
# then tensorflow_serving's protos (what a client sends). SPEC_PATH: a JSON list.
SERVING_SIDE = r"""
import json, sys
for name in ("keras", "keras_sparse", "tf_keras"):
    sys.modules[name] = None  # any import of them now fails
import numpy as np
import tensorflow as tf

spec = json.load(open(SPEC_PATH))
report = {}
for item in spec:
    loaded = tf.saved_model.load(item["path"])
    fn = loaded.signatures["serving_default"]
    inputs = {k: np.load(v) for k, v in item["inputs"].items()}
    expected = {k: np.load(v) for k, v in item["expected"].items()}
    diffs = {}
    for rows in item["batch_rows"]:
        out = fn(**{k: tf.constant(v[:rows]) for k, v in inputs.items()})
        diffs[rows] = max(float(np.abs(out[k].numpy() - e[:rows]).max())
                          for k, e in expected.items())
    # TF Serving's own loader: a TF1 session on the MetaGraph, fed by tensor name.
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.load(session, ["serve"], item["path"])
        signature = meta.signature_def["serving_default"]
        fetched = session.run({k: t.name for k, t in signature.outputs.items()},
                              {signature.inputs[k].name: v for k, v in inputs.items()})
    report[item["name"]] = dict(
        inputs=sorted(fn.structured_input_signature[1]),
        outputs=sorted(fn.structured_outputs),
        variables=[v.name for v in loaded.model_variables],
        diffs=diffs,
        session_diff=max(float(np.abs(fetched[k] - e).max()) for k, e in expected.items()),
    )
imported = sorted(m for m, module in sys.modules.items() if module is not None
                  and m.split(".")[0] in ("keras", "keras_sparse", "tf_keras"))

from tensorflow_serving.apis import predict_pb2

for item in spec:
    request = predict_pb2.PredictRequest.FromString(open(item["request"], "rb").read())
    fn = tf.saved_model.load(item["path"]).signatures["serving_default"]
    feed = {k: tf.make_ndarray(proto) for k, proto in request.inputs.items()}
    out = fn(**feed)
    report[item["name"]]["request_diff"] = max(
        float(np.abs(out[k].numpy() - np.load(v)).max()) for k, v in item["expected"].items())
print("@@" + json.dumps(dict(report=report, imported=imported)))
"""


def _fashion_mnist(split):
    data = tfds.load("fashion_mnist", split=split, batch_size=-1, data_dir=TFDS_DIR,
                     download=False)
    data = tfds.as_numpy(data)
    return data["image"].astype("float32") / 255.0, data["label"]


def _train(model, x, y, steps=4):
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[: 32 * steps], y[: 32 * steps], batch_size=32, epochs=1, verbose=0)
    return model


def _mlp():
    inputs = keras.Input((784,), name="pixels")
    x = keras.layers.Dense(256, activation="relu", name="hidden_1")(inputs)
    x = keras.layers.Dense(256, activation="relu", name="hidden_2")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def _cnn():
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))


@pytest.fixture(scope="module")
def trained():
    """Sparse-trained MLP (98% uniform) and CNN (90% ERK) with a real test batch."""
    x, y = _fashion_mnist("train[:128]")
    batch, _ = _fashion_mnist("test[:32]")
    mlp = _train(ks.sparsify(_mlp(), 0.98, distribution="uniform", seed=1),
                 x.reshape(-1, 784), y)
    cnn = _train(ks.sparsify(_cnn(), 0.9, distribution="erk", seed=2), x, y)
    return {
        "mlp": (mlp, {"pixels": batch.reshape(-1, 784)}),
        "cnn": (cnn, {"image": batch}),
    }


@pytest.fixture(scope="module")
def exports(trained, tmp_path_factory):
    """`{name: (version dir, inputs, expected outputs)}`, dense and CSR."""
    root = tmp_path_factory.mktemp("saved_models")
    found = {}
    for name, (model, inputs) in trained.items():
        expected = model(inputs[next(iter(inputs))], training=False)
        out_name = model.layers[-1].name
        for fmt in (None, "csr"):
            path = ks.export.export_for_serving(model, root / name, sparse_format=fmt)
            found[f"{name}-{fmt or 'dense'}"] = (path, inputs, {out_name: np.asarray(expected)})
    return found


def test_serving_side_loads_with_tensorflow_only(exports, run_python, tmp_path):
    """Done 1 and 2: fresh TF-only process, TF1 session, PredictRequest."""
    from tensorflow_serving.apis import predict_pb2

    spec = []
    for name, (path, inputs, expected) in exports.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name.split("-")[0]
        request.model_spec.signature_name = "serving_default"
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        files = {"request": tmp_path / f"{name}.pb"}
        files["request"].write_bytes(request.SerializeToString())
        for group, arrays in (("inputs", inputs), ("expected", expected)):
            files[group] = {}
            for key, value in arrays.items():
                np.save(tmp_path / f"{name}-{group}-{key}.npy", value)
                files[group][key] = str(tmp_path / f"{name}-{group}-{key}.npy")
        # 1 row takes the COO kernel, 32 the CSR one (csr.SMALL_BATCH = 8).
        spec.append(dict(name=name, path=path, batch_rows=[1, 32], request=str(files["request"]),
                         inputs=files["inputs"], expected=files["expected"]))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = run_python(SERVING_SIDE.replace("SPEC_PATH", repr(str(tmp_path / "spec.json"))))
    result = json.loads(out.split("@@", 1)[1])

    assert result["imported"] == []
    for name, (_, inputs, expected) in exports.items():
        got = result["report"][name]
        assert got["inputs"] == sorted(inputs) and got["outputs"] == sorted(expected), name
        assert max(got["diffs"].values()) <= TOL, (name, got["diffs"])
        assert got["session_diff"] <= TOL, name
        assert got["request_diff"] <= TOL, name
        assert not [v for v in got["variables"] if "mask" in v], name


def test_saved_model_cli_lists_named_signature(exports):
    path, inputs, expected = exports["mlp-csr"]
    # The console script tensorflow installs next to this interpreter.
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", path, "--all"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    assert "signature_def['serving_default']" in text
    assert "inputs['pixels'] tensor_info" in text
    assert "outputs['logits'] tensor_info" in text
    assert "output_0" not in text


def test_csr_export_is_smaller_and_keeps_other_layers_dense(exports, trained):
    mlp_dense, mlp_csr = (ks.export.report(exports[f"mlp-{f}"][0]) for f in ("dense", "csr"))
    assert mlp_csr["size_bytes"] < mlp_dense["size_bytes"]
    kernels = [r for r in mlp_csr["layers"] if r["weight"] == "kernel"]
    assert [r["format"] for r in kernels] == ["csr"] * 3
    # Same weights either way: the CSR rows count what the dense export stores.
    assert mlp_csr["layers"][-1]["nonzero"] == mlp_dense["layers"][-1]["nonzero"]
    active = ks.sparsity_report(trained["mlp"][0])[-1]["active"]
    assert sum(r["nonzero"] for r in kernels) == active

    # ERK: each Dense kernel is CSR iff its own sparsity reaches 0.9.
    cnn = ks.export.report(exports["cnn-csr"][0])["layers"]
    formats = {r["layer"]: r["format"] for r in cnn if r["weight"] == "kernel"}
    sparsity = {r["layer"]: r["sparsity"] for r in ks.sparsity_report(trained["cnn"][0])}
    assert formats["conv"] == "dense" and "csr" in formats.values()
    for layer in ("hidden", "scores"):
        assert formats[layer] == ("csr" if sparsity[layer] >= 0.9 else "dense"), sparsity
    assert {r["format"] for r in cnn if r["layer"] == "bn"} == {"dense"}


def test_report_of_a_model_matches_its_export(exports, trained):
    from_model = ks.export.report(trained["mlp"][0], sparse_format="csr")
    from_path = ks.export.report(exports["mlp-csr"][0])
    assert from_model["path"] is None
    assert from_model["layers"] == from_path["layers"]
    assert 0 < from_path["gzip_bytes"] < from_path["size_bytes"]
    with pytest.raises(ValueError, match="path_or_model"):
        ks.export.report(str(Path(exports["mlp-csr"][0]).parent))


def test_csr_kernels_both_batch_paths_and_einsum(tmp_path):
    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 40), name="tokens")
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 48), bias_axes="d",
                                 activation="relu", name="proj")(inputs)
    x = keras.layers.EinsumDense("abc,dc->abd", output_shape=(None, 24), name="proj_t")(x)
    x = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 3), name="heads")(x)
    x = keras.layers.Reshape((6 * 12,))(x)
    outputs = keras.layers.Dense(5, name="out")(x)
    model = ks.sparsify(keras.Model(inputs, outputs), 0.95, distribution="uniform")
    data = rng.standard_normal((20, 6, 40)).astype("float32")
    path = ks.export.export_for_serving(model, tmp_path / "einsum", sparse_format="csr")
    formats = {r["layer"]: r["format"] for r in ks.export.report(path)["layers"]
               if r["weight"] == "kernel"}
    # A 3-D kernel ("heads") is not a plain matmul; the others are.
    assert formats == {"proj": "csr", "proj_t": "csr", "heads": "dense", "out": "csr"}
    serve = tf.saved_model.load(path).signatures["serving_default"]
    expected = np.asarray(model(data, training=False))
    # The einsum layers see rows * 6 vectors: both kernels of csr_matmul run.
    for rows in (1, csr.SMALL_BATCH + 1, 20):
        got = serve(tokens=tf.constant(data[:rows]))["out"].numpy()
        np.testing.assert_allclose(got, expected[:rows], atol=TOL, rtol=0)


def test_csr_layer_in_mixed_precision_and_without_bias(tmp_path):
    inputs = keras.Input((64,), name="x")
    hidden = keras.layers.Dense(64, use_bias=False, dtype="mixed_float16", name="half")(inputs)
    model = ks.sparsify(keras.Model(inputs, keras.layers.Dense(3, name="y")(hidden)),
                        0.95, distribution="uniform")
    data = np.random.default_rng(1).standard_normal((4, 64)).astype("float32")
    path = ks.export.export_for_serving(model, tmp_path / "mp", sparse_format="csr",
                                        min_sparsity=0.5)
    rows = ks.export.report(path)["layers"]
    assert [(r["layer"], r["format"]) for r in rows if r["weight"] == "kernel"] == [
        ("half", "csr"), ("y", "csr")]
    got = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(data))["y"]
    # Keras computes "half" in float16; the CSR layer in its float32 variables.
    np.testing.assert_allclose(got.numpy(), np.asarray(model(data), "float32"), atol=2e-2)


def test_named_inputs_and_outputs_of_a_multi_io_model(tmp_path):
    a, b = keras.Input((4,), name="feat_a"), keras.Input((3,), name="feat_b")
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = ks.sparsify(keras.Model({"feat_a": a, "feat_b": b},
                                    [keras.layers.Dense(2, name="head_one")(h),
                                     keras.layers.Dense(1, name="head_two")(h)]), 0.5)
    serve = tf.saved_model.load(ks.export.export_for_serving(model, tmp_path / "multi")
                                ).signatures["serving_default"]
    assert sorted(serve.structured_input_signature[1]) == ["feat_a", "feat_b"]
    assert sorted(serve.structured_outputs) == ["head_one", "head_two"]
    feed = {"feat_a": np.ones((2, 4), "float32"), "feat_b": np.ones((2, 3), "float32")}
    got = serve(**{k: tf.constant(v) for k, v in feed.items()})
    for name, expected in zip(("head_one", "head_two"), model(feed)):
        np.testing.assert_allclose(got[name].numpy(), np.asarray(expected), atol=TOL)


def _tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*"))
            if p.is_file()}


def test_versions_and_overwrite(tmp_path):
    base = tmp_path / "models" / "tiny"  # parents are created
    model = ks.sparsify(_tiny(), 0.5)
    first = ks.export.export_for_serving(model, base)
    second = ks.export.export_for_serving(model, str(base))
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]

    before = _tree(first)
    with pytest.raises(ValueError, match=r"`version` 1 already exists.*overwrite=True"):
        ks.export.export_for_serving(model, base, version=1)
    assert _tree(first) == before and sorted(os.listdir(base)) == ["1", "2"]

    other = ks.sparsify(_tiny(), 0.5, seed=7)
    assert ks.export.export_for_serving(other, base, version=1, overwrite=True) == first
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary or retired directory left
    x = np.ones((1, 8), "float32")
    served = tf.saved_model.load(first).signatures["serving_default"](x=tf.constant(x))
    np.testing.assert_allclose(served["y"].numpy(), np.asarray(other(x)), atol=TOL)
    assert ks.export.export_for_serving(model, base, version=10) == str(base / "10")
    assert ks.export.export_for_serving(model, base) == str(base / "11")


def _tiny():
    inputs = keras.Input((8,), name="x")
    return keras.Model(inputs, keras.layers.Dense(4, name="y")(inputs))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(model=_Subclassed), ValueError, "never called.*input_signature"),
    (dict(model=lambda: keras.Sequential([keras.layers.Dense(2)])), ValueError,
     "has no inputs defined"),
    (dict(model=lambda: "model.keras"), TypeError, "`model` must be a keras.Model"),
    (dict(sparse_format="coo"), ValueError,
     r"unknown `sparse_format` 'coo'; allowed: \[None, 'csr', 'auto'\]"),
    (dict(version=-1), ValueError, "`version` must be an integer >= 0 or None; got -1"),
    (dict(version="2"), TypeError, "`version` must be an integer >= 0 or None; got '2'"),
    (dict(min_sparsity=1.5), ValueError, r"`min_sparsity` must be in \[0, 1\]; got 1.5"),
    (dict(overwrite="yes"), TypeError, "`overwrite` must be a bool"),
    (dict(base_dir=3), TypeError, "`base_dir` must be a path"),
])
def test_bad_arguments_raise_before_writing(tmp_path, kwargs, error, message):
    arguments = {"model": _tiny, "base_dir": tmp_path / "out", **kwargs}
    arguments["model"] = arguments["model"]()
    with pytest.raises(error, match=message):
        ks.export.export_for_serving(**arguments)
    assert not (tmp_path / "out").exists()


def test_base_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"cannot create `base_dir` .*file/models.*not a dir"):
        ks.export.export_for_serving(_tiny(), blocker / "models")
    assert blocker.read_text() == "not a directory"


def test_keras_file_of_the_sparse_model_still_trains(tmp_path, trained):
    model = trained["mlp"][0]
    model.save(tmp_path / "mlp.keras")
    loaded = keras.models.load_model(tmp_path / "mlp.keras")
    assert isinstance(loaded, ks.SparseModel)
    masks = model.get_masks()
    assert all(np.array_equal(loaded.get_masks()[p], m) for p, m in masks.items())
    x, y = _fashion_mnist("train[:64]")
    loaded.fit(x.reshape(-1, 784), y, batch_size=32, epochs=1, verbose=0)
    assert ks.sparsity_report(loaded)[-1]["active"] == ks.sparsity_report(model)[-1]["active"]
    for mw in loaded.masked_weights:
        assert not np.any(np.asarray(mw.weight)[masks[mw.path] == 0])
