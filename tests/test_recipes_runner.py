"""One runner: the cell executor behind `run`, `study` and the analysis studies, one CLI
whose every flag works or is refused with its reason, and a density trace that reads
masks only when they change."""

import inspect
import json
import re
import subprocess

import keras
import numpy as np
import pytest

import keras_sparse as ks
from recipes import __main__ as cli
from recipes import analysis_studies, executor, paths_study, runner, study
from recipes.density_trace import DensityTrace

# -- the executor ------------------------------------------------------------------


def test_a_resumed_grid_skips_finished_runs_and_reruns_only_on_request(tmp_path):
    calls, lines = [], []

    def train(cell, seed):
        calls.append((cell["name"], seed))
        return {"acc": 0.5 + seed / 10}

    cells, where = [{"name": "a"}, {"name": "b"}], executor.grid_dirs(tmp_path)
    executor.execute(cells, [0, 1], train, where, headline="acc", log=lines.append)
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert lines[-1].startswith("[4/4] b seed=1 acc=0.6000") and "ETA 0:00:00" in lines[-1]
    assert json.loads((tmp_path / "b" / "seed_1" / "summary.json").read_text()) == {"acc": 0.6}

    (tmp_path / "a" / "seed_1" / "summary.json").unlink()
    calls.clear(), lines.clear()
    assert [r[3] for r in executor.plan(cells, [0, 1], where)] == [True, False, True, True]
    done = executor.execute(cells, [0, 1], train, where, headline="acc", log=lines.append)
    assert calls == [("a", 1)]  # only the run without its summary
    assert lines == [f"3 of 4 runs already done in {tmp_path}; skipped.",
                     lines[1]] and lines[1].startswith("[4/4] a seed=1 acc=0.6000")
    assert [d["result"]["acc"] for d in done] == [0.5, 0.6, 0.5, 0.6]  # all, in grid order

    calls.clear()
    executor.execute(cells[:1], [0], train, where, log=lines.append, resume=False)
    assert calls == [("a", 0)]


def test_commit_option_commits_each_finished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["init", "-q"], ["config", "user.email", "t@example.com"],
                    ["config", "user.name", "t"]):
        subprocess.run(["git", *command], check=True)
    executor.execute([{"name": "a"}], [0, 1], lambda cell, seed: {"seed": seed},
                     executor.grid_dirs("out/runs"), log=lambda line: None, commit="out")
    log = subprocess.run(["git", "log", "--format=%s"], capture_output=True, text=True).stdout
    assert [line.split("  ")[0] for line in log.splitlines()] == ["out: [2/2] a seed=1",
                                                                  "out: [1/2] a seed=0"]


