"""The public surface: one argument-check rule, plain models in
`sparsity_report`, `drop_schedule=` (and its deprecated old name), public
`assign_mask`, and dense-gradient requests that compose."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.utils import argument_validation as av

to_np = keras.ops.convert_to_numpy


# -- one validation rule ---------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_integers_of_every_kind_pass(value):
    assert av.check_int(value, "k", minimum=1) == 3
    assert type(av.check_int(value, "k")) is int


@pytest.mark.parametrize("check, value, error, message", [
    (lambda v: av.check_int(v, "k", minimum=1), True, TypeError, r"`k` must be an integer >= 1; got True of type bool"),
    (lambda v: av.check_int(v, "k", minimum=1), 2.0, TypeError, r"`k` must be an integer >= 1; got 2.0 of type float"),
    (lambda v: av.check_int(v, "k", minimum=1), 0, ValueError, r"`k` must be an integer >= 1; got 0\."),
    (lambda v: av.check_int(v, "k", 1, 5), 6, ValueError, r"`k` must be an integer in \[1, 5\]; got 6"),
    (lambda v: av.check_number(v, "alpha", 0, 1), "0.3", TypeError, r"`alpha` must be a number in \[0, 1\]; got '0.3'"),
    (lambda v: av.check_number(v, "alpha", 0, 1), np.bool_(True), TypeError, "alpha"),
    (lambda v: av.check_number(v, "alpha", 0, 1), float("inf"), ValueError, r"`alpha` must be in \[0, 1\]; got inf"),
    (lambda v: av.check_number(v, "eps", low=0, low_open=True), 0, ValueError, r"`eps` must be > 0; got 0"),
    (lambda v: av.check_sparsity(v), 1.0, ValueError, r"`sparsity` must be in \[0, 1\); got 1.0"),
    (lambda v: av.check_choice(v, "mode", ("a", "b")), "c", ValueError, r"`mode` must be one of \('a', 'b'\); got 'c'"),
    (lambda v: av.check_choice(v, "mode", ("a", "b")), ["a"], ValueError, "mode"),
])
def test_wrong_type_is_type_error_wrong_value_is_value_error(check, value, error, message):
    with pytest.raises(error, match=message):
        check(value)


def test_numpy_scalars_are_accepted_everywhere():
    # These disagreed before: np.int64 passed KStarts but failed DynamicSparsity.
    cb = ks.callbacks.DynamicSparsity(delta_t=np.int64(10), begin_step=np.int32(0),
                                      end_step=np.int64(50), alpha=np.float32(0.25),
                                      seed=np.int64(1))
    assert (cb.delta_t, cb.end_step, cb.seed) == (10, 50, 1)
    assert type(cb.delta_t) is int and cb.alpha == 0.25
    ks.callbacks.KStarts(np.float64(0.5), k=np.int64(3), selection_epochs=np.int8(1))
    ks.callbacks.DissipatingGradients(0.5, epochs=np.int64(2), fraction=np.float32(0.5))
    ks.schedules.ConstantSparsity(np.float32(0.5), begin_step=np.int64(0), frequency=np.int64(5))
    ks.callbacks.Exploration(c_decay_every=np.int64(3))
    with pytest.raises(TypeError, match="delta_t"):
        ks.callbacks.DynamicSparsity(delta_t=True)
    with pytest.raises(TypeError, match="k"):
        ks.callbacks.KStarts(0.5, k=2.0)


# -- sparsity_report on plain models ------------------------------------------------


def _plain():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(x), name="net")


def test_sparsity_report_of_a_plain_model_is_dense():
    rows = ks.sparsity_report(_plain())
    assert [(r["layer"], r["weight"], r["shape"], r["active"], r["sparsity"]) for r in rows] == [
        ("fc1", "kernel", (6, 4), 24, 0.0), ("fc2", "kernel", (4, 3), 12, 0.0),
        ("total", "", (), 36, 0.0)]
    assert rows[-1]["total"] == 36


def test_sparsity_report_of_a_plain_model_with_a_sparse_layer():
    inputs = keras.Input((6,))
    sparse = ks.layers.SparseDense(4, name="sd")
    x = sparse(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    mask = np.ones((6, 4), "float32")
    mask[:3] = 0
    sparse.kernel_mask.assign(mask)
    rows = ks.sparsity_report(model)
    assert [(r["layer"], r["active"], r["total"]) for r in rows] == [
        ("sd", 12, 24), ("fc", 8, 8), ("total", 20, 32)]
    assert rows[-1]["sparsity"] == pytest.approx(12 / 32)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        ks.sparsity_report("model.keras")


def test_sparsity_report_matches_the_sparse_report_after_strip():
    sparse = ks.sparsify(_plain(), 0.5, distribution="uniform")
    plain_rows = ks.sparsity_report(ks.strip(sparse))
    sparse_rows = ks.sparsity_report(sparse)
    assert [r["total"] for r in plain_rows] == [r["total"] for r in sparse_rows]
    assert sparse_rows[-1]["sparsity"] == pytest.approx(0.5, abs=0.05)


# -- drop_schedule= ------------------------------------------------------------------


def test_drop_schedule_argument_and_old_configs():
    cb = ks.callbacks.RigL(drop_schedule="linear")
    assert isinstance(cb.drop_schedule, ks.callbacks.drop_schedules.LinearDecay)
    assert cb.get_config()["drop_schedule"] == "linear" and "schedule" not in cb.get_config()
    # `schedule=` was never released as an argument of the drop-and-grow callbacks.
    with pytest.raises(TypeError, match="schedule"):
        ks.callbacks.SET(schedule="cosine")
    assert not hasattr(cb, "schedule")
    # Defaults per preset are unchanged.
    assert isinstance(ks.callbacks.SET().drop_schedule, ks.callbacks.drop_schedules.Constant)
    assert isinstance(ks.callbacks.SNFS().drop_schedule, ks.callbacks.drop_schedules.CosineDecay)
    # Old configs (`schedule`) load without a warning, new ones round-trip.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loaded = ks.callbacks.DSTEE.from_config({"c": 1e-3, "schedule": "linear"})
        again = ks.callbacks.DSTEE.from_config(ks.callbacks.DSTEE(c=1e-3).get_config())
    assert isinstance(loaded.drop_schedule, ks.callbacks.drop_schedules.LinearDecay)
    assert again.get_config() == ks.callbacks.DSTEE(c=1e-3).get_config()


def test_structures_are_public_and_every_rule_takes_structure():
    import inspect

    assert {"NM", "Block", "Unstructured", "get", "serialize"} <= set(ks.structures.__all__)
    takers = [ks.sparsify, ks.layers.SparseDense, ks.layers.SparseConv2D,
              ks.pruning.random, ks.pruning.magnitude, ks.pruning.snip, ks.pruning.grasp,
              ks.pruning.synflow, ks.callbacks.GradualMagnitudePruning,
              ks.callbacks.DynamicSparsity, ks.callbacks.KStarts,
              ks.callbacks.DissipatingGradients]
    for taker in takers:
        if inspect.isclass(taker) and issubclass(taker, ks.layers.SparseLayer):
            assert ks.layers.SparseDense(4, structure="2:4").structure == ks.structures.NM(2, 4)
            continue
        assert "structure" in inspect.signature(taker).parameters, taker
    # Rules save the structure they were given.
    schedule = ks.schedules.ConstantSparsity(0.5, 0)
    for callback in [ks.callbacks.RigL(structure="2:4"), ks.callbacks.SET(structure="2:4"),
                     ks.callbacks.GradualMagnitudePruning(schedule, structure="2:4"),
                     ks.callbacks.KStarts(0.5, structure="2:4"),
                     ks.callbacks.DissipatingGradients(0.5, structure="2:4")]:
        again = type(callback).from_config(callback.get_config())
        assert again.structure == ks.structures.NM(2, 4), type(callback).__name__
    assert ks.callbacks.RigL().get_config()["structure"] is None


def test_rule_parts_are_exported():
    grow = ks.callbacks.Gradient() + ks.callbacks.Exploration(c=1e-3)
    assert isinstance(grow, ks.callbacks.Sum)
    cb = ks.callbacks.DynamicSparsity(grow=grow, redistribution=ks.callbacks.MeanScoreRedistribution())
    assert isinstance(cb.grow, ks.callbacks.Rule)


# -- assign_mask and composed dense-gradient requests ----------------------------------


def _sparse_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, activation="tanh", name="fc1")(inputs)
    model = ks.sparsify(keras.Model(inputs, keras.layers.Dense(3, name="fc2")(x)), 0.5,
                        distribution="uniform", seed=seed)
    model.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: gradients are easy to redo
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def _dense_gradient(model, x, y):
    plain = ks.strip(model)
    by_path = {w.path: w for w in plain.trainable_weights}
    variables = [by_path[mw.path] for mw in model.masked_weights]
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, plain(x, training=True))
    return [to_np(g) for g in tape.gradient(loss, variables)]


def test_assign_mask_is_public_and_keeps_weights_consistent():
    model = _sparse_model()
    mw = model.masked_weights[0]
    ones = tf.ones(mw.weight.shape)
    model.assign_mask(mw, ones, grow_init=0.5)
    grown = to_np(mw.weight)
    assert np.all(to_np(mw.mask) == 1)
    assert np.count_nonzero(grown == 0.5) >= mw.size // 2  # the grown half starts at 0.5


class Recorder(ks.callbacks.MaskCallback):
    """Asks for the dense gradient at every odd step and keeps what it read."""

    def set_model(self, model):
        super().set_model(model)
        model.request_dense_gradients(when=lambda step: step % 2 == 1, owner=self)
        self.read = {}

    def on_train_batch_end(self, batch, logs=None):
        if batch % 2 == 1:
            self.read[batch] = [to_np(g) for g in self.model.dense_gradients()]


@pytest.mark.parametrize("recorder_first", [True, False])
def test_dense_gradient_requests_compose(recorder_first):
    model = _sparse_model()
    x, y = _data()
    recorder = Recorder()
    # alpha 0: RigL's updates change nothing, so the gradients stay predictable.
    rigl = ks.callbacks.RigL(delta_t=4, end_step=100, alpha=0.0)
    order = [recorder, rigl] if recorder_first else [rigl, recorder]
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=order)
    # The recorder reads its own steps (1, 3, 5, 7) although RigL asks only
    # for steps 3 and 7: the union is kept, not the last request alone.
    assert sorted(recorder.read) == [1, 3, 5, 7]
    for step, grads in recorder.read.items():
        want = _dense_gradient(model, x[2 * step:2 * step + 2], y[2 * step:2 * step + 2])
        for got, expected in zip(grads, want):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_dense_gradient_requests_must_agree_on_momentum():
    model = _sparse_model()
    model.request_dense_gradients(owner="mine")
    model.request_dense_gradients(owner="mine", momentum=0.5)  # its own: replaced
    with pytest.raises(ValueError, match=r"`momentum`=0.0 differs from momentum=0.5 already "
                                         r"requested by str"):
        model.request_dense_gradients(owner="other")
    snfs = ks.callbacks.SNFS(momentum=0.9)
    rigl = ks.callbacks.RigL()
    rigl.set_model(model := _sparse_model())
    with pytest.raises(ValueError, match="one dense-gradient buffer"):
        snfs.set_model(model)
