"""MultiWorkerMirroredStrategy: two worker processes on loopback, and the
switch of the Keras workaround that makes `fit` run there."""

import json
import os
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.utils import keras_compat

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RULES = ("rigl", "set", "static")
TIMEOUT = 240  # seconds for both workers; usually ~60 on 2 busy cores


def _free_ports(n):
    """`n` distinct loopback ports the OS reports free (bound to 0, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the worker and its children
        proc.wait()


def _run_workers(out):
    """Runs multiworker_check.py on two workers; returns their .npz results."""
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs, logs = [], []
    try:
        for index in range(2):
            config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(config), PYTHONPATH=ROOT,
                       TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
            log = open(out / f"worker{index}.log", "w+")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "multiworker_check.py"), str(out), *RULES],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        for proc in procs:
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        codes = [proc.poll() for proc in procs]
    finally:
        for proc in procs:
            _kill(proc)
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    for index, (code, text) in enumerate(zip(codes, texts)):
        assert code == 0 and f"DONE {index}" in text, (
            f"worker {index} exit code {code} (None: killed after {TIMEOUT} s):\n{text[-3000:]}")
    return [dict(np.load(out / f"worker{index}.npz")) for index in range(2)]


def _masks(result, rule, which):
    return [result[k] for k in sorted(result) if k.startswith(f"{rule}:{which}:")]


def test_two_workers_on_loopback_train_identically(tmp_path):
    # One test (not one per check): a cluster costs ~60 s, and pytest-xdist
    # would start one per process for a module-scoped fixture.
    first, second = _run_workers(tmp_path)
    assert int(first["replicas"]) == 2
    # The workers read different shards of the data...
    assert first["first_batch_sum"] != second["first_batch_sum"]
    for rule in RULES:
        # ... yet end with identical masks, weights, losses and evaluations.
        for kind in ("initial", "final", "weight"):
            a, b = _masks(first, rule, kind), _masks(second, rule, kind)
            assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b)), (rule, kind)
        for key in ("loss", "evaluate", "updates"):
            np.testing.assert_array_equal(first[f"{rule}:{key}"], second[f"{rule}:{key}"])
        assert np.all(np.isfinite(first[f"{rule}:loss"]))
        # The rule updated the masks and kept the invariants.
        initial, final = _masks(first, rule, "initial"), _masks(first, rule, "final")
        changed = sum(int((a != b).sum()) for a, b in zip(initial, final))
        if rule == "static":
            assert changed == 0 and int(first["static:updates"]) == 0
        else:
            # 12 steps, delta_t=2, updates up to 75% of training: steps 2, 4, 6, 8.
            assert int(first[f"{rule}:updates"]) == 4 and changed > 0, rule
        for a, b, w in zip(initial, final, _masks(first, rule, "weight")):
            assert (a == 0).sum() == (b == 0).sum()  # exactly the same number of zeros
            assert np.all(w[b == 0] == 0.0)  # inactive weights exactly 0
    # Two workers on the global batch == one process alone on it.
    rule = RULES[0]
    for kind in ("initial", "final"):
        for a, b in zip(_masks(first, rule, kind), _masks(first, f"single-{rule}", kind)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(_masks(first, rule, "weight"), _masks(first, f"single-{rule}", "weight")):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(first[f"{rule}:loss"], first[f"single-{rule}:loss"], rtol=1e-5)


# -- the switch of the workaround (in process, no cluster) -------------------


def test_workaround_applies_until_the_fixed_version():
    assert keras_compat.SYMBOLIC_BUILD_FIXED_IN is None  # no fixed Keras release known
    assert keras_compat.SCALAR_REDUCE_FIXED_IN is None
    assert keras_compat.workaround_applies(None, (3, 15))
    assert keras_compat.workaround_applies(None, (9, 0))
    assert keras_compat.workaround_applies((3, 17), (3, 16))
    assert not keras_compat.workaround_applies((3, 17), (3, 17))
    assert not keras_compat.workaround_applies((3, 17), (4, 0))
    assert keras_compat.workaround_applies(None) is True  # the installed Keras


def test_only_multi_worker_strategies_count():
    assert not keras_compat.in_multi_worker_mode(tf.distribute.get_strategy())
    assert not keras_compat.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"]))


@pytest.fixture
def model():
    inputs = keras.Input((4,))
    m = ks.SparseModel(inputs, ks.layers.SparseDense(2)(inputs))
    m.compile("sgd", "mse")
    return m


@pytest.fixture
def received(monkeypatch):
    """What Keras' own methods receive from the SparseModel overrides."""
    calls = {}
    monkeypatch.setattr(keras.Model, "_make_function",
                        lambda self, step: calls.setdefault("step", step), raising=False)
    monkeypatch.setattr(keras.Model, "_maybe_symbolic_build",
                        lambda self, iterator=None, data_batch=None: calls.update(
                            iterator=iterator, data_batch=data_batch), raising=False)
    return calls


def _symbolic_build(model):
    batch = (tf.ones((2, 4)), tf.zeros((2, 2)))
    model._maybe_symbolic_build(iterator=[(0, 0, iter([batch]))])
    return batch


def test_workaround_is_on_under_multi_worker(model, received, monkeypatch):
    monkeypatch.setattr(keras_compat, "in_multi_worker_mode", lambda strategy: True)
    model._make_function(model.train_step)
    step = received["step"]
    assert step != model.train_step
    outputs = step((tf.ones((3, 4)), tf.zeros((3, 2))))  # an eager train step
    assert all(v.shape == (1,) for v in tf.nest.flatten(outputs))  # scalars gain an axis
    batch = _symbolic_build(model)
    assert received["iterator"] is None and received["data_batch"] is not None
    assert all(a is b for a, b in zip(received["data_batch"], batch))


@pytest.mark.parametrize("fixed", ["version", "strategy"])
def test_workaround_switches_off(model, received, monkeypatch, fixed):
    if fixed == "version":  # a Keras release with the upstream fixes
        monkeypatch.setattr(keras_compat, "in_multi_worker_mode", lambda strategy: True)
        monkeypatch.setattr(keras_compat, "SCALAR_REDUCE_FIXED_IN", keras_compat.KERAS_VERSION)
        monkeypatch.setattr(keras_compat, "SYMBOLIC_BUILD_FIXED_IN", keras_compat.KERAS_VERSION)
    model._make_function(model.train_step)
    assert received["step"] == model.train_step  # handed to Keras unchanged
    iterator = [(0, 0, iter([None]))]
    model._maybe_symbolic_build(iterator=iterator)
    assert received["iterator"] is iterator and received["data_batch"] is None
