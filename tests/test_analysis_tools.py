"""ks.analysis: same_capacity, linear/Bezier paths, Evci solutions, the SC-SDC runner."""

import json
import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.analysis import scsdc, sweep

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _mlp_family(w):
    return ks.applications.mlp((w, w), input_shape=(6, 6, 1), num_classes=3)


def _cnn_family(w):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(w, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(2 * w, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def _prunable(model):
    return [math.prod(s) for s in ks.conversion.prunable_shapes(model).values()]


# -- same_capacity -------------------------------------------------------------------


@pytest.mark.parametrize("build", [_mlp_family, _cnn_family], ids=["mlp", "cnn"])
@pytest.mark.parametrize("match", ["layer", "total"])
def test_same_capacity_active_counts_are_exact(build, match):
    dense, sparse = ks.analysis.same_capacity(build, 5, 13, match=match, seed=3)
    assert not isinstance(dense, ks.SparseModel) and isinstance(sparse, ks.SparseModel)
    dense_sizes = _prunable(dense)
    rows = ks.sparsity_report(sparse)[:-1]
    active = [r["active"] for r in rows]
    assert sum(active) == sum(dense_sizes)
    if match == "layer":
        assert active == dense_sizes  # per layer, not only in total
    else:
        # One density everywhere: each layer within one weight of it.
        density = sum(dense_sizes) / sum(r["total"] for r in rows)
        assert all(abs(a - density * r["total"]) < 1 for a, r in zip(active, rows))
    for mw in sparse.masked_weights:  # inactive weights are exactly 0
        w, m = mw.weight.numpy(), mw.mask.numpy()
        assert np.all(w[m == 0] == 0) and np.all(np.isin(m, (0, 1)))


def test_same_capacity_mlp_densities_follow_the_per_layer_rule():
    dense, sparse = ks.analysis.same_capacity(_mlp_family, 10, 40)
    densities = [1 - r["sparsity"] for r in ks.sparsity_report(sparse)[:-1]]
    np.testing.assert_allclose(densities, [1 / 4, 1 / 16, 1 / 4])


def test_same_capacity_is_seeded_and_keeps_the_initializer_scheme():
    _, a = ks.analysis.same_capacity(_mlp_family, 5, 10, seed=1)
    _, b = ks.analysis.same_capacity(_mlp_family, 5, 10, seed=1)
    _, c = ks.analysis.same_capacity(_mlp_family, 5, 10, seed=2)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.get_masks().values(),
                                                        c.get_masks().values()))
    # Active weights are the family's own He-normal draws at the wide width.
    wide = a.masked_weights[0]
    values = wide.weight.numpy()[wide.mask.numpy() == 1]
    assert 0.5 < values.std() / math.sqrt(2 / 36) < 1.5


@pytest.mark.parametrize("kwargs,match", [
    (dict(dense_width=10, sparse_width=5), "sparse_width"),
    (dict(dense_width=5, sparse_width=10, match="global"), "match"),
    (dict(dense_width=0, sparse_width=10), "dense_width"),
])
def test_same_capacity_bad_arguments(kwargs, match):
    calls = []

    def build(w):
        calls.append(w)
        return _mlp_family(w)

    with pytest.raises(ValueError, match=match):
        ks.analysis.same_capacity(build, **kwargs)
    assert calls == []  # refused before building anything


