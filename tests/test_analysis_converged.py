"""The converged tier of the analysis studies: presets, CLI, micro runs, and its statistics."""

import copy
import json
import math

import keras
import numpy as np
import pytest
import scipy.stats

from keras_sparse.analysis import paths, scsdc, stats
from recipes import analysis_studies as studies
from recipes import paths_study


# -- statistics: plateau and the bootstrap of tau differences -------------------------------


def test_plateau_window_and_verdict():
    flat = [0.5, 0.7, 0.8, 0.85, 0.86, 0.87, 0.88, 0.884, 0.885, 0.886]
    out = stats.plateau(flat)  # 10 epochs: the last 2
    assert out["window"] == 2 and out["converged"]
    assert out["change"] == pytest.approx(0.001) and out["last"] == 0.886
    rising = [0.5] * 15 + [0.880, 0.881, 0.882, 0.883, 0.884]  # 20 epochs: the last 4
    out = stats.plateau(rising)
    assert out["window"] == 4 and out["change"] == pytest.approx(0.003)
    assert not out["converged"]  # a spread of 0.3 points is not < 0.3 points
    assert stats.plateau(rising, tolerance=0.0031)["converged"]
    assert stats.plateau([0.1, 0.9, 0.9], fraction=0.5)["window"] == 2
    with pytest.raises(ValueError, match="at least 2"):
        stats.plateau([0.9])
    with pytest.raises(ValueError, match="fraction"):
        stats.plateau([0.8, 0.9], fraction=0)


