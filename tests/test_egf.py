"""Effective Gradient Flow: hand computation, logging, errors."""

import csv
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.utils import tensorboard as tensorboard_module

N, D, H, K = 10, 4, 3, 2


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, D)).astype("float32"),
            rng.normal(size=(N, K)).astype("float32"))


def _dense_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((D,))
    # The L2 term must not enter EGF: it is a regularizer, not data loss.
    hidden = keras.layers.Dense(H, activation="tanh", name="fc1",
                                kernel_regularizer=keras.regularizers.L2(10.0))(inputs)
    outputs = keras.layers.Dense(K, name="fc2")(hidden)
    return keras.Model(inputs, outputs)


def _masks():
    m1 = np.ones((D, H), "float32")
    m1[0, 0] = m1[1, 2] = m1[3, 1] = m1[2, 2] = 0.0
    m2 = np.ones((H, K), "float32")
    m2[1, 0] = m2[2, 1] = 0.0
    return m1, m2


def _sparse_model():
    model = ks.sparsify(_dense_model(), 0.5, distribution="uniform")
    m1, m2 = _masks()
    model.set_masks({"fc1/kernel": m1, "fc2/kernel": m2})
    return model


def _hand_flow(model, x, y, m1, m2):
    """MSE through tanh, differentiated by hand in NumPy."""
    w1, b1, w2, b2 = (np.asarray(model.get_layer(n).weights[i])
                      for n, i in (("fc1", 0), ("fc1", 1), ("fc2", 0), ("fc2", 1)))
    w1, w2 = w1 * m1, w2 * m2
    h = np.tanh(x @ w1 + b1)
    out = h @ w2 + b2
    d_out = 2.0 * (out - y) / (len(x) * K)
    g_w2, g_b2 = h.T @ d_out * m2, d_out.sum(0)
    dz = d_out @ w2.T * (1.0 - h**2)
    g_w1, g_b1 = x.T @ dz * m1, dz.sum(0)
    egf = {p: np.mean([np.linalg.norm(g.ravel(), p) / m.sum()
                       for g, m in ((g_w1, m1), (g_w2, m2))]) for p in (1, 2)}
    flat = np.concatenate([g.ravel() for g in (g_w1, g_b1, g_w2, g_b2)])
    return {"egf_l1": egf[1], "egf_l2": egf[2],
            "grad_norm_l1": np.abs(flat).sum(), "grad_norm_l2": np.linalg.norm(flat)}


def _compile(model):
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def test_egf_matches_hand_computation_with_mask():
    x, y = _data()
    model = _compile(_sparse_model())
    # Batches of 4, 4, 2: weighting by batch size gives the full-set gradient.
    got = ks.diagnostics.gradient_flow(model, (x, y), batch_size=4)
    want = _hand_flow(model, x, y, *_masks())
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, err_msg=key)
    assert ks.diagnostics.effective_gradient_flow(model, (x, y), p=1) == pytest.approx(
        want["egf_l1"], rel=1e-5)
    norms = ks.diagnostics.gradient_norms(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(3))
    assert norms["grad_norm_l2"] == pytest.approx(want["grad_norm_l2"], rel=1e-5)


def test_dense_model_uses_all_ones_mask_and_loss_argument():
    x, y = _data(1)
    model = _dense_model()  # not compiled: the loss comes from the argument
    ones = np.ones((D, H), "float32"), np.ones((H, K), "float32")
    want = _hand_flow(model, x, y, *ones)
    got = ks.diagnostics.gradient_flow(model, (x, y), loss="mse")
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, err_msg=key)
    with pytest.raises(ValueError, match="loss"):
        ks.diagnostics.gradient_flow(model, (x, y))


def test_logs_reach_history_and_csv(tmp_path):
    x, y = _data(2)
    model = _compile(_sparse_model())
    path = str(tmp_path / "log.csv")
    logger = ks.callbacks.EGFLogger((x, y), num_examples=8, batch_size=4)
    history = model.fit(x, y, batch_size=5, epochs=2, verbose=0,
                        callbacks=[logger, keras.callbacks.CSVLogger(path)])
    keys = ("egf_l1", "egf_l2", "grad_norm_l1", "grad_norm_l2")
    for key in keys:
        assert len(history.history[key]) == 2
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(rows[-1][k]) == pytest.approx(history.history[k][-1]) for k in keys)
    # The last value is the flow of the final model on the first 8 examples.
    want = _hand_flow(model, x[:8], y[:8], *_masks())
    assert history.history["egf_l2"][-1] == pytest.approx(want["egf_l2"], rel=1e-5)
    assert history.history["egf_l2"][0] != history.history["egf_l2"][1]


