"""Export kernels and compact storage: same outputs as dense, honest choices, small files."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.export import encoding, kernels, selection, sparse_dense

TOL = 1e-5


def _sparse_kernel(shape, sparsity, seed=0, empty_rows=()):
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal(shape).astype("float32")
    kernel[rng.random(shape) < sparsity] = 0.0
    for unit in empty_rows:  # an output unit with no input: an empty row of W^T
        kernel[:, unit] = 0.0
    return kernel


@pytest.mark.parametrize("index_format", encoding.INDEX_FORMATS)
def test_index_formats_decode_to_the_same_positions(index_format):
    # 99.5%: many gaps of 255+ (escape codes); empty first and last rows.
    kernel = _sparse_kernel((700, 30), 0.995, empty_rows=(0, 29))
    rows, cols, _ = encoding.nonzeros(kernel)
    fmt, arrays = encoding.encode(rows, cols, 30, 700, index_format)
    assert fmt == index_format
    if fmt == "delta8":
        assert (arrays["index_codes"] == encoding.ESCAPE).any()  # escapes exercised
    got_rows, got_cols = encoding.decode(fmt, {k: tf.constant(v) for k, v in arrays.items()}, 30, 700)
    np.testing.assert_array_equal(got_rows.numpy(), rows)
    np.testing.assert_array_equal(got_cols.numpy(), cols)


def test_smaller_index_format_is_chosen():
    at_98 = encoding.nonzeros(_sparse_kernel((300, 100), 0.98))
    assert encoding.encode(at_98[0], at_98[1], 100, 300)[0] == "delta8"  # ~1 byte per nonzero
    at_9999 = encoding.nonzeros(_sparse_kernel((3000, 200), 0.9999))
    assert encoding.encode(at_9999[0], at_9999[1], 200, 3000)[0] == "uint16"  # long gaps


def _kernel_fn(kernel_name, kernel, bias):
    input_dim, units = kernel.shape
    rows, cols, values = encoding.nonzeros(kernel)
    width = max(1, int(np.bincount(rows, minlength=units).max())) if rows.size else 1
    tensors = kernels.eager_tensors(rows, cols, values, units, input_dim, width,
                                    kernels.NEEDS[kernel_name])
    # One trace for every batch size, as in the SavedModel.
    return tf.function(lambda x: kernels.apply(kernel_name, x, tensors, tf.constant(bias),
                                               tf.nn.relu, units),
                       input_signature=[tf.TensorSpec([None, input_dim], tf.float32)])


@pytest.mark.parametrize("kernel_name", kernels.KERNELS)
def test_each_kernel_matches_the_dense_product(kernel_name):
    kernel = _sparse_kernel((96, 40), 0.95, empty_rows=(39,))
    kernel[5, :] = 0.0  # an input feeding no unit: an empty column of W^T
    bias = np.random.default_rng(1).standard_normal(40).astype("float32")
    fn = _kernel_fn(kernel_name, kernel, bias)
    for batch in (1, 7, 64):
        x = np.random.default_rng(batch).standard_normal((batch, 96)).astype("float32")
        np.testing.assert_allclose(fn(tf.constant(x)).numpy(), np.maximum(x @ kernel + bias, 0),
                                   atol=TOL, rtol=0)


@pytest.mark.parametrize("kernel_name", ["coo_split2", "csr_split2"])
@pytest.mark.parametrize("case", ["one_unit", "first_and_last_units", "all_zero"])
def test_split_kernels_handle_lopsided_blocks(kernel_name, case):
    """Row blocks split the nonzeros in halves: a block may be empty or hold one row."""
    kernel = np.zeros((30, 12), np.float32)
    rng = np.random.default_rng(4)
    if case == "one_unit":  # every nonzero in unit 0: the first block has no rows
        kernel[:, 0] = rng.standard_normal(30)
    elif case == "first_and_last_units":
        kernel[::3, 0], kernel[1::4, 11] = rng.standard_normal(10), rng.standard_normal(8)
    bias = rng.standard_normal(12).astype("float32")
    fn = _kernel_fn(kernel_name, kernel, bias)
    for batch in (1, 3, 64):
        x = rng.standard_normal((batch, 30)).astype("float32")
        np.testing.assert_allclose(fn(tf.constant(x)).numpy(), np.maximum(x @ kernel + bias, 0),
                                   atol=TOL, rtol=0)


def _graph_ops(layer, input_shape, dtype="float32"):
    fn = tf.function(lambda x: layer(x), input_signature=[tf.TensorSpec(input_shape, dtype)])
    return [op.type for op in fn.get_concrete_function().graph.get_operations()]


def test_all_dense_layer_runs_the_same_ops_as_a_keras_dense():
    """No cast, reshape, dispatch or unused read: the graph of a plain Dense."""
    inputs = keras.Input((64,))
    dense = keras.layers.Dense(32, activation="relu")
    keras.Model(inputs, dense(inputs))
    dense.kernel.assign(_sparse_kernel((64, 32), 0.95))
    sparse = sparse_dense.SparseKernelDense.from_layer(dense, [(None, "dense")])
    ops = _graph_ops(sparse, [None, 64])
    assert sorted(ops) == sorted(_graph_ops(dense, [None, 64]))
    assert {"MatMul", "BiasAdd", "Relu"} <= set(ops)
    assert not {"Cast", "Reshape", "If", "StatelessIf", "Case", "StatelessCase", "Shape"} & set(ops)
    # Two reads: the dense kernel rebuilt at load and the bias; not `values`.
    assert ops.count("ReadVariableOp") == 2
    x = np.random.default_rng(0).standard_normal((5, 64)).astype("float32")
    np.testing.assert_allclose(np.asarray(sparse(x)), np.asarray(dense(x)), atol=TOL, rtol=0)


def test_layer_adds_reshape_cast_and_dispatch_only_when_needed():
    inputs = keras.Input((64,))
    dense = keras.layers.Dense(32)
    keras.Model(inputs, dense(inputs))
    dense.kernel.assign(_sparse_kernel((64, 32), 0.95))
    two = sparse_dense.SparseKernelDense.from_layer(dense, [(8, "coo"), (None, "dense")])
    ops = _graph_ops(two, [None, 64])
    assert {"StatelessIf", "If"} & set(ops)  # the batch-size dispatch
    # A batch size fixed in the signature: its kernel only, no dispatch.
    one, many = _graph_ops(two, [4, 64]), _graph_ops(two, [64, 64])
    assert not {"StatelessIf", "If"} & (set(one) | set(many))
    assert "SparseTensorDenseMatMul" in one and "SparseTensorDenseMatMul" not in many
    assert "MatMul" in many
    assert "Reshape" not in ops
    assert "Reshape" in _graph_ops(two, [None, 3, 64])  # leading axes flattened
    # A float16 input is cast once for the float32 kernels.
    assert _graph_ops(two, [None, 64], "float16").count("Cast") == ops.count("Cast") + 1
    x = np.random.default_rng(1).standard_normal((2, 3, 64)).astype("float32")
    for batch in (x[:1, 0], x.reshape(6, 64), x):
        np.testing.assert_allclose(np.asarray(two(batch)), np.asarray(dense(batch)),
                                   atol=TOL, rtol=0)
    for batch in (1, 64):  # traced with the batch size fixed
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype("float32")
        fixed = tf.function(lambda t: two(t), input_signature=[tf.TensorSpec([batch, 64])])
        np.testing.assert_allclose(fixed(x).numpy(), np.asarray(dense(x)), atol=TOL, rtol=0)


def test_choose_prefers_dense_unless_a_sparse_kernel_is_clearly_faster():
    timings = {
        1: {"dense": 1.0, "coo": 0.5, "csr": 2.0},     # coo clearly faster
        8: {"dense": 1.0, "coo": 0.95, "csr": 1.2},    # within the margin: dense
        64: {"dense": 1.0, "coo": 3.0, "csr": 1.5},    # every sparse kernel slower
    }
    chosen = selection.choose(timings)
    assert chosen == {1: "coo", 8: "dense", 64: "dense"}
    for batch, kernel in chosen.items():
        assert timings[batch][kernel] <= timings[batch]["dense"]
    assert selection.regimes(chosen) == [(2, "coo"), (None, "dense")]
    assert selection.regimes({1: "ell_xla", 64: "csr"}) == [(8, "ell_xla"), (None, "csr")]
    assert selection.regimes({1: "csr", 8: "csr", 64: "dense"}) == [(22, "csr"), (None, "dense")]
    with pytest.raises(ValueError, match="no dense timing"):
        selection.choose({1: {"coo": 1.0}})


def test_time_candidates_scores_against_a_reference_by_paired_ratios(monkeypatch):
    # A fake clock: each call of a function advances it by that function's
    # next scripted duration. Round by round, dense takes 1, 2, 3 and the
    # sparse kernel 3, 0.5, 2.5: its per-round ratios are 3, 0.25, 0.83.
    clock = {"now": 0.0}
    script = {"dense": iter([1.0, 2.0, 3.0]), "coo": iter([3.0, 0.5, 2.5])}

    def fn(name):
        def call(x):
            clock["now"] += next(script[name])
            return x
        return call

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock["now"]

    monkeypatch.setattr(selection, "time", FakeTime)
    functions = {name: fn(name) for name in script}
    paired = selection.time_candidates(functions, {1: np.zeros(1)}, rounds=3, calls=1, warmup=0,
                                       reference="dense")[1]
    assert paired["dense"] == pytest.approx(2.0)  # the reference keeps its median
    assert paired["coo"] == pytest.approx(2.0 * (2.5 / 3.0))  # median ratio x dense median
    script.update(dense=iter([1.0, 2.0, 3.0]), coo=iter([3.0, 0.5, 2.5]))
    plain = selection.time_candidates(functions, {1: np.zeros(1)}, rounds=3, calls=1, warmup=0)[1]
    assert plain == pytest.approx({"dense": 2.0, "coo": 2.5})


def _mlp(units=(96, 48), sparsity=0.98, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((128,), name="pixels")
    x = inputs
    for i, width in enumerate(units, start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"fc{i}")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    return ks.sparsify(model, sparsity, distribution="uniform", seed=seed)


def test_auto_export_records_choices_never_slower_than_dense(tmp_path):
    model = _mlp()
    path = ks.export.export_for_serving(model, tmp_path / "auto", sparse_format="auto",
                                        batch_sizes=(1, 16))
    info = ks.export.report(path)
    assert set(info["kernels"]) == {"fc1", "fc2", "logits"}
    for layer, record in info["kernels"].items():
        assert set(record["timings_ms"]) == {"1", "16"}
        for batch, kernel in record["chosen"].items():
            times = record["timings_ms"][batch]
            assert kernel in times and times[kernel] <= times["dense"], (layer, batch, record)
            if kernel != "dense":  # the dispatching layer itself was checked too
                checked = record["checked_ms"][batch]
                assert checked["chosen"] <= checked["dense"], (layer, batch, record)
        assert "ell_xla" not in record["timings_ms"]["1"]  # XLA only when allowed
    x = np.random.default_rng(0).standard_normal((16, 128)).astype("float32")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for rows in (1, 5, 16):
        np.testing.assert_allclose(serve(pixels=tf.constant(x[:rows]))["logits"].numpy(),
                                   np.asarray(model(x[:rows])), atol=TOL, rtol=0)


def test_auto_export_keeps_dense_when_sparse_timings_are_slower(tmp_path, monkeypatch):
    """Injected timings: every sparse kernel slower than dense at every batch size."""

    def slow_sparse(functions, inputs, **kwargs):
        return {b: {k: 1.0 if k == "dense" else 2.0 for k in functions} for b in inputs}

    monkeypatch.setattr(selection, "time_candidates", slow_sparse)
    path = ks.export.export_for_serving(_mlp(), tmp_path / "m", sparse_format="auto")
    info = ks.export.report(path)
    assert all(r["regimes"] == [[None, "dense"]] for r in info["kernels"].values())
    # Still stored compactly: the dense kernel is rebuilt at load.
    assert {r["format"] for r in info["layers"] if r["weight"] == "kernel"} == {"auto"}


def test_whole_model_check_sends_slower_batch_sizes_back_to_dense(tmp_path, monkeypatch):
    """Injected timings: each layer's sparse kernel wins alone at every batch size,
    but the assembled model is slower than dense at batch 1: batch 1 goes dense."""
    seen = []

    def timings(functions, inputs, **kwargs):
        seen.append(sorted(functions))
        if set(functions) == {"dense", "auto"}:  # the whole-model check
            return {b: {"dense": 1.0, "auto": 2.0 if b == 1 else 0.5} for b in inputs}
        # "chosen": the per-layer check of the dispatching layer.
        return {b: {k: 1.0 if k == "dense" else 0.5 if k in ("coo", "chosen") else 3.0
                    for k in functions} for b in inputs}

    monkeypatch.setattr(selection, "time_candidates", timings)
    model = _mlp()
    path = ks.export.export_for_serving(model, tmp_path / "m", sparse_format="auto",
                                        batch_sizes=(1, 64))
    assert ["auto", "dense"] in seen
    info = ks.export.report(path)
    assert info["model_check"]["fallback"] == [1]
    assert info["model_check"]["timings_ms"]["1"]["auto"] > info["model_check"]["timings_ms"]["1"]["dense"]
    for layer, record in info["kernels"].items():
        assert record["chosen"] == {"1": "dense", "64": "coo"}, layer
        assert record["regimes"] == [[8, "dense"], [None, "coo"]], layer
        assert record["model_fallback"] == [1]
    x = np.random.default_rng(3).standard_normal((64, 128)).astype("float32")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for rows in (1, 64):
        np.testing.assert_allclose(serve(pixels=tf.constant(x[:rows]))["logits"].numpy(),
                                   np.asarray(model(x[:rows])), atol=TOL, rtol=0)


def test_whole_model_check_records_timings_and_never_keeps_a_slower_choice(tmp_path):
    model = _mlp(units=(64,))
    path = ks.export.export_for_serving(model, tmp_path / "m", sparse_format="auto",
                                        batch_sizes=(1, 8))
    check = ks.export.report(path)["model_check"]
    assert set(check["timings_ms"]) == {"1", "8"}
    for batch, times in check["timings_ms"].items():
        assert set(times) == {"dense", "auto"}
        # Where the assembled model was slower, that batch size went back to dense.
        if times["auto"] > times["dense"]:
            assert int(batch) in check["fallback"] or all(
                r["chosen"][batch] == "dense" for r in ks.export.report(path)["kernels"].values())


SERVING_SIDE = r"""
import json, sys
for name in ("keras", "keras_sparse", "tf_keras"):
    sys.modules[name] = None  # any import of them now fails