def test_a_resumed_analysis_study_skips_finished_parts(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(paths_study, "run_cell", lambda config, part, seed, data_dir=None:
                        trained.append((part["name"], seed)) or {"part": part["name"]})
    monkeypatch.setattr(paths_study, "report", lambda config, out: {"reported": str(out)})
    part = "fashion_mnist_mlp_98"
    analysis_studies.run("evci_paths", seeds=2, out=tmp_path, cells=[part], log=print)
    assert trained == [(part, 0), (part, 1)]
    (tmp_path / part / "seed_0" / "summary.json").unlink()
    lines = []
    analysis_studies.run("evci_paths", seeds=2, out=tmp_path, cells=[part], log=lines.append)
    assert trained[2:] == [(part, 0)] and lines[0].startswith("1 of 2 runs already done")


def test_the_one_cell_run_goes_through_the_executor(tmp_path, monkeypatch):
    calls, lines = [], []
    real = executor.execute

    def spy(cells, seeds, run_cell, where, **kwargs):
        calls.append((cells, seeds, where("quickstart", 3), kwargs))
        return real(cells, seeds, run_cell, where, **kwargs)

    monkeypatch.setattr(executor, "execute", spy)
    out = tmp_path / "run"
    tiny = {"data": {"subset": 384, "eval_subset": 64}, "egf": {"num_examples": 32},
            "baseline": None, "model": {"name": "mlp", "args": {"widths": [16]}}}
    summary = runner.run("quickstart", epochs=1, seed=3, out=out, overrides=tiny, verbose=0,
                         export_root=tmp_path / "saved", log=lines.append)
    [(cells, seeds, where, kwargs)] = calls
    assert cells == [{"name": "quickstart"}] and seeds == [3] and where == out
    assert kwargs["resume"] is False  # `run` always trains, replacing a finished run
    assert lines == [lines[0]] and lines[0].startswith("[1/1] quickstart seed=3 "
                                                       "arms.sparse.final.val_accuracy=")
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["seed"] == 3 and summary["arms"]["sparse"]["sparsity"] > 0.8


# -- one CLI ---------------------------------------------------------------------------

COMMANDS = {"recipe": ["run", "quickstart"], "grid": ["study", "haroon_init"],
            "analysis": ["study", "evci_paths"]}
CELL = {"recipe": "quickstart", "grid": "lenet300_dense", "analysis": "fashion_mnist_mlp_98"}
# flag -> (arguments, the keyword the runner receives, its value); the cell per kind.
FLAGS = {
    "--preset": (["--preset", "paper"], "preset", "paper"),
    "--epochs": (["--epochs", "2"], "epochs", 2),
    "--seed": (["--seed", "0"], "seed", 0),
    "--seeds": (["--seeds", "2"], "seeds", 2),
    "--cells": (None, "cells", None),
    "--out": (["--out", "OUT"], "out", "OUT"),
    "--export-root": (["--export-root", "EXPORT"], "export_root", "EXPORT"),
    "--commit": (["--commit"], "commit", True),
    "--aggregate-only": (["--aggregate-only"], None, None),
    "--strategy": (["--strategy", "mirrored"], "strategy", "mirrored"),
    "--mixed-precision": (["--mixed-precision"], "mixed_precision", True),
    "--jit-compile": (["--no-jit-compile"], "jit_compile", False),
    "--data-dir": (["--data-dir", "DATA"], "data_dir", "DATA"),
    "--download": (["--download"], "download", True),
}
REFUSED = {  # flag -> words of the reason
    "recipe": {"--seeds": "trains one seed", "--cells": "a recipe is one cell",
               "--aggregate-only": "nothing to aggregate"},
    "grid": {"--seed": "seeds 0..N-1", "--epochs": "preset's protocol",
             "--export-root": "exports no model"},
    "analysis": {"--seed": "seeds 0..N-1", "--epochs": "preset's protocol",
                 "--export-root": "exports no model", "--strategy": "no tf.distribute",
                 "--mixed-precision": "float32", "--jit-compile": "takes no jit_compile"},
}
RUNNERS = {"recipe": (runner, "run", "preflight"), "grid": (study, "run", "preflight"),
           "analysis": (analysis_studies, "run", "preflight")}


@pytest.mark.parametrize("command", ["run", "study"])
def test_every_flag_of_run_and_study_is_classified(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "-h"])
    options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out))
    assert options - {"--help", "--no-jit-compile"} == set(FLAGS)


@pytest.fixture
def recorded(monkeypatch):
    """The calls the CLI makes into the runners (nothing trains)."""
    calls = []
    for kind, (module, run, check) in RUNNERS.items():
        for name in (run, check):
            real = getattr(module, name)

            def record(*args, _kind=kind, _name=name, _real=real, **kwargs):
                bound = inspect.signature(_real).bind(*args, **kwargs)
                calls.append((_kind, _name, dict(bound.arguments)))

            monkeypatch.setattr(module, name, record)
    monkeypatch.setattr(study, "plan", lambda *a, **k: calls.append(("grid", "plan", {})))
    monkeypatch.setattr(study, "aggregate", lambda *a, **k: calls.append(("grid", "aggregate",
                                                                         {})))
    monkeypatch.setattr(analysis_studies, "report",
                        lambda *a, **k: calls.append(("analysis", "aggregate", {})))
    return calls


