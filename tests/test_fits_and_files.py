"""Repeated fits, the exact DST schedule, sparse-by-construction layers,
subclassed models, and what weight files and exports carry (issue 11,
items 2-5 and the schedule parts of 8)."""

import math
import os
import warnings
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.callbacks.dynamic import drop_count

to_np = keras.ops.convert_to_numpy
X = np.random.RandomState(0).rand(64, 8).astype("float32")
Y = np.random.RandomState(1).randint(0, 3, 64)
FIT = dict(batch_size=8, shuffle=False, verbose=0)  # 8 steps per epoch


def sparse_model(seed=0):
    keras.utils.set_random_seed(seed)
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                              keras.layers.Dense(3, name="fc2")])
    model = ks.sparsify(dense, 0.6, distribution="uniform", seed=seed)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def masks(model):
    return [to_np(mw.mask) for mw in model.masked_weights]


def assert_same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# -- item 2: the schedule follows the model's step counter ----------------------


def test_second_fit_continues_the_schedule():
    model = sparse_model()
    first = model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT)
    second = model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT)
    assert first.history["dst/updates"] == [2]  # steps 4, 8
    assert second.history["dst/updates"] == [2]  # steps 12, 16
    # The drop fraction is the schedule's at step 16, not at a restarted 8.
    expected = 0.3 / 2 * (1 + math.cos(math.pi * 16 / 40))
    assert second.history["dst/drop_fraction"][0] == pytest.approx(expected)


def test_fits_with_different_rules_follow_each_other():
    # RigL keeps the plain gradient, SNFS its momentum: one buffer, so the
    # first fit's request must end with that fit.
    model = sparse_model()
    model.fit(X, Y, epochs=1, callbacks=[ks.callbacks.RigL(delta_t=2)], **FIT)
    before = masks(model)
    snfs = ks.callbacks.SNFS(delta_t=2, end_step=20)
    model.fit(X, Y, epochs=2, callbacks=[snfs], **FIT)
    assert any(not np.array_equal(a, b) for a, b in zip(before, masks(model)))
    assert model._dense_grad_requests is None  # released at the end of the fit
    # the last captured values stay readable after the release
    assert all(np.any(to_np(g) != 0) for g in model.dense_gradients())
    model.fit(X, Y, epochs=3, initial_epoch=2, callbacks=[ks.callbacks.RigL(delta_t=2, end_step=30)],
              **FIT)
    for mw in model.masked_weights:
        assert np.all(to_np(mw.weight)[to_np(mw.mask) == 0] == 0)


def test_fit_after_load_model_continues_like_one_run(tmp_path):
    reference = sparse_model()
    reference.fit(X, Y, epochs=2, callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT)

    model = sparse_model()
    model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    history = loaded.fit(X, Y, epochs=2, initial_epoch=1,
                         callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT)
    assert history.history["dst/updates"] == [2]
    assert_same(masks(loaded), masks(reference))
    assert_same([to_np(w) for w in loaded.weights], [to_np(w) for w in reference.weights])


def test_end_step_none_is_resolved_per_fit_from_epoch_zero():
    model = sparse_model()
    model.fit(X, Y, epochs=2, callbacks=[ks.callbacks.SET(delta_t=2)], **FIT)  # end 12
    # Continuing the run the Keras way: the plan is 4 epochs, end 24.
    history = model.fit(X, Y, epochs=4, initial_epoch=2,
                        callbacks=[ks.callbacks.SET(delta_t=2)], **FIT)
    assert history.history["dst/updates"] == [4, 0]  # 18, 20, 22, 24


def _warnings_of(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit()
    return history, [str(w.message) for w in caught if "no mask update" in str(w.message)]


def test_a_fit_past_end_step_warns():
    model = sparse_model()
    model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=2)], **FIT)  # end 6
    history, messages = _warnings_of(
        lambda: model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=2)], **FIT))
    assert history.history["dst/updates"] == [0]
    assert len(messages) == 1
    assert "RigL: this fit will make no mask update" in messages[0]
    assert "ended at step 6" in messages[0] and "already 8" in messages[0]
    assert "initial_epoch" in messages[0]