import numpy as np
import tensorflow as tf

spec = json.load(open(SPEC_PATH))
x, expected = np.load(spec["x"]), np.load(spec["expected"])
fn = tf.saved_model.load(spec["path"]).signatures["serving_default"]
diffs = {rows: float(np.abs(fn(pixels=tf.constant(x[:rows]))["logits"].numpy()
                            - expected[:rows]).max()) for rows in spec["rows"]}
graph = tf.Graph()
with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    meta = tf.compat.v1.saved_model.load(session, ["serve"], spec["path"])
    signature = meta.signature_def["serving_default"]
    fetched = session.run(signature.outputs["logits"].name, {signature.inputs["pixels"].name: x})
imported = sorted(m for m, module in sys.modules.items() if module is not None
                  and m.split(".")[0] in ("keras", "keras_sparse", "tf_keras"))
print("@@" + json.dumps(dict(diffs=diffs, session=float(np.abs(fetched - expected).max()),
                             inputs=sorted(fn.structured_input_signature[1]),
                             outputs=sorted(fn.structured_outputs), imported=imported)))
"""


def test_every_kernel_served_by_a_tensorflow_only_process(tmp_path, monkeypatch, run_python):
    """Each kernel in one SavedModel (forced regimes), loaded without Keras, and by a TF1 session."""
    forced = {"fc1": [(1, "ell_xla"), (4, "coo"), (12, "segment"), (None, "csr")],
              "fc2": [(None, "dense")], "logits": [(2, "csr_split2"), (5, "coo"),
                                                   (None, "coo_split2")]}
    monkeypatch.setattr(sparse_dense, "timed_choice", lambda batch_sizes, allow_xla: (
        lambda layer, kernel: (forced[layer.name], dict(chosen={}, timings_ms={}))))
    model = _mlp()
    path = ks.export.export_for_serving(model, tmp_path / "m", sparse_format="auto",
                                        allow_xla=True)
    x = np.random.default_rng(2).standard_normal((20, 128)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", np.asarray(model(x)))
    spec = dict(path=path, x=str(tmp_path / "x.npy"), expected=str(tmp_path / "expected.npy"),
                rows=[1, 3, 10, 20])
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = run_python(SERVING_SIDE.replace("SPEC_PATH", repr(str(tmp_path / "spec.json"))))
    result = json.loads(out.split("@@", 1)[1])
    assert result["imported"] == []
    assert result["inputs"] == ["pixels"] and result["outputs"] == ["logits"]
    assert max(result["diffs"].values()) <= TOL, result["diffs"]
    assert result["session"] <= TOL


def _stored_dtypes(path):
    """`{variable name: dtype}` as written in the SavedModel's checkpoint."""
    names = [v.name for v in tf.saved_model.load(path).model_variables]
    dtypes = tf.train.load_checkpoint(f"{path}/variables/variables").get_variable_to_dtype_map()
    return {name: dtypes[f"model_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"]
            for i, name in enumerate(names)}


