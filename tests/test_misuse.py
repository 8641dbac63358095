"""Silent misuse that is refused: clear errors, raised before anything changes."""

import keras
import numpy as np
import pytest

import keras_sparse as ks

to_np = keras.ops.convert_to_numpy


def _dense():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, name="fc1"),
                             keras.layers.Dense(3, name="fc2")], name="net")


def _sparse(sparsity=0.5):
    model = ks.sparsify(_dense(), sparsity, seed=0)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def _state(model):
    """Every variable's value (masks included) and the step counter."""
    values = {v.path: to_np(v).copy() for v in model.weights}
    return values, int(to_np(model.optimizer.iterations)) if model.optimizer else 0


def _assert_unchanged(model, state):
    values, step = state
    now = {v.path: to_np(v) for v in model.weights}
    assert set(now) >= set(values)
    for path, value in values.items():
        np.testing.assert_array_equal(value, now[path], err_msg=path)
    if model.optimizer:
        assert int(to_np(model.optimizer.iterations)) == step


@pytest.mark.parametrize("method", ["random", "magnitude"])
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(dense_layers=["fc9"]), ValueError, r"`dense_layers` names 'fc9', which matches "
                                             r"no prunable weight.*net/fc1/kernel"),
    (dict(custom={"fc9": 0.5}), ValueError, r"`custom` names 'fc9'"),
    (dict(dense_layers=["fc9"], scope="global"), ValueError, r"`dense_layers` names 'fc9'"),
    (dict(dense_layers="fc1"), TypeError, r"`dense_layers` must be a list of layer names"),
    (dict(distribution="erk5"), ValueError, r"`distribution` must be one of"),
])
def test_pruning_methods_refuse_unknown_names(method, kwargs, error, message):
    model = _sparse()
    state = _state(model)
    with pytest.raises(error, match=message):
        getattr(ks.pruning, method)(model, 0.7, **kwargs)
    _assert_unchanged(model, state)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_sparsify_refuses_a_string_sparsity(scope):
    dense = _dense()
    with pytest.raises(TypeError, match=r"`sparsity` must be a number in \[0, 1\); "
                                        r"got '0.9' of type str"):
        ks.sparsify(dense, "0.9", scope=scope)
    model = _sparse()
    state = _state(model)
    with pytest.raises(TypeError, match=r"`sparsity` must be a number"):
        ks.pruning.magnitude(model, "0.9", scope=scope)
    _assert_unchanged(model, state)


@pytest.mark.parametrize("make", [
    lambda: ks.callbacks.GradualMagnitudePruning(
        ks.schedules.PolynomialDecay(0.0, 0.8, 0, 4, frequency=1), dense_layers=["fc9"]),
    lambda: ks.callbacks.DissipatingGradients(0.8, epochs=1, dense_layers=["fc9"]),
    lambda: ks.callbacks.KStarts(0.8, dense_layers=["fc9"]),
], ids=["gradual", "dissipating", "kstarts"])
def test_mask_callbacks_refuse_unknown_dense_layers_at_fit_start(make):
    model = _sparse(0.0)
    x, y = _data()
    state = _state(model)
    with pytest.raises(ValueError, match=r"\w+: `dense_layers` names 'fc9', which matches "
                                         r"no prunable weight"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[make()])
    _assert_unchanged(model, state)
    assert not model.optimizer.built  # not even the slots were made


def test_mask_callbacks_refuse_a_single_string_as_dense_layers():
    with pytest.raises(TypeError, match=r"got the string 'fc1' \(write \['fc1'\]\)"):
        ks.callbacks.GradualMagnitudePruning(ks.schedules.ConstantSparsity(0.5, 0),
                                             dense_layers="fc1")


def test_two_dst_callbacks_are_refused_before_anything_changes():
    model = _sparse()
    x, y = _data()
    state = _state(model)
    for callbacks in ([ks.callbacks.RigL(delta_t=2), ks.callbacks.SET(delta_t=2)],
                      [ks.callbacks.SET(delta_t=2), [ks.callbacks.RigL(delta_t=2)]]):
        with pytest.raises(ValueError, match=r"fit: `callbacks` holds two dynamic sparse "
                                             r"training callbacks, (SET and RigL|RigL and "
                                             r"SET).*Pass one"):
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
        _assert_unchanged(model, state)
    with pytest.raises(ValueError, match="two dynamic sparse training callbacks"):
        model.fit(x, y, 8, 1, 0, [ks.callbacks.RigL(delta_t=2), ks.callbacks.SNFS(delta_t=2)])
    _assert_unchanged(model, state)
    # One DST callback with other mask callbacks is fine; so is one per fit.
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                        callbacks=[ks.callbacks.RigL(delta_t=1, end_step=10)])
    assert history.history["dst/updates"] == [2]


def test_gradual_schedule_below_current_sparsity_is_refused():
    model = _sparse(0.9)
    x, y = _data()
    state = _state(model)
    schedule = ks.schedules.PolynomialDecay(0.0, 0.5, 0, 4, frequency=1)
    with pytest.raises(ValueError) as info:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    message = str(info.value)
    assert "the schedule's final sparsity 0.5 is below the model's current sparsity" in message
    assert "would bring" in message and "ks.sparsify(model, 0.0)" in message
    _assert_unchanged(model, state)
    assert ks.sparsity_report(model)[-1]["sparsity"] > 0.85
    with pytest.raises(ValueError, match="final sparsity 0.3"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[ks.callbacks.GradualMagnitudePruning(
                      ks.schedules.ConstantSparsity(0.3, 0))])


def test_gradual_schedule_at_or_above_current_sparsity_runs():
    model = _sparse(0.5)
    x, y = _data()
    report = ks.sparsity_report(model)[-1]
    current = 1 - report["active"] / report["total"]
    schedule = ks.schedules.PolynomialDecay(current, 0.75, 0, 2, frequency=1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(0.75, abs=0.02)


def test_sparsity_report_of_a_plain_model_counts_its_weights_as_dense():
    rows = ks.sparsity_report(_dense())
    assert [(r["layer"], r["total"], r["active"]) for r in rows] == [
        ("fc1", 72, 72), ("fc2", 36, 36), ("total", 108, 108)]
    assert rows[-1]["sparsity"] == 0.0


def test_sparsity_report_of_a_stripped_model_counts_its_zeros():
    model = ks.sparsify(_dense(), 0.75, distribution="uniform")
    want = [(r["layer"], r["total"], r["active"]) for r in ks.sparsity_report(model)]
    stripped = ks.strip(model)
    assert not any(isinstance(l, ks.layers.SparseLayer) for l in stripped.layers)
    assert [(r["layer"], r["total"], r["active"]) for r in ks.sparsity_report(stripped)] == want
