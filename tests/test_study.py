"""The study runner: a micro-study end to end, resume, aggregation vs scipy, bad input."""

import csv
import math
import json

import numpy as np
import pytest
import scipy.stats

from keras_sparse.analysis import stats, sweep
from recipes import __main__ as cli
from recipes import aggregate, executor, runner, studies, study

TINY = {"data": {"subset": 256, "eval_subset": 128}, "egf": {"num_examples": 64},
        "epochs": 1, "batch_size": 64, "baseline": None,
        "model": {"name": "mlp", "args": {"widths": [32]}}}
MICRO = {
    "name": "micro", "title": "micro study", "recipe": "quickstart", "baseline": "static",
    "grid": [
        {"name": "static", "method": "Static", "sparsity": 0.9,
         "overrides": {"method": {"name": "Static", "args": {}}}},
        {"name": "rigl", "method": "RigL", "sparsity": 0.9,
         "overrides": {"method": {"name": "RigL", "args": {"delta_t": 1}}}},
    ],
    "comparisons": [["rigl", "static"]],
    "seeds": 2, "presets": {"cpu": TINY}, "claims": [],
}


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(studies.STUDIES, "micro", MICRO)
    return MICRO


def _table(path):
    with open(path) as f:
        return {row["cell"]: row for row in csv.DictReader(f)}


def test_micro_study_end_to_end_and_resume(micro, tmp_path, capsys):
    out = tmp_path / "micro"
    result = study.run("micro", out=out, verbose=0)
    printed = capsys.readouterr().out
    assert "-- quickstart: training rigl (1 epochs, seed 1)" in printed  # arm label first
    assert "[4/4] rigl seed=1 final.val_accuracy=" in printed and "ETA 0:00:00" in printed
    for cell in ("static", "rigl"):
        for seed in (0, 1):
            run_dir = out / "runs" / cell / f"seed_{seed}"
            assert (run_dir / "metrics.csv").exists()
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["cell"] == cell and summary["seed"] == seed
            assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
            assert summary["epochs_to_sparsity"] == 0
            assert summary["dense_equivalent_epochs"] == pytest.approx(0.1, abs=2e-3)
    for name in ("table.csv", "table.md", "comparisons.csv", "ranking.md", "aggregate.json",
                 "accuracy_vs_sparsity.png", "itop.png", "regrown.png"):
        assert (out / name).stat().st_size > 0, name
    acc = {c: [r["final"]["val_accuracy"] for _, s, r in sweep.load_results(out / "runs")
               if _ == c] for c in ("static", "rigl")}
    row = _table(out / "table.csv")["rigl"]
    assert float(row["mean"]) == pytest.approx(stats.summarize(acc["rigl"])["mean"])
    assert row["test"] == "ttest" and row["baseline"] == "static"
    runs = [r for c, _, r in sweep.load_results(out / "runs") if c == "rigl"]
    assert float(row["grown_ever"]) == pytest.approx(
        np.mean([r["final"]["dst/grown_ever"] for r in runs]))
    assert 0 <= float(row["regrown_fraction"]) <= 1
    assert _table(out / "table.csv")["static"]["regrown_fraction"] == ""  # no growth
    assert [r["method"] for r in result["ranking"]["overall"]] in (["RigL", "Static"],
                                                                   ["Static", "RigL"])
    # Resume: a rerun trains nothing; a deleted run is the only one redone.
    stamp = (out / "runs" / "rigl" / "seed_0" / "summary.json").stat().st_mtime_ns
    (out / "runs" / "static" / "seed_1" / "summary.json").unlink()
    lines = []
    study.run("micro", out=out, verbose=0, log=lines.append)
    assert lines[0].startswith("3 of 4 runs already done")
    assert len(lines) == 2 and lines[1].startswith("[4/4] static seed=1")
    assert (out / "runs" / "rigl" / "seed_0" / "summary.json").stat().st_mtime_ns == stamp