def test_a_fit_shorter_than_delta_t_warns():
    model = sparse_model()
    history, messages = _warnings_of(
        lambda: model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=100, end_step=1000)], **FIT))
    assert history.history["dst/updates"] == [0]
    assert len(messages) == 1
    assert "steps 1 to 8" in messages[0] and "next update is at step 100" in messages[0]
    assert "delta_t=100" in messages[0]


def test_a_fit_that_updates_does_not_warn():
    model = sparse_model()
    _, messages = _warnings_of(
        lambda: model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=4, end_step=40)], **FIT))
    assert messages == []


# -- item 8: exact counts, begin_step, inclusive end ------------------------------


def test_drop_count_is_the_exact_floor():
    assert int(drop_count(0.7, 90)) == 63  # float64 0.7 * 90 = 62.99999999999999
    adversarial = [(0.7, 90, 63), (0.29, 100, 29), (0.57, 100, 57), (0.58, 100, 58),
                   (0.35, 20, 7), (0.1, 30, 3), (0.3, 10, 3), (0.3, 9, 2), (0.7, 10, 7),
                   (0.99999, 100000, 99999), (0.62999, 100, 62), (1 / 3, 3, 1), (0.0, 5, 0),
                   (1.0, 7, 7), (0.15, 1_000_003, 150000)]
    for f, n, expected in adversarial:
        assert int(drop_count(f, n)) == expected, (f, n)
    # Every two-decimal fraction against rational arithmetic, n up to 400.
    fractions = np.arange(101) / 100
    sizes = np.arange(1, 401)
    got = to_np(drop_count(tf.constant(fractions[:, None]), tf.constant(sizes[None, :], tf.int64)))
    exact = np.array([[math.floor(Fraction(k, 100) * n) for n in sizes] for k in range(101)])
    np.testing.assert_array_equal(got, exact)


def test_layer_drop_counts_in_an_update():
    # 90 active weights, constant fraction 0.7: exactly 63 move.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10,))
    model = ks.SparseModel(inputs, ks.layers.SparseDense(10, name="d", sparsity=0.1)(inputs))
    model.compile("sgd", "mse")
    cb = ks.callbacks.SET(delta_t=1, alpha=0.7, drop_schedule="constant", end_step=10)
    cb.set_model(model)
    stats = cb.update_masks(1)
    assert stats["d/kernel"]["dropped"] == 63 and stats["d/kernel"]["grown"] == 63


def test_cosine_decays_from_begin_step_and_end_step_is_included():
    cb = ks.callbacks.RigL(delta_t=5, begin_step=10, end_step=30, alpha=0.3)
    assert cb._fraction(10) == pytest.approx(0.3)
    assert cb._fraction(20) == pytest.approx(0.15)
    assert cb._fraction(15) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cb._fraction(30) == pytest.approx(0.0)
    assert [s for s in range(40) if cb.clock.is_due(s)] == [10, 15, 20, 25, 30]
    linear = ks.callbacks.SET(delta_t=5, begin_step=10, end_step=30, alpha=0.4,
                              drop_schedule="linear")
    assert linear._fraction(20) == pytest.approx(0.2)


# -- item 3: sparse by construction, subclassed models ---------------------------


@pytest.mark.parametrize("layer,shape", [
    (lambda **k: ks.layers.SparseDense(30, **k), (None, 10)),
    (lambda **k: ks.layers.SparseConv2D(4, 3, **k), (None, 6, 6, 3)),
    (lambda **k: ks.layers.SparseDepthwiseConv2D(3, **k), (None, 6, 6, 5)),
    (lambda **k: ks.layers.SparseSeparableConv2D(6, 3, **k), (None, 6, 6, 5)),
    (lambda **k: ks.layers.SparseEinsumDense("ab,bc->ac", output_shape=7, **k), (None, 9)),
])
def test_sparsity_argument_gives_exact_masks(layer, shape):
    for mask_init in ("random", "magnitude"):
        built = layer(sparsity=0.7, mask_init=mask_init, seed=3)
        built.build(shape)
        for weight, mask in zip(built.get_prunable_weights(), built.get_masks()):
            m, w = to_np(mask), to_np(weight)
            assert (m == 0).sum() == ks.masks.num_inactive(m.size, 0.7)
            assert (w[m == 0] == 0).all()
            if mask_init == "magnitude":
                assert np.abs(w[m == 1]).min() >= np.abs(w[m == 0]).max()
        config = built.get_config()
        assert (config["sparsity"], config["mask_init"], config["seed"]) == (0.7, mask_init, 3)
        again = type(built).from_config(config)
        again.build(shape)
        if mask_init == "random":  # same seed, same mask
            assert_same([to_np(m) for m in again.get_masks()], [to_np(m) for m in built.get_masks()])


