"""How recipes train: strategies, mixed precision, XLA, TFDS data; `list`; sources."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

import keras_sparse as ks
from recipes import configs, launch, listing, runner

REPO = Path(__file__).resolve().parents[1]
# One arm (no dense baseline), a few batches: the point is where it runs.
TINY = {"data": {"subset": 256, "eval_subset": 128}, "egf": {"num_examples": 64},
        "baseline": None}


def _cli(*args, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "recipes", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from recipes import runner
    runner.run("quickstart", epochs=1, out=sys.argv[1], export_root=sys.argv[2],
               overrides=json.loads(sys.argv[3]), verbose=0, strategy="mirrored")
""")


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(out), str(tmp_path / "saved"), json.dumps(TINY)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["launch"]["strategy"] == "mirrored"
    assert summary["launch"]["replicas"] == 2
    assert summary["launch"]["global_batch_size"] == 128
    arm = summary["arms"]["sparse"]
    assert arm["replicas"] == 2  # the model's variables are mirrored on both devices
    assert arm["sparsity"] == pytest.approx(0.9, abs=1e-4)
    # 256 examples at a global batch of 128: 2 steps per epoch, whatever the replicas.
    assert len(arm["history"]["loss"]) == 1 and arm["final"]["val_accuracy"] > 0


@pytest.mark.parametrize("cluster", [
    {"worker": ["localhost:0"]},
    {"worker": ["host1:2222", "host2:2222"]},  # SparseModel works around Keras' bugs
    {"chief": ["host0:2222"], "worker": ["host1:2222"]},
])
def test_multiworker_is_available_with_a_cluster(monkeypatch, cluster):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert launch.check_available("multiworker") is None


def test_only_a_strategy_over_several_workers_spans_workers():
    import tensorflow as tf

    assert not launch.spans_workers(None)
    assert not launch.spans_workers(tf.distribute.get_strategy())
    assert not launch.spans_workers(tf.distribute.MirroredStrategy(["/cpu:0"]))


def test_dense_arms_train_as_sparse_models_across_workers(tmp_path, monkeypatch):
    # Keras' own fit fails across workers (keras-team/keras#20585): there the
    # dense arm becomes a SparseModel over the same layers, with no masks.
    # (The cluster itself is tested in test_multiworker.py.)
    monkeypatch.setattr(launch, "spans_workers", lambda strategy: True)
    config = runner.resolve("quickstart", "cpu", 1, dict(TINY, method=None))
    data = runner.datasets(config, 0)
    plain = ks.applications.get(config["model"]["name"], input_shape=data[0]["input_shape"],
                                num_classes=data[0]["num_classes"])
    model, result = runner.train_arm(config, "dense", data, tmp_path, 0, 0, "m.csv",
                                     tensorboard=False)
    assert isinstance(model, ks.SparseModel) and model.masked_weights == []
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in plain.layers]
    assert result["sparsity"] == 0.0 and result["prunable"] > 0
    assert len(result["history"]["loss"]) == 1 and result["final"]["loss"] > 0


def test_mixed_precision_and_jit_compile(tmp_path):
    before = keras.config.dtype_policy().name
    summary = runner.run("quickstart", epochs=1, out=tmp_path / "run",
                         export_root=tmp_path / "saved", overrides=TINY, verbose=0,
                         mixed_precision=True, jit_compile=True)
    arm = summary["arms"]["sparse"]
    assert arm["compute_dtype"] == "float16" and arm["jit_compile"] is True
    assert summary["launch"]["mixed_precision"] is True
    assert keras.config.dtype_policy().name == before  # restored after the run
    assert (tmp_path / "run" / "summary.json").exists()


def test_precision_is_restored_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with launch.precision(mixed=True):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


# -- bad input: a clear error, nothing written ------------------------------------


def _nothing_written(tmp_path):
    return not (tmp_path / "out").exists() and not (tmp_path / "saved").exists()


def _run(tmp_path, name="quickstart", **kwargs):
    runner.run(name, epochs=1, out=tmp_path / "out", export_root=tmp_path / "saved",
               overrides=TINY, verbose=0, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(strategy="gpu"), r"`strategy` must be one of .*'mirrored'.*strategy='gpu'"),
    (dict(strategy=None), r"`strategy`.*strategy=None"),
    (dict(jit_compile="yes"), r"`jit_compile`.*jit_compile='yes'"),
])
def test_bad_launch_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, **kwargs)
    assert _nothing_written(tmp_path)


def test_unknown_strategy_on_the_command_line(tmp_path):
    result = _cli("run", "quickstart", "--strategy", "gpu", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--strategy" in result.stderr and "'gpu'" in result.stderr
    assert "mirrored" in result.stderr
    assert not (tmp_path / "out").exists()


def test_tpu_without_a_tpu_is_an_error(tmp_path, monkeypatch):
    for variable in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(launch.glob, "glob", lambda pattern: [])  # no /dev/accel*
    with pytest.raises(ValueError, match="strategy='tpu'.*no TPU.*TPU_NAME"):
        _run(tmp_path, strategy="tpu")
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("tf_config, match", [
    (None, "needs the TF_CONFIG"),
    ("not json", "is not a cluster description"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "lists no workers"),
    ('{"task": {"type": "worker", "index": 0}}', "is not a cluster description"),
])
def test_multiworker_needs_a_cluster(tmp_path, monkeypatch, tf_config, match):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, strategy="multiworker")
    assert _nothing_written(tmp_path)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    empty = tmp_path / "tfds"
    with pytest.raises(FileNotFoundError) as error:
        _run(tmp_path, name="dstee_vgg19_cifar100_s90", data_dir=str(empty))
    message = str(error.value)
    assert f"tfds build cifar100 --data_dir {empty}" in message and "--download" in message
    assert _nothing_written(tmp_path) and not empty.exists()


