"""The benchmark harness: one tiny benchmark end to end, and its helpers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import NAMES, harness

ROOT = Path(__file__).resolve().parent.parent

MEASUREMENT_KEYS = {"name", "unit", "median", "q1", "q3", "min", "max", "n", "samples"}
COMPARISON_KEYS = {"name", "description", "numerator", "denominator", "ratio",
                   "ci_low", "ci_high", "rounds", "control", "target", "status"}


def check_schema(result):
    assert result["schema_version"] == harness.SCHEMA_VERSION
    assert result["benchmark"] in NAMES
    assert result["mode"] in harness.MODES
    assert result["status"] in ("ok", "not available", "error")
    assert isinstance(result["duration_s"], float)
    for key in ("cpu", "logical_cores", "usable_cores", "memory_gb", "versions"):
        assert key in result["machine"]
    assert result["machine"]["versions"]["tensorflow"]
    for key in ("config", "data"):
        assert isinstance(result[key], dict)
    assert isinstance(result["notes"], list)
    for m in result["measurements"]:
        assert set(m) == MEASUREMENT_KEYS
        assert m["n"] == len(m["samples"]) >= 1
        assert m["min"] <= m["q1"] <= m["median"] <= m["q3"] <= m["max"]
    for c in result["comparisons"]:
        assert set(c) == COMPARISON_KEYS
        assert c["status"] in harness.STATUSES
        if c["target"] is not None:
            assert c["target"]["op"] in ("<=", ">=")


def test_tiny_train_step_benchmark_end_to_end(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--tiny", "--only", "train_step",
         "--results", str(tmp_path / "results"), "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "train_step.json").read_text())
    check_schema(result)
    assert result["status"] == "ok" and result["mode"] == "tiny"
    names = {m["name"] for m in result["measurements"]}
    assert {"lenet_300_100/dense step", "lenet_300_100/sparse step"} <= names
    (comparison,) = [c for c in result["comparisons"] if c["target"]]
    assert comparison["ratio"] > 0 and comparison["status"] in ("met", "not met", "unresolved")
    assert comparison["target"] == {"op": "<=", "value": 1.03}
    assert comparison["control"]["n"] == comparison["rounds"] >= 2  # A/A in the same rounds
    assert comparison["ci_low"] <= comparison["ratio"] <= comparison["ci_high"]
    assert result["config"]["resolution"]["lenet_300_100"]
    assert "fashion_mnist" in result["data"]
    text = report.read_text()
    assert "## Machine" in text and "**Mode: tiny.**" in text
    assert f"| train_step | {comparison['name']} |" in text


def test_tiny_sparse_train_step_benchmark(tmp_path):
    from benchmarks import sparse_train_step

    result = harness.run(sparse_train_step, harness.Settings("tiny"), tmp_path)
    check_schema(result)
    assert result["status"] == "ok", result["notes"]
    names = {m["name"] for m in result["measurements"]}
    for kind in ("dense", "dense, again", "sparse", "sparse, before"):
        assert f"mlp_256 98%/{kind} step" in names
    main = result["comparisons"][0]
    assert main["name"] == "mlp_256 98%: dense / sparse-compute step"
    assert main["target"] == {"op": ">=", "value": 3.0} and main["ratio"] > 0
    assert main["control"] is not None
    rows = {c["name"]: c for c in result["comparisons"]}
    assert rows["mlp_256 98%: before / after (sparse step)"]["ratio"] > 0
    # The split of the step's time is recorded.
    assert "mlp_256 98%/optimizer, dense-shaped weights" in names
    assert any("forward+backward" in note for note in result["notes"])


def test_interleaved_alternates_order_and_drops_warmup():
    calls = []
    times = harness.interleaved(
        {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0},
        repeats=3, warmup=1,
    )
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
    with pytest.raises(ValueError, match="repeats"):
        harness.interleaved({"a": lambda: None}, repeats=0)


def test_summary_and_ratio_statuses():
    fast = harness.summary("fast", [1.0, 2.0, 3.0, 4.0, 100.0], "ms")
    assert (fast["median"], fast["q1"], fast["q3"], fast["min"], fast["max"]) == (3.0, 2.0, 4.0, 1.0, 100.0)
    slow = harness.summary("slow", [6.0] * 5, "ms", scale=1.0)
    assert harness.ratio("r", slow, fast, target=2.0, op="<=")["status"] == "met"
    assert harness.ratio("r", slow, fast, target=1.5, op="<=")["status"] == "not met"
    assert harness.ratio("r", slow, fast, target=2.5, op=">=")["status"] == "not met"
    assert harness.ratio("r", slow, fast)["status"] == "info"
    paired = harness.ratio("r", slow, fast, target=3, paired=([6.0] * 5, [1.0, 2.0, 3.0, 4.0, 100.0]))
    assert paired["rounds"] == 5 and paired["ci_low"] < paired["ratio"] < paired["ci_high"]
    assert paired["status"] == "unresolved"  # one wild round: the CI spans 3
    gone = harness.missing("r", target=1.05)
    assert gone["status"] == "not available" and gone["ratio"] is None
    with pytest.raises(ValueError, match="op"):
        harness.ratio("r", slow, fast, target=1, op="<")


def test_report_lists_every_target_with_its_status(tmp_path):
    base = dict(schema_version=1, mode="full", started="2026-12-01T10:00:00+00:00",
                duration_s=1.0, status="ok",
                machine=harness.machine(), config={}, data={}, notes=[], measurements=[])
    results = [
        dict(base, benchmark="train_step", title="t",
             comparisons=[harness.ratio("x", harness.value("a", 2.0, "s"), harness.value("b", 1.0, "s"),
                                        target=1.05)]),
        dict(base, benchmark="export", title="e", status="not available",
             comparisons=[harness.missing("y", target=3.0, op=">=")]),
    ]
    for result in results:
        (tmp_path / f"{result['benchmark']}.json").write_text(json.dumps(result))
    text = harness.write_report(tmp_path, tmp_path / "B.md", order=NAMES)
    assert "| train_step | x | 2 | – | <= 1.05 | **not met** | 2026-12-01 |" in text
    assert "| export | y | – | – | >= 3 | **not available** | 2026-12-01 |" in text
    assert "Mode" not in text.split("## Machine")[0]  # a full run carries no warning


FAKE_WORKER = '''
import types
from benchmarks import harness

class Callback:  # the part of a Keras callback that `paced` uses
    model = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=0))

def train(steps, block):
    pacer = harness.paced(Callback, block)()
    pacer.on_train_begin()
    for step in range(steps):
        pacer.on_train_batch_begin(step)
        pacer.model.optimizer.iterations = step + 1
    pacer.on_train_end()
    return {"seconds": pacer.last_seconds, "step": steps}

def fail():
    raise ValueError("broken on purpose")

harness.serve({"train": lambda: train(10, 3), "fail": fail})
'''


def test_paced_workers_alternate_block_by_block(tmp_path):
    (tmp_path / "fake_worker.py").write_text(FAKE_WORKER)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with harness.Worker("fake_worker", env=env) as a, harness.Worker("fake_worker", env=env) as b:
        # 10 steps in blocks of 3: blocks end at steps 3, 6, 9 and 10.
        times = harness.interleaved({"a": harness.blocks(a), "b": harness.blocks(b)}, repeats=3, warmup=1)
        assert [len(v) for v in times.values()] == [3, 3]
        assert all(s >= 0 for v in times.values() for s in v)
        # The 4th block ended the fit: "train" starts a new one, paused after 3 steps.
        assert a.request("train")["step"] == 3
        with pytest.raises(RuntimeError, match="broken on purpose"):
            b.request("fail")


def test_report_shows_ci_and_control_and_marks_older_runs(tmp_path):
    machine = harness.machine()
    new = harness.ratio("dense / sparse", harness.value("d", 2.0, "s"), harness.value("s", 1.0, "s"),
                        target=1.5, op=">=", paired=([2.0, 2.2, 1.8], [1.0, 1.1, 0.9]),
                        control=([1.0, 1.1, 0.9], [1.0, 1.1, 0.9]))
    old = dict(name="old row", description="", numerator="a", denominator="b", ratio=1.94,
               ratio_q1=1.79, ratio_q3=2.02, target=dict(op=">=", value=2.0), status="not met")
    base = dict(schema_version=1, mode="full", duration_s=1.0, status="ok", machine=machine,
                config={}, data={}, notes=[], measurements=[])
    for name, started, comparison in (("sparse_train_step", "2026-12-01T10:00:00+00:00", new),
                                      ("export", "2026-11-26T04:00:00+00:00", old)):
        result = dict(base, benchmark=name, title=name, started=started, comparisons=[comparison])
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    text = harness.write_report(tmp_path, tmp_path / "B.md", order=NAMES)
    assert ("| sparse_train_step | dense / sparse | 2 [2–2] | 1 [1–1] | >= 1.5 | **met** | "
            "2026-12-01 |") in text
    assert ("| export | old row | 1.94 (median/median, IQR [1.79–2.02]) | – | >= 2 | **not met** "
            "| 2026-11-26 (older run) |") in text


def test_xla_philox_probe_draws_tensorflows_bits():
    # The mask_update benchmark times this as SET's draw compiled by XLA:
    # it is only a fair probe if it gives the same numbers.
    import numpy as np
    import tensorflow as tf

    from benchmarks import philox_xla
    from keras_sparse.masks import stateless_uniform

    expected = stateless_uniform([37, 29], 5, 300, 2).numpy().ravel()
    seed = tf.constant([5 * 1_000_003 + 2, 300], tf.int64)
    at = tf.function(philox_xla.uniform_at, jit_compile=True)
    got = at(tf.range(expected.size, dtype=tf.int64), seed).numpy()
    np.testing.assert_array_equal(got, expected)
    some = tf.constant([1060, 3, 0, 517], tf.int64)
    np.testing.assert_array_equal(philox_xla.uniform_at(some, seed).numpy(),
                                  expected[some.numpy()])
    lanes = [lane.numpy() for lane in philox_xla.mantissa_lanes(expected.size, seed)]
    interleaved = np.stack(lanes, axis=1).ravel()[:expected.size]
    np.testing.assert_array_equal(interleaved, expected)
