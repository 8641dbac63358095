"""The recipe runner: command line, config resolution, one run end to end."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from recipes import configs, runner

REPO = Path(__file__).resolve().parents[1]
TINY = {"data": {"subset": 384, "eval_subset": 200}, "egf": {"num_examples": 100}}


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "recipes", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_list():
    result = _cli("list")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith("#")]
    assert listed == configs.names()
    assert "quickstart" in listed


def test_unknown_recipe_is_a_clear_error():
    result = _cli("run", "no_such_recipe")
    assert result.returncode == 2
    assert "no_such_recipe" in result.stderr and "quickstart" in result.stderr
    with pytest.raises(ValueError, match="no_such_recipe.*quickstart"):
        runner.resolve("no_such_recipe")


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="gpu"), "`preset`"),
    (dict(epochs=0), "`epochs`"),
    (dict(overrides={"model": {"name": "lenet_1000"}}), "lenet_1000"),
    (dict(overrides={"method": {"name": "NoSuchRule"}}), "NoSuchRule"),
    (dict(overrides={"optimizer": {"class": "os.system"}}), "os.system"),
    (dict(overrides={"baseline": {"label": "sparse"}}), "baseline"),
])
def test_bad_settings_fail_before_training(kwargs, match):
    with pytest.raises(ValueError, match=match):
        runner.resolve("quickstart", **kwargs)


@pytest.mark.parametrize("preset", runner.PRESETS)
def test_every_recipe_resolves(preset):
    for name in configs.names():
        if preset not in configs.get(name)["presets"] and preset == "converged":
            continue  # a tier the studies define (refusal: test_study)
        config = runner.resolve(name, preset)
        assert config["epochs"] >= 1 and config["batch_size"] >= 1
        for ref in config["published"]:
            assert ref["source"] and (ref["value"] is not None or ref.get("note")), name


def test_baseline_method_replaces_the_recipe_method():
    # K-starts against a random mask: the baseline's Static gets none of KStarts' args.
    config = runner.resolve("kstarts_lenet300_fashion_mnist")
    baseline = runner.baseline_config(config)
    assert baseline["method"] == {"name": "Static", "args": {}}
    assert baseline["sparsify"]["start_sparsity"] == 0.9 and baseline["label"] == "random"
    assert config["method"]["name"] == "KStarts"


def test_presets_merge_and_steps_resolve():
    config = runner.resolve("rigl_wrn22_2_cifar10", "cpu", epochs=3)
    assert config["epochs"] == 3 and config["data"]["subset"] == 5000
    assert config["method"]["args"]["alpha"] == 0.3  # kept from the recipe
    assert config["method"]["args"]["delta_t"] == 10  # from the preset
    built = runner._build(config["method"]["args"], {"total_steps": 1000, "steps_per_epoch": 10})
    assert built["end_step"] == 768
    context = {"total_steps": 1000, "steps_per_epoch": 10}
    schedule = runner._build(config["optimizer"]["args"]["learning_rate"], context)
    assert float(schedule(400)) == pytest.approx(0.02)
    assert runner._build(config["optimizer"], context).nesterov


def test_run_end_to_end(tmp_path, capsys):
    out, root = tmp_path / "run", tmp_path / "saved_models"
    summary = runner.run("quickstart", epochs=1, out=out, export_root=root,
                         overrides=TINY, verbose=0)
    for name in ("metrics.csv", "metrics_dense.csv", "summary.json", "curves.png",
                 "egf.png", "sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    for arm in ("sparse", "dense"):
        assert any(f.name.startswith("events") for f in (out / "tensorboard" / arm).rglob("*"))
    with open(out / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert {"accuracy", "val_accuracy", "egf_l1", "egf_l2", "grad_norm_l2"} <= set(row)

    saved = json.loads((out / "summary.json").read_text())
    assert saved["arms"]["sparse"]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert saved["arms"]["dense"]["sparsity"] == 0.0
    assert saved["arms"]["sparse"]["final"]["egf_l2"] > 0
    assert saved["wall_seconds"] > 0 and "published" in saved and saved["config"]["preset"] == "cpu"
    assert summary["export"] == str(root / "quickstart" / "1")
    assert "sparse" in capsys.readouterr().out  # the final table

    serving = tf.saved_model.load(summary["export"]).signatures["serving_default"]
    outputs = serving(**{k: tf.zeros([2, 28, 28, 1]) for k in
                         serving.structured_input_signature[1]})
    assert all(np.all(np.isfinite(v.numpy())) and v.shape == (2, 10) for v in outputs.values())