def test_sparsity_argument_refuses_bad_values():
    with pytest.raises(ValueError, match="sparsity"):
        ks.layers.SparseDense(4, sparsity=1.0)
    with pytest.raises(TypeError, match="sparsity"):
        ks.layers.SparseDense(4, sparsity="0.9")
    with pytest.raises(ValueError, match="mask_init"):
        ks.layers.SparseDense(4, sparsity=0.5, mask_init="snip")
    with pytest.raises(ValueError, match="seed"):
        ks.layers.SparseDense(4, sparsity=0.5, seed=-1)


@keras.saving.register_keras_serializable(package="tests")
class MLP(ks.SparseModel):
    def __init__(self, units=16, sparsity=0.8, **kwargs):
        super().__init__(**kwargs)
        self.units, self.sparsity = units, sparsity
        self.hidden = ks.layers.SparseDense(units, activation="relu", sparsity=sparsity)
        self.logits = ks.layers.SparseDense(3, sparsity=sparsity)

    def call(self, x):
        return self.logits(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sparsity": self.sparsity}


def subclassed(sparsity=0.8):
    keras.utils.set_random_seed(0)
    model = MLP(sparsity=sparsity)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model(X[:1])
    return model


def test_subclassed_model_is_sparse_by_construction_and_rigl_moves_its_masks(tmp_path):
    model = subclassed()
    before = masks(model)
    assert [(m == 0).sum() for m in before] == [round(0.8 * 128), round(0.8 * 48)]
    assert before[0].tolist() != before[1][:8].tolist()  # layers drew different masks
    history = model.fit(X, Y, callbacks=[ks.callbacks.RigL(delta_t=2, end_step=16)], **FIT)
    assert history.history["dst/updates"] == [4]
    after = masks(model)
    assert any((a != b).any() for a, b in zip(before, after))
    assert [m.sum() for m in after] == [m.sum() for m in before]

    plain = ks.strip(model)
    assert type(plain) is MLP and all(m.all() for m in masks(plain))
    np.testing.assert_array_equal(plain.predict(X, verbose=0), model.predict(X, verbose=0))
    for mw, folded in zip(model.masked_weights, plain.masked_weights):
        np.testing.assert_array_equal(to_np(folded.weight), to_np(mw.weight) * to_np(mw.mask))

    expected = model.predict(X, verbose=0)
    shape_path = ks.export.export_for_serving(model, str(tmp_path / "a"))
    spec = tf.TensorSpec((None, 8), tf.float32, name="features")
    spec_path = ks.export.export_for_serving(model, str(tmp_path / "b"), input_signature=spec)
    for path, name in ((shape_path, "input"), (spec_path, "features")):
        served = tf.saved_model.load(path).signatures["serving_default"]
        out = served(**{name: tf.constant(X)})
        np.testing.assert_allclose(out["output_0"].numpy(), expected, rtol=1e-6, atol=1e-6)
        names = [n for n, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))]
        assert not any("mask" in n for n in names)
    with pytest.raises(ValueError, match="csr"):
        ks.export.export_for_serving(model, str(tmp_path / "c"), sparse_format="csr")


def test_export_of_a_never_called_subclassed_model_asks_for_a_signature(tmp_path):
    model = MLP()
    with pytest.raises(ValueError, match="input_signature"):
        ks.export.export_for_serving(model, str(tmp_path / "x"))