def _fake_result(cell, seed, accuracy, method, itop=None):
    history = {"val_accuracy": [accuracy]}
    if itop is not None:
        history["dst/itop"] = [itop / 2, itop]
    return {"final": {"val_accuracy": accuracy, **({"dst/itop": itop} if itop else {})},
            "history": history, "method": method, "group": "g", "nominal_sparsity": 0.9,
            "sparsity": 0.9, "train_seconds": 1.0, "epochs_to_sparsity": 0,
            "dense_equivalent_epochs": 0.1, "cell": cell, "seed": seed}


def test_aggregation_matches_scipy_on_a_hand_made_table(micro, tmp_path):
    static = [0.801, 0.812, 0.795, 0.808]
    rigl = [0.815, 0.820, 0.799, 0.824]
    for seed, (a, b) in enumerate(zip(static, rigl)):
        sweep.write_json(tmp_path / "runs" / "static" / f"seed_{seed}" / "summary.json",
                         _fake_result("static", seed, a, "Static"))
        sweep.write_json(tmp_path / "runs" / "rigl" / f"seed_{seed}" / "summary.json",
                         _fake_result("rigl", seed, b, "RigL", itop=0.1 + seed / 100))
    result = study.aggregate("micro", tmp_path)
    table = _table(tmp_path / "table.csv")
    ref = scipy.stats.ttest_rel(rigl, static)
    row = table["rigl"]
    assert float(row["mean"]) == pytest.approx(sum(rigl) / 4, abs=1e-12)
    assert float(row["std"]) == pytest.approx(float(scipy.stats.tstd(rigl)), rel=1e-12)
    lo, hi = scipy.stats.t.interval(0.95, 3, loc=sum(rigl) / 4, scale=scipy.stats.sem(rigl))
    assert [float(row["ci95_lo"]), float(row["ci95_hi"])] == pytest.approx([lo, hi], rel=1e-12)
    assert float(row["p_value"]) == float(ref.pvalue)
    assert float(row["p_holm"]) == float(ref.pvalue)  # one test: Holm leaves it
    assert table["static"]["test"] == ""  # the baseline is not tested against itself
    comparison = result["comparisons"][0]["test"]
    assert comparison["statistic"] == float(ref.statistic)
    assert result["ranking"]["overall"][0]["method"] == "RigL"
    assert "paired t-test (scipy.stats.ttest_rel)" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "itop.png").exists()


def test_cell_overrides_replace_the_method(micro):
    _, _, configs, seeds = study.plan("micro", seeds=3)
    assert seeds == [0, 1, 2]
    assert configs["rigl"]["method"] == {"name": "RigL", "args": {"delta_t": 1}}
    assert configs["static"]["data"]["subset"] == 256 and configs["static"]["epochs"] == 1