def test_kendall_bootstrap_perfect_and_reversed_measures():
    # 6 configurations of 3 networks; x ranks accuracy exactly, z in reverse.
    y = [0.60, 0.62, 0.64, 0.70, 0.71, 0.75, 0.80, 0.81, 0.82, 0.83, 0.84, 0.86,
         0.87, 0.88, 0.89, 0.90, 0.91, 0.92]
    groups = [k // 3 for k in range(18)]
    x = [10 * v for v in y]
    z = [-v for v in y]
    out = stats.kendall_bootstrap(x, z, y, groups, num_resamples=200, seed=1)
    assert out["tau_x"] == pytest.approx(1.0) and out["tau_z"] == pytest.approx(-1.0)
    assert out["diff"] == pytest.approx(2.0) and out["abs_diff"] == pytest.approx(0.0)
    assert out["ci95"] == pytest.approx([2.0, 2.0])  # every resample: tau 1 and -1
    assert out["p_value"] == pytest.approx(2 / 201)  # the smallest p 200 resamples give
    assert out["abs_ci95"] == pytest.approx([0.0, 0.0]) and out["abs_p_value"] == 1.0
    assert (out["n"], out["groups"], out["num_resamples"]) == (18, 6, 200)
    same = stats.kendall_bootstrap(x, x, y, groups, num_resamples=50)
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_kendall_bootstrap_resamples_groups_not_items():
    # Group A: x follows y, z reverses it; group B the other way round, at
    # higher values of all three. A resample of A twice (1 in 4) gives a
    # difference of +2, of B twice -2: with groups resampled, the interval is
    # exactly [-2, 2]; resampling the 10 items one by one would almost never
    # draw only A's or only B's items.
    ya, yb = [1.0, 2.0, 3.0, 4.0, 5.0], [11.0, 12.0, 13.0, 14.0, 15.0]
    x = ya + [26.0 - v for v in yb]
    z = [6.0 - v for v in ya] + yb
    y = ya + yb
    out = stats.kendall_bootstrap(x, z, y, ["A"] * 5 + ["B"] * 5, num_resamples=200, seed=0)
    assert out["ci95"] == pytest.approx([-2.0, 2.0])
    assert out["p_value"] > 0.5  # no evidence either way
    assert out["tau_x"] == pytest.approx(scipy.stats.kendalltau(x, y).statistic)
    assert out["tau_z"] == pytest.approx(scipy.stats.kendalltau(z, y).statistic)
    with pytest.raises(ValueError, match="2 distinct groups"):
        stats.kendall_bootstrap(x, z, y, ["A"] * 10)
    with pytest.raises(ValueError, match="one entry per item"):
        stats.kendall_bootstrap(x, z, y[:-1], ["A"] * 5 + ["B"] * 5)


def test_scsdc_report_bootstraps_tau_differences_by_configuration(tmp_path):
    from keras_sparse.analysis import sweep

    rng = np.random.default_rng(0)
    for c in range(5):
        for seed in range(2):
            acc = {"dense": 0.8 + 0.02 * c + 0.001 * seed, "sparse": 0.79 + 0.02 * c}
            arms = {label: {"history": {"val_accuracy": [acc[label] - 0.1, acc[label],
                                                         acc[label]],
                                        "egf_l2": [0.0, 0.0, acc[label]],  # follows accuracy
                                        "egf_l1": [0.0, 0.0, float(rng.random())],
                                        "grad_norm_l1": [0.0, 0.0, float(rng.random())],
                                        "grad_norm_l2": [0.0, 0.0, float(rng.random())]},
                            "final": {"val_accuracy": acc[label]}} for label in acc}
            run = {"task": "toy", "dataset": "toy", "optimizer": "sgd", "activation": "relu",
                   "regularizer": "none", "dense_width": 4, "sparse_width": 8 + c,
                   "seed": seed, "gap": acc["sparse"] - acc["dense"], **arms}
            sweep.write_json(sweep.run_dir(tmp_path, f"toy-c{c}", seed) / "summary.json", run)
    result = scsdc.report(str(tmp_path), bootstrap_resamples=50)
    rows = result["kendall_differences"]
    assert {(r["at"], r["versus"]) for r in rows} == {
        (at, other) for at in ("final", "mean") for other in ("grad_norm_l2", "grad_norm_l1",
                                                               "egf_l1")}
    final = next(r for r in rows if r["at"] == "final" and r["versus"] == "grad_norm_l2")
    assert final["groups"] == 5 and final["n"] == 20  # 5 configurations, 20 networks
    assert final["tau_x"] == pytest.approx(1.0) and final["ci95"][0] > 0
    assert result["convergence"]["dense"] == "10/10"  # flat last 20% (2 of 3 epochs)
    assert (tmp_path / "kendall_differences.csv").exists()


# -- the library pieces the converged tier uses ----------------------------------------------


def test_bezier_checkpoints_measure_one_training_run():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.Dense(3)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    start = [np.asarray(w) for w in model.get_weights()]
    end = [w + 0.5 for w in start]
    kwargs = dict(order=2, epochs=3, num_points=5, seed=0, batch_size=16)
    with_checks = paths.bezier_path(model, start, end, (x, y), checkpoints=[3, 1], **kwargs)
    plain = paths.bezier_path(model, start, end, (x, y), **kwargs)
    assert [c["epoch"] for c in with_checks["checkpoints"]] == [1, 3]
    assert with_checks["checkpoints"][-1]["points"] == with_checks["points"]
    losses = [[p["loss"] for p in curve["points"]] for curve in (with_checks, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)  # the same training
    assert with_checks["checkpoints"][0]["points"] != with_checks["points"]  # it moved
    for bad in ([0], [4], [], 2):
        with pytest.raises(ValueError, match="checkpoints"):
            paths.bezier_path(model, start, end, (x, y), checkpoints=bad, **kwargs)


def test_learning_rate_schedules():
    assert scsdc.learning_rate_schedule("constant", 0.1, None) == 0.1
    cosine = scsdc.learning_rate_schedule("cosine", 0.1, 100)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)
    step = paths_study._optimizer({"name": "momentum", "learning_rate": 0.05,
                                   "schedule": "step"}, total_steps=40)()
    assert step.momentum == 0.9
    rate = step.get_config()["learning_rate"]  # the serialized schedule
    assert rate["class_name"] == "PiecewiseConstantDecay"
    assert rate["config"]["boundaries"] == [20, 30]
    assert rate["config"]["values"] == pytest.approx([0.05, 0.005, 0.0005])
    with pytest.raises(ValueError, match="total steps"):
        scsdc.learning_rate_schedule("cosine", 0.1, None)
    with pytest.raises(ValueError, match="schedule"):
        scsdc.learning_rate_schedule("linear", 0.1, 10)


# -- presets and the command line --------------------------------------------------------------


def test_converged_presets_resolve():
    assert "converged" in studies.PRESETS
    tessera, seeds = studies.resolve("tessera_scsdc", "converged")
    assert len(seeds) >= 3 and tessera["preset"] == "converged"
    [task] = tessera["tasks"]
    assert task["subset"] is None and task["eval_subset"] is None  # all 60,000 / 10,000
    assert tessera["schedule"] != "constant"
    sweep_spec = tessera["lr_sweep"]
    assert set(sweep_spec["candidates"]) == set(scsdc.OPTIMIZERS)
    assert "test" not in sweep_spec["eval_split"]  # rates are picked on held-out training data
    cells = scsdc.cells({task["name"]: {"sparse_widths": task["sparse_widths"],
                                        "dense_width": task["dense_width"]}},
                        tessera["grid"])
    assert {c["optimizer"] for c in cells} == set(scsdc.OPTIMIZERS)
    assert {"none", "batchnorm", "l2", "augmentation"} == {c["regularizer"] for c in cells}
    paths_config, seeds = studies.resolve("evci_paths", "converged")
    assert len(seeds) >= 3
    [part] = paths_config["parts"]
    assert part["subset"] is None and part["curves"]
    assert part["optimizer"]["name"] == "momentum" and part["optimizer"]["schedule"] != "constant"
    assert part["curve_checkpoints"][-1] == part["curve_epochs"]
    assert len(part["curve_checkpoints"]) >= 3
    curved = {tuple(pair) for curve in paths_config["curves"] for pair in curve["pairs"]}
    assert ("S", "P") in curved and ("I", "P") not in curved
    assert {(c["subspace"], c["order"]) for c in paths_config["curves"]} == {
        ("sparse", 2), ("sparse", 3), ("dense", 2)}
    assert paths_config["curves"] != studies.STUDIES["evci_paths"]["curves"]  # cpu keeps its own


def test_cli_passes_converged_and_refuses_a_preset_a_study_lacks(tmp_path, monkeypatch, capsys):
    from recipes.__main__ import main

    calls = []
    monkeypatch.setattr(studies, "run", lambda *args, **kwargs: calls.append(args))
    assert main(["study", "tessera_scsdc", "--preset", "converged", "--out", str(tmp_path)]) == 0
    assert calls == [("tessera_scsdc", "converged", None, str(tmp_path))]
    lacking = copy.deepcopy(studies.STUDIES["evci_paths"])
    del lacking["presets"]["converged"]
    monkeypatch.setitem(studies.STUDIES, "evci_paths", lacking)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "evci_paths", "--preset", "converged", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no preset 'converged'" in err and "its presets: cpu, paper" in err
    assert not out.exists() and len(calls) == 1


# -- the first cell of each converged study, at a micro scale ---------------------------------


def _micro(name, monkeypatch, **changes):
    """The study with its converged preset shrunk by `changes(preset)`; the rest as is."""
    study = copy.deepcopy(studies.STUDIES[name])
    preset = study["presets"]["converged"]
    for key, change in changes.items():
        preset[key] = change(preset[key])
    monkeypatch.setitem(studies.STUDIES, name, study)
    return study


def test_converged_evci_paths_first_cell_micro(tmp_path, monkeypatch):
    micro = {"epochs": 2, "subset": 256, "eval_subset": 128, "path_subset": 128,
             "bn_subset": 64, "batch_size": 64, "widths": [16, 8], "curve_epochs": 2,
             "curve_checkpoints": [1, 2], "alphas": 8, "curve_points": 3}
    _micro("evci_paths", monkeypatch, parts=lambda parts: [dict(parts[0], **micro)],
           seeds=lambda n: 2,
           curves=lambda curves: [dict(curves[0], pairs=[["S", "P"]])])  # one curve
    report = studies.run("evci_paths", "converged", out=tmp_path, log=lambda line: None)
    entry = report["fashion_mnist_mlp_98"]
    assert entry["seeds"] == [0, 1]
    for name in ("P", "S", "L", "S2"):  # each solution's learning curve and its verdict
        assert len(entry["convergence"][name]["per_seed"]) == 2
        assert entry["convergence"][name]["met"].endswith("/2")
    assert set(entry["barrier_checkpoints"]["S->P"]["bezier_sparse_2"]) == {"1", "2"}
    assert "S->P bezier_sparse_2 barrier, 2 vs 1 curve epochs" in entry["tests"]
    run = json.loads((tmp_path / "fashion_mnist_mlp_98/seed_0/summary.json").read_text())
    assert len(run["metrics"]["P"]["test_accuracy_curve"]) == 2
    assert run["metrics"]["P"]["test_accuracy_curve"][-1] == pytest.approx(
        run["metrics"]["P"]["test_accuracy"])
    curve = run["paths"]["S->P"]["bezier_sparse_2"]
    assert curve["checkpoints"][-1]["barrier"] == curve["barrier"]


def test_converged_tessera_first_cell_micro(tmp_path, monkeypatch):
    tiny = {"depth": 1, "dense_width": 4, "sparse_widths": [8], "batch_size": 64,
            "subset": 256, "eval_subset": 128}
    _micro("tessera_scsdc", monkeypatch, seeds=lambda n: 1, epochs=lambda n: 2,
           egf_examples=lambda n: 64, bootstrap_resamples=lambda n: 20,
           tasks=lambda tasks: [dict(tasks[0], **tiny)],
           grid=lambda grid: grid[:1],  # its first block: every optimizer, ReLU, none/BatchNorm
           lr_sweep=lambda spec: dict(spec, candidates={"sgd": [0.01, 0.1]}, epochs=1,
                                      train_split="train[:256]",
                                      eval_split="train[59000:59128]"))
    config, _ = studies.resolve("tessera_scsdc", "converged")
    first = scsdc.cells({"t": {"dense_width": 4, "sparse_widths": [8]}}, config["grid"])[:2]
    assert [(c["optimizer"], c["regularizer"]) for c in first] == [("sgd", "none"),
                                                                   ("sgd", "batchnorm")]
    # Run its first two cells (the bootstrap needs two configurations).
    monkeypatch.setitem(studies.STUDIES["tessera_scsdc"]["presets"]["converged"], "grid",
                        [{"optimizer": ["sgd"], "activation": ["relu"],
                          "regularizer": ["none", "batchnorm"]}])
    report = studies.run("tessera_scsdc", "converged", out=tmp_path, log=lambda line: None)
    swept = json.loads((tmp_path / "lr_sweep.json").read_text())
    assert [r["learning_rate"] for r in swept["results"]] == [0.01, 0.1]
    best = max(swept["results"], key=lambda r: r["score"])
    assert swept["picked"] == {"sgd": best["learning_rate"]}
    assert swept["why"]["sgd"].startswith(f"{best['learning_rate']:g}: held-out accuracy")
    run = json.loads((tmp_path / "fashion_mnist_mlp-sgd-relu-none-w8/seed_0/summary.json")
                     .read_text())
    assert run["learning_rate"] == best["learning_rate"] and run["schedule"] == "cosine"
    assert len(run["dense"]["history"]["val_accuracy"]) == 2
    assert report["runs"] == 2 and report["convergence"]["dense"].endswith("/2")
    assert all(isinstance(r[arm]["converged"], bool) and r[arm]["window"] == 2
               for r in report["convergence"]["runs"] for arm in ("dense", "sparse"))
    assert len(report["kendall_differences"]) == 6  # 3 comparisons x final/mean
    assert all(r["groups"] == 2 for r in report["kendall_differences"])
    assert not math.isnan(report["kendall_differences"][0]["tau_x"])
