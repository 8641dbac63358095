"""Layer sparsity distributions against a NumPy re-derivation of RigL's rules."""

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.masks import num_inactive


def _mixed_model():
    """Dense and Conv layers of very different fan-in/fan-out."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, name="fc1")(x)
    outputs = keras.layers.Dense(10, name="fc2")(x)
    return keras.Model(inputs, outputs)


SHAPES = {
    "conv1/kernel": (3, 3, 3, 8),
    "dw/kernel": (3, 3, 8, 1),
    "conv2/kernel": (3, 3, 8, 16),
    "fc1/kernel": (64, 512),
    "fc2/kernel": (512, 10),
}


def reference(sparsity, method, dense=(), custom=None, power=1.0):
    """RigL `sparse_utils.get_sparsities`, one dense layer at a time.

    Differences kept on purpose (this package's interpretation):
    `custom` layers count towards the global budget.
    """
    custom = dict(custom or {})
    sizes = {p: float(np.prod(s)) for p, s in SHAPES.items()}
    total = sum(sizes.values())
    dense = set(dense)
    if method == "uniform":
        return {p: 0.0 if p in dense else custom.get(p, sparsity) for p in SHAPES}
    while True:
        rhs = (1 - sparsity) * total
        divisor, raw = 0.0, {}
        for p, shape in SHAPES.items():
            if p in dense:
                rhs -= sizes[p]
            elif p in custom:
                rhs -= sizes[p] * (1 - custom[p])
            else:
                if method == "erk":
                    raw[p] = (np.sum(shape) / np.prod(shape)) ** power
                else:
                    n_in, n_out = shape[-2:]
                    raw[p] = (n_in + n_out) / (n_in * n_out)
                divisor += raw[p] * sizes[p]
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            break
        dense |= {p for p, r in raw.items() if r == top}
    return {p: 0.0 if p in dense else custom[p] if p in custom else 1 - eps * raw[p]
            for p in SHAPES}


CASES = [
    dict(sparsity=0.8, method="erk"),
    dict(sparsity=0.8, method="er"),
    dict(sparsity=0.8, method="uniform"),
    dict(sparsity=0.5, method="erk"),   # re-solve: small layers turn dense
    dict(sparsity=0.9, method="erk", power=0.5),
    dict(sparsity=0.85, method="er", dense=("fc2/kernel",)),
    dict(sparsity=0.85, method="erk", custom={"conv2/kernel": 0.5}),
    dict(sparsity=0.7, method="uniform", dense=("fc2/kernel",), custom={"fc1/kernel": 0.9}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_sparsities_match_the_numpy_rules(case):
    model = _mixed_model()
    names = {"fc2/kernel": "fc2", "conv2/kernel": "conv2", "fc1/kernel": "fc1"}
    got = ks.distributions.layer_sparsities(
        model, case["sparsity"], case["method"],
        dense_layers=[names[p] for p in case.get("dense", ())],
        custom={names[p]: v for p, v in case.get("custom", {}).items()},
        erk_power_scale=case.get("power", 1.0))
    want = reference(case["sparsity"], case["method"], case.get("dense", ()),
                     case.get("custom"), case.get("power", 1.0))
    assert list(got) == list(SHAPES)
    for path in SHAPES:
        assert got[path] == pytest.approx(want[path], abs=1e-12), path
    if case["method"] != "uniform":
        active = sum((1 - s) * np.prod(SHAPES[p]) for p, s in got.items())
        total = sum(np.prod(s) for s in SHAPES.values())
        assert active == pytest.approx((1 - case["sparsity"]) * total)


def test_resolve_case_really_makes_layers_dense():
    got = ks.distributions.layer_sparsities(_mixed_model(), 0.5, "erk")
    assert got["dw/kernel"] == 0.0 and got["conv1/kernel"] == 0.0
    assert all(0 < got[p] < 1 for p in ("conv2/kernel", "fc1/kernel"))


def test_no_layer_pinned_by_default_at_any_sparsity():
    model = _mixed_model()
    for sparsity in (0.98, 0.99, 0.995):
        got = ks.distributions.layer_sparsities(model, sparsity, "uniform")
        assert set(got.values()) == {sparsity}
        got = ks.distributions.layer_sparsities(model, sparsity, "erk")
        assert got == pytest.approx(reference(sparsity, "erk"))
    # A paper's "first layer dense" is asked for by name.
    got = ks.distributions.layer_sparsities(model, 0.99, "erk", dense_layers=["conv1"])
    assert got == pytest.approx(reference(0.99, "erk", dense=("conv1/kernel",)))


def _lenet_300_100():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, name="fc1"),
                             keras.layers.Dense(100, name="fc2"),
                             keras.layers.Dense(10, name="fc3")], name="lenet")


def test_lenet_300_100_at_99_percent_with_the_defaults():
    # fc1 holds 88% of the weights: pinning it dense (the old default at
    # s >= 0.99) made this raise.
    model = ks.sparsify(_lenet_300_100(), 0.99)
    row = ks.sparsity_report(model)[-1]
    assert row["total"] == 266200
    assert abs((row["total"] - row["active"]) - num_inactive(266200, 0.99)) <= 3
    rows = {r["layer"]: r["sparsity"] for r in ks.sparsity_report(model)[:-1]}
    assert rows["fc1"] > 0.99 and all(s > 0 for s in rows.values())  # none pinned


def test_unreachable_budget_names_the_pinned_layers_and_why():
    with pytest.raises(ValueError) as info:
        ks.sparsify(_lenet_300_100(), 0.99, dense_layers=["fc1"])
    message = str(info.value)
    assert "`sparsity`=0.99 cannot be reached with distribution='erk'" in message
    assert "allows 2662 active weights of 266200" in message
    assert "lenet/fc1/kernel: 235200 active of 235200 (kept dense by `dense_layers`)" in message
    assert "Pin fewer layers" in message
    with pytest.raises(ValueError, match=r"fc2/kernel: 15000 active of 30000 "
                                         r"\(`custom` sparsity 0.5\)"):
        ks.distributions.layer_sparsities(_lenet_300_100(), 0.99, "er",
                                          custom={"fc2": 0.5})


def test_unreachable_budget_with_every_layer_pinned_is_refused():
    with pytest.raises(ValueError, match="cannot be reached"):
        ks.distributions.layer_sparsities(_lenet_300_100(), 0.5, "erk",
                                          dense_layers=["fc1", "fc2", "fc3"])


@pytest.mark.parametrize("name", ["ERK", "Er", "UNIFORM"])
def test_distribution_names_are_case_insensitive(name):
    model = _mixed_model()
    want = ks.distributions.layer_sparsities(model, 0.8, name.lower())
    assert ks.distributions.layer_sparsities(model, 0.8, name) == want
    sparse = ks.sparsify(model, 0.8, distribution=name, seed=0)
    same = ks.sparsify(model, 0.8, distribution=name.lower(), seed=0)
    for a, b in zip(sparse.get_masks().values(), same.get_masks().values()):
        np.testing.assert_array_equal(a, b)
    ks.pruning.magnitude(sparse, 0.9, distribution=name)  # pruning methods too
    gradual = ks.callbacks.GradualMagnitudePruning(
        ks.schedules.ConstantSparsity(0.5, 0), distribution=name)
    assert gradual.get_config()["distribution"] == name.lower()
    assert ks.callbacks.KStarts(0.5, distribution=name).distribution == name.lower()
    assert ks.callbacks.DissipatingGradients(0.5, distribution=name).distribution == name.lower()


def test_names_matching_no_layer_are_refused_by_solve():
    model = _mixed_model()
    with pytest.raises(ValueError, match=r"`dense_layers` names 'fc9', which matches "
                                         r"no prunable weight.*conv1/kernel"):
        ks.distributions.layer_sparsities(model, 0.8, dense_layers=["fc9"])
    with pytest.raises(ValueError, match=r"`custom` names 'fc9'"):
        ks.distributions.layer_sparsities(model, 0.8, custom={"fc9": 0.5})
    with pytest.raises(TypeError, match=r"`dense_layers` must be a list of layer "
                                        r"names; got the string 'fc1'"):
        ks.distributions.layer_sparsities(model, 0.8, dense_layers="fc1")
    with pytest.raises(TypeError, match=r"`custom` must be a dict"):
        ks.distributions.layer_sparsities(model, 0.8, custom=[("fc1", 0.5)])


@pytest.mark.parametrize("method", ["erk", "er", "uniform"])
def test_sparsified_model_hits_the_global_count(method):
    model = ks.sparsify(_mixed_model(), 0.8, distribution=method, seed=2)
    targets = ks.distributions.layer_sparsities(model, 0.8, method)
    total = active = 0
    for mw in model.masked_weights:
        mask = keras.ops.convert_to_numpy(mw.mask)
        assert (mask == 0).sum() == num_inactive(mw.size, targets[mw.path])
        total, active = total + mw.size, active + int(mask.sum())
    want = total - num_inactive(total, 0.8)
    assert abs(active - want) <= len(model.masked_weights)


def test_num_inactive_rounds_half_up():
    # Documented difference: rigl and Synaptic-Flow take the floor (2 here).
    assert num_inactive(10, 0.25) == 3  # 2.5 -> 3, not banker's 2
    assert num_inactive(6, 0.25) == 2   # 1.5 -> 2
    assert num_inactive(7, 0.0) == 0
    assert num_inactive(100, 0.999) == 100


def test_custom_leaving_no_budget_is_refused():
    with pytest.raises(ValueError, match="cannot be reached"):
        ks.distributions.layer_sparsities(_mixed_model(), 0.9, "erk",
                                          custom={"fc1": 0.0})


# -- budgets: the one sparsity -> counts implementation --------------------------


def test_budgets_per_layer_are_the_exact_counts_of_the_distribution():
    model = ks.sparsify(_mixed_model(), 0.0, seed=0)
    targets = ks.distributions.layer_sparsities(model, 0.8, "erk", dense_layers=["fc2"])
    weights = model.masked_weights
    counts = ks.distributions.budgets(model, 0.8, "erk", dense_layers=["fc2"])
    assert list(counts) == weights  # keyed by parameter, in model order
    assert ks.distributions.budgets(weights, 0.8, "erk", dense_layers=["fc2"]) == counts
    for mw, active in counts.items():
        assert active == mw.size - num_inactive(mw.size, targets[mw.path])
    assert counts[weights[-1]] == weights[-1].size  # kept dense


def test_budgets_global_rank_all_layers_together():
    model = ks.sparsify(_mixed_model(), 0.0, seed=0)
    weights = model.masked_weights
    rng = np.random.default_rng(0)
    scores = {mw.path: rng.random(mw.weight.shape).astype("float32") for mw in weights}
    counts = ks.distributions.budgets(model, 0.7, scope="global", scores=scores,
                                      dense_layers=["conv1"])
    assert counts[weights[0]] == weights[0].size  # pinned: its own count
    total = sum(mw.size for mw in weights)
    assert sum(counts.values()) == total - num_inactive(total, 0.7)
    # The ranked layers hold exactly the top scores over all of them.
    flat = np.concatenate([scores[mw.path].ravel() for mw in weights[1:]])
    threshold = np.sort(flat)[::-1][sum(counts[mw] for mw in weights[1:]) - 1]
    for mw in weights[1:]:
        assert counts[mw] == int((scores[mw.path] >= threshold).sum())
    # A fixed parameter keeps its count and the others share the rest.
    fixed = ks.distributions.budgets(weights, 0.7, scope="global", scores=scores,
                                     fixed={weights[1].path: 5})
    assert fixed[weights[1]] == 5
    assert sum(fixed.values()) == total - num_inactive(total, 0.7)
    with pytest.raises(ValueError, match="scope.*global.*scores"):
        ks.distributions.budgets(model, 0.7, scope="global")
    with pytest.raises(ValueError, match="scope"):
        ks.distributions.budgets(model, 0.7, scope="model")