@pytest.mark.parametrize("change, match", [
    (lambda s: s["grid"][0].update(colour="red"), "unknown cell key 'colour'"),
    (lambda s: s["grid"][0]["overrides"].update(optimiser={}), "unknown override key 'optimiser'"),
    (lambda s: s["grid"][0]["overrides"].update(data={"subsett": 3}), "data.subsett"),
    (lambda s: s["grid"][1].update(name="static"), "unique"),
    (lambda s: s.update(baseline="nope"), "baseline 'nope'"),
    (lambda s: s["grid"][0]["overrides"].update(method={"name": "Nope"}), "Nope"),
])
def test_bad_study_is_refused_before_anything_is_written(monkeypatch, tmp_path, change, match):
    bad = json.loads(json.dumps(MICRO))
    change(bad)
    monkeypatch.setitem(studies.STUDIES, "micro", bad)
    with pytest.raises(ValueError, match=match):
        study.run("micro", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, match", [
    (["study", "no_such_study"], "unknown study 'no_such_study'"),
    (["study", "micro", "--seeds", "0"], "--seeds must be at least 1"),
    (["study", "micro", "--cells", "nope"], "no cell 'nope'"),
])
def test_cli_bad_input(micro, tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exit_:
        cli.main(args + ["--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_registered_studies_resolve():
    for name in studies.names():
        definition, grid, configs, seeds = study.plan(name, "cpu")
        assert len(seeds) >= 3 and len(configs) == len(definition["grid"])
        study.plan(name, "paper")


def test_fit_logs_one_line_per_epoch_off_a_terminal():
    assert runner.default_verbose() == 2  # pytest captures stdout: not a terminal


def test_small_dense_weight_counts_are_the_models():
    import keras_sparse as ks
    from recipes.studies import common

    def kernels(name, **args):
        model = ks.applications.get(name, input_shape=(28, 28, 1), num_classes=10, **args)
        return sum(math.prod(w.shape) for w in model.weights if "kernel" in w.path)

    assert kernels("lenet_300_100") == common.LENET300_WEIGHTS
    assert kernels("lenet5") == common.lenet5_weights()
    for group, full in (("lenet300", common.LENET300_WEIGHTS),
                        ("lenet5", common.lenet5_weights())):
        for s in (0.9, 0.98):
            spec, count = common.small_dense(group, s)
            assert kernels(spec["name"], **spec["args"]) == count
            assert abs(count - (1 - s) * full) < 0.12 * count
    with pytest.raises(ValueError, match="width"):
        ks.applications.get("lenet5", width=0)


def test_step_fractions_are_at_least_one_step():
    assert runner._build("0.02*total_steps", {"total_steps": 10}) == 1
    assert runner._build("0.02*total_steps", {"total_steps": 1000}) == 20
    assert runner._build("0.0*total_steps", {"total_steps": 1000}) == 0


def test_analysis_studies_refuse_flags_they_do_not_use(tmp_path, capsys):
    from recipes.__main__ import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "evci_paths", "--strategy", "mirrored", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--strategy" in capsys.readouterr().err
    assert not out.exists()


def _tiny_converged(name, monkeypatch):
    """The study's converged tier on 300 examples (its cells' own epochs kept)."""
    definition = studies.STUDIES[name]
    tiny = runner.merge(definition["presets"]["converged"],
                        {"data": {"subset": 300, "eval_subset": 200},
                         "egf": {"num_examples": 32}, "epochs": 2})
    monkeypatch.setitem(studies.STUDIES, name,
                        dict(definition, presets=dict(definition["presets"], converged=tiny)))


def test_converged_tier_resolves_with_the_papers_protocol():
    for name in ("haroon_init", "dst_fashion_mnist"):
        definition, grid, configs, seeds = study.plan(name, "converged")
        assert len(seeds) >= 3 and len(configs) == len(definition["tiers"]["converged"]["grid"])
        for config in configs.values():
            assert config["data"]["subset"] is None and config["validation_freq"] == 1
            assert config["optimizer"]["class"] == "keras.optimizers.SGD"
            assert config["optimizer"]["args"]["nesterov"] is True
    _, _, haroon, _ = study.plan("haroon_init", "converged")
    kstarts = haroon["lenet300_kstarts_s90"]
    assert kstarts["method"]["args"]["mode"] == "independent"
    assert kstarts["method"]["args"]["distribution"] == "uniform"
    # The winner trains as many epochs after its selection as every other arm.
    assert kstarts["epochs"] - 4 * 2 == haroon["lenet300_random_s90"]["epochs"]
    assert haroon["lenet300_random_s90"]["distribution"] == "uniform"
    assert haroon["lenet300_dissipating_s90"]["method"]["args"]["scope"] == "global"
    assert haroon["lenet300_dissipating_s90"]["method"]["args"].get("epochs") is None


def test_converged_first_cells_run_in_a_micro_setting(monkeypatch, tmp_path):
    _tiny_converged("haroon_init", monkeypatch)
    cells = ["lenet300_dense", "lenet300_kstarts_dissipating_s90"]
    study.run("haroon_init", preset="converged", seeds=1, cells=cells, out=tmp_path, verbose=0)
    combo = json.loads((tmp_path / "runs" / cells[1] / "seed_0" / "summary.json").read_text())
    assert combo["epochs"] == 20 and len(combo["history"]["val_accuracy"]) == 20
    assert combo["history"]["kstarts_winner"][0] in range(5)
    assert combo["sparsity_per_epoch"][9] == pytest.approx(0.7, abs=1e-3)  # K-starts' mask
    # Dissipating prunes within it, by threshold only (here every weight moved > 10%).
    assert 0.7 - 1e-6 <= combo["sparsity_per_epoch"][-1] <= 0.9 + 1e-6
    assert combo["history"]["dissipating_removed"][:10] == [0] * 10


def test_a_preset_the_study_lacks_is_refused_naming_the_ones_it_has(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"no preset 'converged'; its presets: cpu, paper"):
        study.plan("dstee_exploration", "converged")
    with pytest.raises(SystemExit):
        cli.main(["study", "dstee_exploration", "--preset", "converged",
                  "--out", str(tmp_path / "out")])
    assert "its presets: cpu, paper" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no 'converged' preset"):
        runner.resolve("quickstart", "converged")


def test_commit_option_commits_each_finished_run(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "config", "user.email", "t@example.com"], check=True)
    subprocess.run(["git", "config", "user.name", "t"], check=True)
    lines = []
    commit = executor.git_committer(tmp_path / "out", lines.append)
    (tmp_path / "out" / "runs").mkdir(parents=True)
    (tmp_path / "out" / "runs" / "summary.json").write_text("{}")
    commit("[1/2] a seed=0")
    commit("[2/2] nothing new")  # nothing staged: no empty commit
    log = subprocess.run(["git", "log", "--format=%s"], capture_output=True, text=True).stdout
    assert log.splitlines() == [f"{tmp_path / 'out'}: [1/2] a seed=0"]
    assert lines == ["[1/2] a seed=0", "[2/2] nothing new"]


def test_plateau_change_reads_the_last_fifth_of_the_learning_curve():
    curve = [0.5] * 15 + [0.8950, 0.8965, 0.899, 0.8956, 0.8955]
    result = {"epochs": 20, "history": {"val_accuracy": curve}}
    assert aggregate.plateau_change(result) == pytest.approx(0.8955 - 0.8950)
    assert aggregate.plateau_change({"epochs": 20, "history": {"val_accuracy": [0.9]}}) is None


def test_nm_dst_plans_structured_dst_against_unstructured_and_gmp(monkeypatch, tmp_path):
    definition, grid, configs, seeds = study.plan("nm_dst", "cpu")
    for key, structure, s in (("nm24", "2:4", 0.5), ("nm14", "1:4", 0.75)):
        for method in ("rigl", "set"):
            structured = configs[f"lenet300_{method}_{key}"]
            plain = configs[f"lenet300_{method}_s{int(s * 100)}"]
            assert structured["sparsify"] == {"structure": structure}
            assert plain["sparsify"] == {} and plain["sparsity"] == structured["sparsity"] == s
            assert structured["method"] == plain["method"]
            assert [f"lenet300_{method}_{key}", f"lenet300_gmp_{key}"] in definition["comparisons"]
        gmp = configs[f"lenet300_gmp_{key}"]
        assert gmp["sparsify"] == {"start_sparsity": 0.0, "structure": structure}
        assert gmp["method"]["args"]["schedule"]["args"]["final_sparsity"] == s
    # One structured cell runs at a tiny scale and ends N:M.
    tiny = runner.merge(definition["presets"]["cpu"],
                        {"data": {"subset": 256, "eval_subset": 128},
                         "egf": {"num_examples": 32}, "epochs": 1, "validation_freq": 1})
    monkeypatch.setitem(studies.STUDIES, "nm_dst",
                        dict(definition, presets=dict(definition["presets"], cpu=tiny)))
    study.run("nm_dst", preset="cpu", seeds=1, cells=["lenet300_gmp_nm14"], out=tmp_path,
              verbose=0)
    summary = json.loads((tmp_path / "runs" / "lenet300_gmp_nm14" / "seed_0" /
                          "summary.json").read_text())
    assert summary["sparsity_per_epoch"][-1] == pytest.approx(0.75, abs=1e-6)
