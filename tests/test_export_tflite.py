"""`ks.export.export_tflite`: sparse TFLite flatbuffers, checked in a TensorFlow-only process."""

import json

import keras
import numpy as np
import pytest

import keras_sparse as ks


def sparse_model(sparsity=0.9):
    keras.utils.set_random_seed(3)
    dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu",
                                                                     name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    return ks.sparsify(dense, sparsity, distribution="uniform")


def test_export_tflite_stores_sparse_kernels_and_reports_them(tmp_path):
    model = sparse_model()
    path = tmp_path / "out" / "mlp.tflite"
    info = ks.export.export_tflite(model, str(path))
    assert path.stat().st_size == info["size_bytes"]
    assert json.loads((tmp_path / "out" / "mlp.tflite.json").read_text()) == info
    assert info["size_ratio"] > 3  # 90% zeros: values plus indices, against dense float32
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["fc1"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert rows["fc1"]["stored_sparse"] is True and rows["fc2"]["stored_sparse"] is True
    plain = ks.export.export_tflite(model, str(tmp_path / "dense.tflite"), optimize_sparsity=False)
    assert [r["stored_sparse"] for r in plain["layers"]] == [False, False]
    assert plain["size_bytes"] == info["dense_size_bytes"]


LOAD = """
import json, sys
import numpy as np
import tensorflow as tf
x = np.load(sys.argv[2])
interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
inp = interpreter.get_input_details()[0]
interpreter.resize_tensor_input(inp["index"], list(x.shape))
interpreter.allocate_tensors()
interpreter.set_tensor(inp["index"], x)
interpreter.invoke()
out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
import sys as s
print(json.dumps({"out": out.tolist(), "keras": "keras" in s.modules,
                  "keras_sparse": "keras_sparse" in s.modules}))
"""


def test_a_tensorflow_only_process_gets_the_models_outputs(tmp_path):
    import subprocess
    import sys

    model = sparse_model(0.95)
    path = tmp_path / "mlp.tflite"
    ks.export.export_tflite(model, str(path))
    x = np.random.RandomState(0).rand(5, 64).astype("float32")
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run([sys.executable, "-c", LOAD, str(path), str(tmp_path / "x.npy")],
                            capture_output=True, text=True, timeout=300,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert not got["keras_sparse"]
    np.testing.assert_allclose(np.array(got["out"]), model.predict(x, verbose=0), atol=1e-4)


def test_export_tflite_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="keras.Model"):
        ks.export.export_tflite("model.keras", str(tmp_path / "m.tflite"))
    assert not (tmp_path / "m.tflite").exists()