def test_same_capacity_refuses_a_build_that_does_not_scale():
    fixed = lambda w: _mlp_family(8)  # noqa: E731
    with pytest.raises(ValueError, match="does not scale with `width`"):
        ks.analysis.same_capacity(fixed, 4, 8)
    deeper = lambda w: ks.applications.mlp((w,) * (w // 4), (6, 6, 1), 3)  # noqa: E731
    with pytest.raises(ValueError, match="does not scale with `width`"):
        ks.analysis.same_capacity(deeper, 4, 8)
    with pytest.raises(TypeError, match="keras.Model"):
        ks.analysis.same_capacity(lambda w: "model", 4, 8)


# -- paths -----------------------------------------------------------------------------


def _toy_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = ((x[:, 0] + x[:, 1] > 0).astype("int32") + 2 * (x[:, 2] > 0)).astype("int32")
    return x, y


def _bn_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((10,))
    x = keras.layers.Dense(16, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    model.compile("adam", LOSS, metrics=["accuracy"])
    return model


def _reference(model, weights, x, y):
    """Loss/accuracy with BatchNorm statistics of all of `x` (one batch, momentum 0)."""
    saved = model.get_weights()
    model.set_weights(weights)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bn:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in bn:
        layer.momentum = 0.9
    result = model.evaluate(x, y, batch_size=len(x), verbose=0)
    model.set_weights(saved)
    return result


def test_linear_path_ends_reproduce_each_ends_loss_with_batchnorm_recompute():
    x, y = _toy_data()
    model = _bn_model(0)
    model.fit(x, y, epochs=2, verbose=0)
    start = model.get_weights()
    other = _bn_model(1)
    other.fit(x, y, epochs=2, verbose=0)
    end = other.get_weights()
    before = model.get_weights()
    points = ks.analysis.linear_path(model, start, end, (x, y), bn_data=(x, y))
    assert [p["alpha"] for p in points] == pytest.approx(list(np.linspace(-0.2, 1.2, 29)))
    at = {round(p["alpha"], 6): p for p in points}
    for alpha, weights in ((0.0, start), (1.0, end)):
        loss, accuracy = _reference(model, weights, x, y)
        assert at[alpha]["loss"] == pytest.approx(loss, rel=1e-4)
        assert at[alpha]["accuracy"] == pytest.approx(accuracy)
    assert all(isinstance(p["loss"], float) and isinstance(p["accuracy"], float) for p in points)
    for a, b in zip(before, model.get_weights()):  # the model is left as it was
        np.testing.assert_array_equal(a, b)
    # The BatchNorm statistics are really recomputed: stale ones give other losses.
    stale = [w.copy() for w in start]
    for i, v in enumerate(model.weights):
        if "moving" in v.path:
            stale[i] = np.zeros_like(stale[i]) if "mean" in v.path else np.ones_like(stale[i])
    again = ks.analysis.linear_path(model, stale, stale, (x, y), alphas=[0.0], bn_data=(x, y))
    assert again[0]["loss"] == pytest.approx(at[0.0]["loss"], rel=1e-4)


def test_barrier():
    points = [{"alpha": a, "loss": v} for a, v in
              [(-0.2, 9.0), (0.0, 1.0), (0.5, 2.5), (1.0, 0.5), (1.2, 7.0)]]
    assert ks.analysis.barrier(points) == pytest.approx(1.5)  # outside [0, 1] ignored
    assert ks.analysis.barrier([{"t": 0.0, "loss": 2.0}, {"t": 0.5, "loss": 1.0},
                                {"t": 1.0, "loss": 1.5}]) == 0.0
    assert ks.analysis.barrier([{"loss": 1.0}, {"loss": 3.0}, {"loss": 2.0}]) == 1.0
    with pytest.raises(ValueError, match="alpha=0 and alpha=1"):
        ks.analysis.barrier([{"alpha": 0.5, "loss": 1.0}, {"alpha": 1.0, "loss": 1.0}])
    with pytest.raises(ValueError, match="non-empty"):
        ks.analysis.barrier([])


@pytest.fixture(scope="module")
def solutions():
    """Tiny Evci solutions: a 10-32-4 MLP at 75% sparsity."""
    x, y = _toy_data(512)
    build = lambda: keras.Sequential([keras.Input((10,)),  # noqa: E731
                                      keras.layers.Dense(32, activation="relu"),
                                      keras.layers.Dense(4)])
    sol = ks.analysis.evci_solutions(
        build, (x, y), 0.75, epochs=3, batch_size=32, test_data=(x[:128], y[:128]),
        optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    return sol, (x, y)


def test_evci_solutions_share_the_mask_and_sparsity(solutions):
    sol, _ = solutions
    model, weights, mask = sol["model"], sol["weights"], sol["mask"]
    assert set(weights) == set(sol["metrics"]) == {"I", "P", "S", "L", "S2"}
    assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    paths_ = [v.path for v in model.weights]
    for name, values in weights.items():
        for path, m in mask.items():
            w = values[paths_.index(path)]
            assert np.all(w[m == 0] == 0), name  # every solution lives in M
    # S and S2 start from different initializations; P was trained and beats I.
    assert not np.array_equal(weights["S"][0], weights["S2"][0])
    assert sol["metrics"]["P"]["test_accuracy"] > sol["metrics"]["I"]["test_accuracy"]


def test_bezier_ends_fixed_and_sparse_bends_exactly_zero_outside_mask(solutions):
    sol, (x, y) = solutions
    model, w, mask = sol["model"], sol["weights"], sol["mask"]
    curve = ks.analysis.bezier_path(model, w["S"], w["P"], (x, y), order=3, subspace="sparse",
                                    mask=mask, epochs=2, num_points=5)
    control = curve["control_points"]
    assert len(control) == 4
    for a, b in zip(control[0], w["S"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(control[-1], w["P"]):
        np.testing.assert_array_equal(a, b)
    index = {v.path: i for i, v in enumerate(model.weights)}
    moved = False
    for bend in control[1:-1]:
        for path, m in mask.items():
            assert np.all(bend[index[path]][m == 0] == 0.0)
            line = [(w["S"][index[path]] + w["P"][index[path]]) / 2]
            moved |= not np.allclose(bend[index[path]], line[0])
    assert moved  # the bends were trained
    linear = ks.analysis.linear_path(model, w["S"], w["P"], (x, y), alphas=[0.0, 1.0])
    assert curve["points"][0]["loss"] == pytest.approx(linear[0]["loss"], rel=1e-5)
    assert curve["points"][-1]["loss"] == pytest.approx(linear[1]["loss"], rel=1e-5)
    assert isinstance(curve["barrier"], float)


def test_dense_bezier_barrier_is_lower_than_the_linear_one(solutions):
    sol, (x, y) = solutions
    model, w = sol["model"], sol["weights"]
    linear = ks.analysis.barrier(ks.analysis.linear_path(model, w["S"], w["S2"], (x, y)))
    curve = ks.analysis.bezier_path(model, w["S"], w["S2"], (x, y), order=2, subspace="dense",
                                    epochs=15, optimizer=keras.optimizers.Adam(3e-3), seed=1)
    assert linear > 0.05
    assert curve["barrier"] < 0.75 * linear


@pytest.mark.parametrize("change,match", [
    ("end_shape", "has shape"),
    ("end_length", "arrays; the model has"),
    ("mask_shape", "`mask` for"),
    ("mask_path", "unknown weights"),
    ("no_mask", "needs `mask`"),
    ("order", "`order` must be one of"),
    ("subspace", "`subspace` must be one of"),
    ("dense_mask", "only used with subspace='sparse'"),
])
def test_path_bad_input_raises_and_changes_nothing(solutions, change, match):
    sol, (x, y) = solutions
    model, w, mask = sol["model"], sol["weights"], dict(sol["mask"])
    start, end = list(w["S"]), list(w["P"])
    kwargs = dict(order=2, subspace="sparse", mask=mask)
    if change == "end_shape":
        end[0] = end[0][:-1]
    elif change == "end_length":
        end = end[:-1]
    elif change == "mask_shape":
        key = next(iter(mask))
        mask[key] = mask[key][:-1]
    elif change == "mask_path":
        mask["nope/kernel"] = np.ones(3)
    elif change == "no_mask":
        kwargs["mask"] = None
    elif change == "order":
        kwargs["order"] = 4
    elif change == "subspace":
        kwargs["subspace"] = "diagonal"
    elif change == "dense_mask":
        kwargs["subspace"] = "dense"
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(ValueError, match=match):
        ks.analysis.bezier_path(model, start, end, (x, y), epochs=1, **kwargs)
    if change.startswith("end"):
        with pytest.raises(ValueError, match=match):
            ks.analysis.linear_path(model, start, end, (x, y))
    for a, v in zip(before, model.weights):
        np.testing.assert_array_equal(a, v.numpy())


# -- SC-SDC ------------------------------------------------------------------------------


def _fake_run(dataset, opt, act, reg, seed, dense_acc, sparse_acc, egf):
    arm = lambda acc, e: {"history": {"val_accuracy": [acc / 2, acc], "egf_l1": [e, e],  # noqa: E731
                                      "egf_l2": [e, 2 * e], "grad_norm_l1": [1.0, 1.0 + acc],
                                      "grad_norm_l2": [1.0, seed + acc]},
                          "final": {"val_accuracy": acc}}
    return {"task": dataset, "dataset": dataset, "optimizer": opt, "activation": act,
            "regularizer": reg, "dense_width": 4, "sparse_width": 8, "seed": seed,
            "dense": arm(dense_acc, egf), "sparse": arm(sparse_acc, egf / 2),
            "gap": sparse_acc - dense_acc}


def test_scsdc_report_matches_scipy_on_a_hand_made_table(tmp_path):
    table = {("adam", "none"): ([0.80, 0.82, 0.81], [0.70, 0.75, 0.71]),
             ("sgd", "none"): ([0.78, 0.79, 0.80], [0.79, 0.78, 0.82]),
             ("sgd", "batchnorm"): ([0.83, 0.84, 0.82], [0.81, 0.83, 0.83])}
    egf = {0: 0.3, 1: 0.1, 2: 0.7}
    for (opt, reg), (dense, sparse) in table.items():
        for seed in range(3):
            run = _fake_run("toy", opt, "relu", reg, seed, dense[seed], sparse[seed],
                            egf[seed] * dense[seed])
            sweep.write_json(sweep.run_dir(tmp_path, f"toy-{opt}-relu-{reg}-w8", seed)
                             / "summary.json", run)
    result = scsdc.report(str(tmp_path))
    runs = [r for _, _, r in sweep.load_results(tmp_path)]
    accs = [r[a]["final"]["val_accuracy"] for r in runs for a in ("dense", "sparse")]
    for measure in scsdc.MEASURES:
        row = next(k for k in result["kendall"] if k["measure"] == measure and k["at"] == "final")
        expected = scipy.stats.kendalltau(
            [r[a]["history"][measure][-1] for r in runs for a in ("dense", "sparse")], accs)
        assert row["tau"] == pytest.approx(expected.statistic)
        assert row["p_value"] == pytest.approx(expected.pvalue)
        assert row["n"] == 18
    ps = []
    for (opt, reg), (dense, sparse) in table.items():
        row = next(g for g in result["gaps"] if g["optimizer"] == opt and g["regularizer"] == reg)
        expected = scipy.stats.ttest_rel(sparse, dense)  # 3 seeds: the paired t-test
        assert row["test"] == "ttest" and row["p_value"] == pytest.approx(expected.pvalue)
        assert row["gap_mean"] == pytest.approx(np.mean(np.subtract(sparse, dense)))
        ps.append((row["p_value"], row["p_holm"]))
    raw = sorted(p for p, _ in ps)
    holm = np.maximum.accumulate([min(1, (3 - i) * p) for i, p in enumerate(raw)])
    assert sorted(h for _, h in ps) == pytest.approx(list(holm))
    [effect] = result["regularizer_effects"]
    assert (effect["regularizer"], effect["optimizer"]) == ("batchnorm", "sgd")
    sparse_delta = np.subtract(table["sgd", "batchnorm"][1], table["sgd", "none"][1])
    dense_delta = np.subtract(table["sgd", "batchnorm"][0], table["sgd", "none"][0])
    assert effect["sparse_delta"] == pytest.approx(np.mean(sparse_delta))
    assert effect["p_value"] == pytest.approx(scipy.stats.ttest_rel(sparse_delta,
                                                                    dense_delta).pvalue)
    assert json.loads((tmp_path / "report.json").read_text())["runs"] == 9
    assert (tmp_path / "kendall.csv").exists() and (tmp_path / "gaps.csv").exists()


def _toy_task(calls):
    x, y = _toy_data(128)
    x = x.reshape(128, 10, 1, 1)

    def data(augment, seed):
        calls.append((augment, seed))
        train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(128, seed=seed).batch(32)
        if augment:
            train = train.map(lambda a, b: (a + 0.05, b))
        return train, tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(64)

    build = lambda w, act, bn: ks.applications.mlp((w,), (10, 1, 1), 4, activation=act,  # noqa: E731
                                             batchnorm=bn)
    return {"build": build, "data": data, "dense_width": 4, "sparse_widths": [8]}


def test_sc_sdc_runs_logs_and_resumes_after_a_kill(tmp_path):
    calls = []
    task = _toy_task(calls)
    grid = [{"optimizer": ["sgd"], "activation": ["tanh"], "regularizer": ["none", "l2"]}]
    data = task["data"]

    def dying(augment, seed):
        if len(calls) >= 4:  # the third run dies while loading its data
            raise KeyboardInterrupt
        return data(augment, seed)

    with pytest.raises(KeyboardInterrupt):
        ks.analysis.sc_sdc({"toy": dict(task, data=dying)}, tmp_path, seeds=[0, 1], epochs=1,
                           grid=grid, egf_examples=32, log=lambda line: None)
    done = sorted(p.parent.name for p in tmp_path.glob("*/seed_*/summary.json"))
    assert done == ["seed_0", "seed_1"]
    first = (tmp_path / "toy-sgd-tanh-none-w8/seed_0/summary.json").read_text()
    lines = []
    calls.clear()
    result = ks.analysis.sc_sdc({"toy": task}, tmp_path, seeds=[0, 1], epochs=1, grid=grid,
                                egf_examples=32, log=lines.append)
    assert len(calls) == 4  # only the 2 unfinished runs (2 data calls each)
    assert lines[0].startswith("2 of 4 runs already done")
    assert "ETA" in lines[-1] and lines[-1].startswith("[4/4]")
    assert (tmp_path / "toy-sgd-tanh-none-w8/seed_0/summary.json").read_text() == first
    run = json.loads((tmp_path / "toy-sgd-tanh-l2-w8/seed_1/summary.json").read_text())
    for arm in ("dense", "sparse"):
        for key in ("val_accuracy", "egf_l1", "egf_l2", "grad_norm_l1", "grad_norm_l2"):
            assert len(run[arm]["history"][key]) == 1
    assert run["active_weights"] == 10 * 4 + 4 * 4
    assert result["runs"] == 4 and len(result["gaps"]) == 2
    assert (tmp_path / "kendall.png").stat().st_size > 0
    assert (tmp_path / "gap_heatmap.png").stat().st_size > 0


def test_sc_sdc_bad_grid_and_tasks(tmp_path):
    task = _toy_task([])
    with pytest.raises(ValueError, match="optimizer choices"):
        ks.analysis.sc_sdc({"toy": task}, tmp_path, grid=[{"optimizer": ["lbfgs"]}])
    with pytest.raises(ValueError, match="sparse_widths"):
        ks.analysis.sc_sdc({"toy": dict(task, sparse_widths=[2])}, tmp_path)
    with pytest.raises(ValueError, match="lacks"):
        ks.analysis.sc_sdc({"toy": {"build": task["build"]}}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert len(scsdc.expand_grid()) == 4 * 5 * 4
    assert len(scsdc.expand_grid([{"optimizer": ["adam"]}, {"optimizer": ["adam"],
                                                            "activation": ["relu"]}])) == 20


def test_kendall_and_its_bootstrap_leave_out_diverged_networks():
    # A network whose loss went to NaN has no gradient flow: its pair is left out.
    from keras_sparse.analysis import stats

    x = [0.1, 0.4, 0.2, float("nan"), 0.9, 0.7]
    y = [0.5, 0.8, 0.6, 0.1, 0.95, 0.9]
    out = stats.kendall(x, y)
    want = stats.kendall([0.1, 0.4, 0.2, 0.9, 0.7], [0.5, 0.8, 0.6, 0.95, 0.9])
    assert out["n"] == 5 and out["omitted"] == 1 and out["tau"] == want["tau"] == pytest.approx(1.0)
    z = [0.3, 0.1, 0.2, 0.5, float("inf"), 0.4]
    boot = stats.kendall_bootstrap(x, z, y, ["a", "a", "b", "b", "c", "c"], num_resamples=50)
    assert boot["n"] == 4 and boot["omitted"] == 2
    assert boot["tau_x"] == pytest.approx(1.0) and not math.isnan(boot["p_value"])