def test_every_n_steps_writes_tensorboard(tmp_path):
    x, y = _data(3)
    model = _compile(_sparse_model())
    logger = ks.callbacks.EGFLogger((x, y), every=2, p=2, log_dir=str(tmp_path))
    calls = []
    measure = logger.measure
    logger.measure = lambda: calls.append(int(model.optimizer.iterations)) or measure()
    history = model.fit(x, y, batch_size=5, epochs=2, verbose=0, callbacks=[logger])
    assert calls == [2, 4]
    assert "egf_l2" in history.history and "egf_l1" not in history.history
    events = [f for f in os.listdir(tmp_path) if f.startswith("events")]
    assert events
    tags = {
        (value.tag, event.step)
        for f in events
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / f))
        for value in event.summary.value
    }
    assert {("egf_l2", 2), ("egf_l2", 4), ("grad_norm_l1", 4)} <= tags


def test_every_n_steps_with_steps_per_execution():
    x, y = _data(3)
    model = _sparse_model()
    model.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=2)
    logger = ks.callbacks.EGFLogger((x, y), every=3)
    calls = []
    measure = logger.measure
    logger.measure = lambda: calls.append(int(model.optimizer.iterations)) or measure()
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[logger])  # 5 steps
    assert calls == [4]  # the first execution ending at or after step 3


def test_evaluation_set_is_fixed():
    x, y = _data(4)
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(N, seed=0).batch(3)
    logger = ks.callbacks.EGFLogger(shuffled, num_examples=5, batch_size=2)
    first = np.concatenate([b[0].numpy() for b in logger.data])
    second = np.concatenate([b[0].numpy() for b in logger.data])
    assert first.shape == (5, D)
    np.testing.assert_array_equal(first, second)


def test_config_round_trip():
    x, y = _data()
    logger = ks.callbacks.EGFLogger((x, y), every=3, p=1, num_examples=7, loss="mse")
    config = logger.get_config()
    assert config == dict(every=3, p=(1,), num_examples=7, log_dir=None, loss="mse", batch_size=128)
    again = ks.callbacks.EGFLogger.from_config({**config, "data": (x, y)})
    assert again.get_config() == config
    with pytest.raises(ValueError, match="data"):
        ks.callbacks.EGFLogger.from_config(config)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(p=3), ValueError, "`p`"),
    (dict(p=(1, 5)), ValueError, "`p`"),
    (dict(every=0), ValueError, "`every`"),
    (dict(every="batch"), ValueError, "`every`"),
    (dict(num_examples=0), ValueError, "`num_examples`"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ks.callbacks.EGFLogger(_data(), **kwargs)


def test_bad_data_and_p():
    with pytest.raises(TypeError, match="`data`"):
        ks.callbacks.EGFLogger(np.zeros((3, 4)))
    model = _compile(_dense_model())
    with pytest.raises(ValueError, match="`p`"):
        ks.diagnostics.effective_gradient_flow(model, _data(), p=(1, 2))


def test_missing_tensorboard_is_one_warning(monkeypatch, caplog, tmp_path):
    find_spec = tensorboard_module.importlib.util.find_spec
    monkeypatch.setattr(tensorboard_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    with caplog.at_level(logging.WARNING, logger="keras_sparse"):
        assert tensorboard_module.summary_writer(str(tmp_path), "EGFLogger") is None
    assert len(caplog.records) == 1 and "tensorboard" in caplog.text


_MIRRORED = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_sparse as ks
rng = np.random.default_rng(0)
x, y = rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 3, 32)
def build():
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model = ks.sparsify(dense, 0.5)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
reference = ks.diagnostics.gradient_flow(build(), (x, y))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build()
    inside = ks.diagnostics.gradient_flow(model, (x, y))
outside = ks.diagnostics.gradient_flow(model, (x, y))
history = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                    callbacks=[ks.callbacks.EGFLogger((x, y), num_examples=16)])
after = ks.diagnostics.gradient_flow(model, (x[:16], y[:16]))
for key, value in reference.items():
    np.testing.assert_allclose([inside[key], outside[key]], value, rtol=1e-5)
    np.testing.assert_allclose(history.history[key][-1], after[key], rtol=1e-5)
print("ok")
"""


def test_mirrored_strategy_gives_the_single_device_values():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _MIRRORED], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