def test_missing_dataset_on_the_command_line(tmp_path):
    empty = tmp_path / "tfds"
    result = _cli("run", "dstee_vgg19_cifar100_s90", "--data-dir", str(empty),
                  "--out", str(tmp_path / "out"), "--export-root", str(tmp_path / "saved"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"tfds build cifar100 --data_dir {empty}" in result.stderr
    # Every option the message suggests exists on `run`.
    suggested = set(re.findall(r"--[a-z][a-z_-]+", result.stderr)) - {"--data_dir"}  # tfds's
    assert suggested and suggested <= set(re.findall(r"--[a-z][a-z-]+", _cli("run", "-h").stdout))
    assert _nothing_written(tmp_path)


def test_download_prepares_a_missing_dataset(monkeypatch):
    calls = []

    class Builder:
        version = "1.0.0"
        prepared = False

        def is_prepared(self):
            return self.prepared

        def download_and_prepare(self):
            calls.append("download")
            Builder.prepared = True

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Builder())
    with pytest.raises(FileNotFoundError, match="--download"):
        launch.ensure_prepared("cifar100", "/nowhere")
    assert calls == []
    launch.ensure_prepared("cifar100", "/nowhere", download=True)
    assert calls == ["download"]
    launch.ensure_prepared("cifar100", "/nowhere", download=True)  # prepared: no-op
    assert calls == ["download"]


def test_run_options_reach_the_runner():
    import argparse

    parser = launch.add_run_options(argparse.ArgumentParser())
    defaults = launch.run_options(parser.parse_args([]))
    assert defaults == {"strategy": "none", "mixed_precision": False, "jit_compile": None,
                        "data_dir": None, "download": False}
    options = launch.run_options(parser.parse_args(
        ["--strategy", "mirrored", "--mixed-precision", "--jit-compile", "--data-dir", "d",
         "--download"]))
    assert options == {"strategy": "mirrored", "mixed_precision": True, "jit_compile": True,
                       "data_dir": "d", "download": True}
    assert launch.run_options(parser.parse_args(["--no-jit-compile"]))["jit_compile"] is False
    import inspect

    assert set(options) <= set(inspect.signature(runner.run).parameters)


# -- list ----------------------------------------------------------------------------


def test_list_shows_data_time_and_budget():
    result = _cli("list")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [line.split()[0] for line in lines] == configs.names()
    rows = {line.split()[0]: line for line in lines}
    # The test environment's TFDS_DATA_DIR holds fashion_mnist and cifar10 only.
    assert "fashion_mnist (prepared)" in rows["quickstart"]
    assert "imagenet2012 (missing)" in rows["rigl_resnet50_imagenet_s80"]
    times = listing.cpu_times()
    for name in configs.names():
        if name in times:
            assert listing.cpu_time(name, times) in rows[name]
        else:
            assert listing.NOT_MEASURED in rows[name]
    assert "0.42x" in rows["rigl_resnet50_imagenet_s80"]
    assert "not stated" in rows["snip_vgg16_cifar10"]


def test_cpu_times_are_measurements_of_known_recipes():
    data = json.loads(listing.CPU_TIMES.read_text())
    assert data["how"] and data["machine"]
    for name, entry in data["recipes"].items():
        assert name in configs.RECIPES
        assert entry["seconds"] > 0 and entry["command"] == f"python -m recipes run {name} --preset cpu"


# -- published numbers and budgets carry their sources -------------------------------


def test_every_published_number_and_budget_names_its_source():
    for name in configs.names():
        recipe = configs.get(name)
        for ref in recipe.get("published", []):
            assert set(ref) >= {"setting", "metric", "value", "source"}, name
            if ref["value"] is None:
                assert ref.get("note", "").strip(), (name, ref["setting"])
            else:
                assert isinstance(ref["value"], (int, float)), (name, ref)
                assert ref["source"].strip(), (name, ref["setting"])
        stated = recipe.get("budget")
        if stated is not None:
            assert stated["value"].strip() and stated["source"].strip(), name


def test_checked_numbers_are_filled():
    wrn = {r["setting"]: r["value"] for r in configs.get("rigl_wrn22_2_cifar10")["published"]}
    assert wrn["RigL (ERK) WRN-22-2 CIFAR-10, 80%"] == 93.1
    assert wrn["SET (Random) WRN-22-2 CIFAR-10, 80%"] == 92.7
    assert wrn["Static (Random) WRN-22-2 CIFAR-10, 80%"] == 91.2
    assert wrn["Gradual pruning (Zhu & Gupta) WRN-22-2 CIFAR-10, 80%"] == 93.2
    s80 = [r["value"] for r in configs.get("rigl_resnet50_imagenet_s80")["published"]]
    s90 = [r["value"] for r in configs.get("rigl_resnet50_imagenet_s90")["published"]]
    assert s80 == [75.12, 76.8] and s90 == [73.07, 76.8]