@pytest.mark.parametrize("make", [
    lambda: ks.callbacks.RigL(delta_t=2, end_step=10), lambda: ks.callbacks.SET(delta_t=2),
    lambda: ks.callbacks.Static(),
])
def test_mask_callbacks_refuse_a_model_without_inactive_weights(make):
    model = subclassed(sparsity=None)
    before = [to_np(w) for w in model.trainable_weights]
    with pytest.raises(ValueError, match=r"no inactive weights.*sparsify.*sparsity="):
        model.fit(X, Y, callbacks=[make()], **FIT)
    assert_same([to_np(w) for w in model.trainable_weights], before)  # no step ran
    assert int(model.optimizer.iterations) == 0


def test_gradual_pruning_still_starts_from_dense():
    model = subclassed(sparsity=None)
    schedule = ks.schedules.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=6, frequency=2)
    model.fit(X, Y, callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)], **FIT)
    assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(0.5, abs=0.02)


# -- item 4: Keras' own export after a DST callback --------------------------------


@pytest.mark.parametrize("make", [
    lambda: ks.callbacks.RigL(delta_t=2, end_step=10),
    lambda: ks.callbacks.DSTEE(delta_t=2, end_step=10, c=1e-3),
    lambda: ks.callbacks.SNFS(delta_t=2, end_step=10),
])
def test_keras_export_and_saved_model_after_dst(make, tmp_path):
    model = sparse_model()
    model.fit(X, Y, callbacks=[make()], **FIT)
    expected = model.predict(X, verbose=0)
    model.export(str(tmp_path / "export"))
    exported = tf.saved_model.load(str(tmp_path / "export"))
    np.testing.assert_allclose(exported.serve(X).numpy(), expected, rtol=1e-6, atol=1e-6)
    tf.saved_model.save(model, str(tmp_path / "saved"))
    reloaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(reloaded.signatures["serving_default"](
        tf.constant(X))["output_0"].numpy(), expected, rtol=1e-6, atol=1e-6)


# -- item 5: .weights.h5 independent of attached callbacks -------------------------


def _load_quietly(model, path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    return [str(w.message) for w in caught]


def test_weights_from_a_rigl_run_load_into_a_fresh_model_and_back(tmp_path):
    trained = sparse_model()
    path = str(tmp_path / "w.weights.h5")
    trained.fit(X, Y, epochs=2, callbacks=[
        ks.callbacks.DSTEE(delta_t=2, end_step=20, c=1e-3),
        keras.callbacks.ModelCheckpoint(path, save_weights_only=True)], **FIT)
    assert trained.masked_weights[0].layer.has_mask_state("itop")
    saved_state = {(i, name): to_np(mw.state(name)).copy()
                   for i, mw in enumerate(trained.masked_weights)
                   for name in ("itop", "dstee_count")}

    fresh = sparse_model(seed=5)  # other masks, no rule state
    assert not fresh.masked_weights[0].layer.has_mask_state("itop")
    messages = _load_quietly(fresh, path)
    assert not any("Skipping nested container" in m or "expected" in m for m in messages)
    assert_same(masks(fresh), masks(trained))
    np.testing.assert_array_equal(fresh.predict(X, verbose=0), trained.predict(X, verbose=0))

    # Into a model with the same rule state, the state comes back too.
    again = sparse_model(seed=9)
    ks.callbacks.DSTEE(delta_t=2, end_step=20, c=1e-3).set_model(again)
    _load_quietly(again, path)
    assert_same(masks(again), masks(trained))
    for (i, name), value in saved_state.items():
        np.testing.assert_array_equal(to_np(again.masked_weights[i].state(name)), value)

    # The reverse: a fresh model's file into a model that has rule state,
    # which keeps its values.
    other = sparse_model(seed=7)
    other_path = str(tmp_path / "fresh.weights.h5")
    other.save_weights(other_path)
    messages = _load_quietly(trained, other_path)
    assert not any("Skipping nested container" in m for m in messages)
    assert_same(masks(trained), masks(other))
    for i, mw in enumerate(trained.masked_weights):
        np.testing.assert_array_equal(to_np(mw.state("itop")), saved_state[(i, "itop")])


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = str(tmp_path / "plain.weights.h5")
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(3)])
    plain.save_weights(path)
    with pytest.raises(ValueError, match="expected 3 weights"):
        sparse_model().load_weights(path)