@pytest.mark.parametrize("kind", list(COMMANDS))
@pytest.mark.parametrize("flag", list(FLAGS))
def test_every_flag_works_or_is_refused_with_its_reason(kind, flag, recorded, capsys, tmp_path,
                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments, keyword, value = FLAGS[flag]
    if flag == "--cells":
        arguments, value = ["--cells", CELL[kind]], [CELL[kind]]
    argv = COMMANDS[kind] + arguments
    if flag in REFUSED[kind]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert f"{flag}: " in error and REFUSED[kind][flag] in error
        assert recorded == [] and list(tmp_path.iterdir()) == []
        return
    assert cli.main(argv) == 0
    if flag == "--aggregate-only":
        assert [name for _, name, _ in recorded if name != "plan"] == ["aggregate"]
        return
    [(_, name, received)] = [c for c in recorded if c[1] == "run"]
    assert received[keyword] == value, (kind, flag, received)


def test_analysis_studies_read_their_data_dir_or_download(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "tfds"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["study", "tessera_scsdc", "--data-dir", str(empty), "--out",
                  str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert f"tfds build fashion_mnist --data_dir {empty}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    asked = []
    monkeypatch.setattr(analysis_studies.launch, "ensure_prepared",
                        lambda name, data_dir, download: asked.append((name, data_dir,
                                                                       download)))
    analysis_studies.preflight("evci_paths", "cpu", cells=["cifar10_cnn_bn_90"],
                               data_dir="D", download=True)
    assert asked == [("cifar10", "D", True)]  # only the selected part's dataset


# -- the density trace ---------------------------------------------------------------


class _HostDensity(keras.callbacks.Callback):
    """The trace's sum, read from every mask on the host before every step."""

    def __init__(self):
        super().__init__()
        self.per_step, self.changes, self._last = [], 0, None

    def on_train_batch_begin(self, batch, logs=None):
        masks = [p.mask.numpy() for p in self.model.masked_weights]
        if self._last is not None and any((a != b).any() for a, b in zip(masks, self._last)):
            self.changes += 1
        self._last = masks
        self.per_step.append(sum(float(np.sum(m)) for m in masks))


def _fit(method, sparsity, steps=12):
    keras.utils.set_random_seed(0)
    model = ks.sparsify(ks.applications.mlp([32], (8,), 4), sparsity, distribution="uniform",
                        seed=0)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x = np.random.default_rng(0).normal(size=(steps * 8, 8)).astype("float32")
    y = np.arange(steps * 8) % 4
    trace, host = DensityTrace(8), _HostDensity()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
              callbacks=[method(), trace, host])
    return trace, host


@pytest.mark.parametrize("method, sparsity, changes", [
    (ks.callbacks.Static, 0.9, 0),
    (lambda: ks.callbacks.SET(delta_t=5, alpha=0.5, end_step=20, seed=0), 0.9, 4),
    (lambda: ks.callbacks.GradualMagnitudePruning(ks.schedules.PolynomialDecay(
        0.5, 0.9, begin_step=0, end_step=20, frequency=5)), 0.5, 4),
])
def test_density_trace_reads_masks_only_when_they_change(method, sparsity, changes):
    trace, host = _fit(method, sparsity)
    assert host.changes == changes
    assert trace.reads == 1 + changes
    # The same numbers as summing every mask before every step (Dense kernels: 1 MAC each).
    full = 8 * 32 + 32 * 4
    assert trace.per_epoch == pytest.approx([np.mean(host.per_step[:12]) / full,
                                             np.mean(host.per_step[12:]) / full], rel=1e-12)
    assert trace.flops == pytest.approx(6 * 8 * sum(host.per_step), rel=1e-12)


MIRRORED_TRACE = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import keras_sparse as ks
from recipes.density_trace import DensityTrace
from tests.test_recipes_runner import _HostDensity
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = ks.sparsify(ks.applications.mlp([32], (8,), 4), 0.5, distribution="uniform", seed=0)
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gmp = ks.callbacks.GradualMagnitudePruning(ks.schedules.PolynomialDecay(
        0.5, 0.9, begin_step=0, end_step=20, frequency=5))
x = np.random.default_rng(0).normal(size=(96, 8)).astype("float32")
trace, host = DensityTrace(8), _HostDensity()
model.fit(x, np.arange(96) % 4, batch_size=8, epochs=2, verbose=0, shuffle=False,
          callbacks=[gmp, trace, host])
full = 8 * 32 + 32 * 4
print(trace.reads, host.changes, trace.per_epoch[0] * full, np.mean(host.per_step[:12]),
      trace.per_epoch[1] * full, np.mean(host.per_step[12:]))
"""


def test_density_trace_under_a_mirrored_strategy(run_python):
    # The change counter is a mirrored variable bumped where the masks change.
    reads, changes, *sums = run_python(MIRRORED_TRACE).split()
    assert int(changes) == 4 and int(reads) == 5
    assert float(sums[0]) == pytest.approx(float(sums[1])) and float(sums[2]) == pytest.approx(
        float(sums[3]))