def test_compact_indices_are_stored_and_small(tmp_path):
    model = _mlp(units=(256, 128))
    dense = ks.export.report(ks.export.export_for_serving(model, tmp_path / "d"))
    path = ks.export.export_for_serving(model, tmp_path / "s", sparse_format="csr")
    sparse = ks.export.report(path)
    stored = _stored_dtypes(path)
    assert {dtype for name, dtype in stored.items() if "index_codes" in name} == {tf.uint8}
    # Nothing else but float32 values and biases: no int32/int64 index is written.
    assert {dtype for name, dtype in stored.items() if "index_codes" not in name} == {tf.float32}
    # Values plus positions: at most 1.3x density x the dense kernels (the
    # biases are stored alike in both).
    kernels_of = lambda info: [r for r in info["layers"] if r["weight"] == "kernel"]
    density = sum(r["nonzero"] for r in kernels_of(dense)) / sum(r["total"] for r in kernels_of(dense))
    assert 0.015 < density < 0.025
    assert sum(r["bytes"] for r in kernels_of(sparse)) <= 1.3 * density * sum(
        r["bytes"] for r in kernels_of(dense))
    assert 0 < sparse["gzip_bytes"] < sparse["size_bytes"] < dense["size_bytes"]


def test_uint16_indices_are_stored_when_smaller(tmp_path):
    inputs = keras.Input((3000,), name="pixels")
    dense = keras.layers.Dense(64, name="logits")
    model = keras.Model(inputs, dense(inputs))
    kernel = _sparse_kernel((3000, 64), 0.9995, seed=3)
    dense.kernel.assign(kernel)
    path = ks.export.export_for_serving(model, tmp_path / "m", sparse_format="csr")
    stored = _stored_dtypes(path)
    assert {dtype for name, dtype in stored.items() if "index_cols" in name} == {tf.uint16}
    (row,) = [r for r in ks.export.report(path)["layers"] if r["weight"] == "kernel"]
    assert row["index_format"] == "uint16"
    x = np.random.default_rng(0).standard_normal((9, 3000)).astype("float32")
    got = tf.saved_model.load(path).signatures["serving_default"](pixels=tf.constant(x))["logits"]
    np.testing.assert_allclose(got.numpy(), np.asarray(model(x)), atol=TOL, rtol=0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(batch_sizes=()), ValueError, "`batch_sizes` must be a non-empty list"),
    (dict(batch_sizes=(1, 0)), ValueError, r"`batch_sizes` .* got \(1, 0\)"),
    (dict(batch_sizes=8), ValueError, "`batch_sizes` must be a non-empty list"),
    (dict(allow_xla="yes"), TypeError, "`allow_xla` must be a bool"),
])
def test_bad_auto_arguments_raise_before_writing(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        ks.export.export_for_serving(_mlp(units=(8,)), tmp_path / "m", sparse_format="auto",
                                     **kwargs)
    assert not (tmp_path / "m").exists()
