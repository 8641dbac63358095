"""The analysis studies (tessera_scsdc, evci_paths) as data, run at a tiny scale."""

import json

import pytest

from recipes import analysis_models, listing
from recipes import analysis_studies as studies


def test_presets_resolve_and_list(capsys):
    for name in studies.names():
        for preset in ("cpu", "paper"):
            config, seeds = studies.resolve(name, preset)
            assert len(seeds) >= 3
    cpu, _ = studies.resolve("evci_paths", "cpu")
    assert [p["sparsity"] for p in cpu["parts"]] == [0.98, 0.9]
    assert cpu["parts"][1]["batchnorm"] and cpu["parts"][1]["dataset"] == "cifar10"
    paper, _ = studies.resolve("tessera_scsdc", "paper")
    assert paper["grid"] is None  # the full grid
    assert [t["dataset"] for t in paper["tasks"]] == ["fashion_mnist", "cifar10", "cifar100"]
    assert any(line.startswith("#   tessera_scsdc ") for line in listing.study_lines())
    with pytest.raises(ValueError, match="seeds"):
        studies.resolve("evci_paths", "cpu", seeds=0)


def test_cnn_family_scales_with_width():
    import keras_sparse as ks

    dense, sparse = ks.analysis.same_capacity(
        lambda w: analysis_models.cnn(w, (8, 8, 3), 10, batchnorm=True), 4, 8)
    active = [r["active"] for r in ks.sparsity_report(sparse)[:-1]]
    assert active == [27 * 4, 36 * 4, 36 * 8, 72 * 8, 8 * 10]


def test_tiny_evci_paths_run(tmp_path, monkeypatch):
    study = dict(studies.STUDIES["evci_paths"])
    part = {"name": "tiny", "dataset": "fashion_mnist", "family": "mlp", "widths": [16],
            "batchnorm": False, "sparsity": 0.9, "distribution": "erk", "epochs": 1,
            "subset": 256, "eval_subset": 128, "path_subset": 128, "bn_subset": 64,
            "batch_size": 64, "optimizer": {"name": "momentum", "learning_rate": 0.05},
            "curve_epochs": 1, "curve_learning_rate": 0.001, "alphas": 8, "curve_points": 3}
    study["presets"] = {"cpu": {"seeds": 2, "parts": [part]}}
    study["curves"] = [{"subspace": "sparse", "order": 3, "pairs": [["S", "P"]]},
                       {"subspace": "dense", "order": 2, "pairs": [["S", "S2"]]}]
    monkeypatch.setitem(studies.STUDIES, "evci_paths", study)
    report = studies.run("evci_paths", "cpu", out=tmp_path, log=lambda line: None)
    entry = report["tiny"]
    assert entry["seeds"] == [0, 1]
    assert set(entry["barriers"]) == {"I->P", "S->P", "L->P", "S->S2"}
    assert set(entry["barriers"]["S->P"]) == {"linear", "bezier_sparse_3"}
    assert set(entry["barriers"]["S->S2"]) == {"linear", "bezier_dense_2"}
    assert set(entry["barriers"]["I->P"]) == {"linear"}
    assert {"S vs P accuracy", "L vs P accuracy",
            "S->S2 dense Bezier vs linear barrier"} <= set(entry["tests"])
    run = json.loads((tmp_path / "tiny/seed_0/summary.json").read_text())
    assert [p["alpha"] for p in run["paths"]["I->P"]["linear"]["points"]] == pytest.approx(
        [-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    assert (tmp_path / "paths_tiny.png").stat().st_size > 0
    assert (tmp_path / "report.json").exists()


def test_tiny_tessera_scsdc_run(tmp_path, monkeypatch):
    study = dict(studies.STUDIES["tessera_scsdc"])
    task = {"name": "tiny", "dataset": "fashion_mnist", "family": "mlp", "depth": 1,
            "dense_width": 4, "sparse_widths": [8], "batch_size": 64, "subset": 128,
            "eval_subset": 64}
    study["presets"] = {"cpu": {"seeds": 2, "epochs": 1, "egf_examples": 64, "tasks": [task],
                                "grid": [{"optimizer": ["adam"], "activation": ["relu"],
                                          "regularizer": ["augmentation"]}]}}
    monkeypatch.setitem(studies.STUDIES, "tessera_scsdc", study)
    lines = []
    report = studies.run("tessera_scsdc", "cpu", out=tmp_path, log=lines.append)
    assert report["runs"] == 2 and lines[-1].startswith("[2/2]")
    assert report["gaps"][0]["config"] == "tiny-adam-relu-augmentation-w8"
    assert {k["measure"] for k in report["kendall"]} == {"egf_l1", "egf_l2", "grad_norm_l1",
                                                         "grad_norm_l2"}
    assert (tmp_path / "gap_heatmap.png").exists()
    again = studies.report("tessera_scsdc", "cpu", out=tmp_path)
    assert again["gaps"] == report["gaps"]
