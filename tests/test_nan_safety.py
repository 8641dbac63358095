"""NaN and Inf never reach inactive weights or their optimizer slots.

Masking by multiplication turns an infinite gradient into NaN (Inf * 0);
every mask application selects instead.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.layers.raw_reads import raw_reads
from keras_sparse.optimizer_slots import slots_for

to_np = keras.ops.convert_to_numpy


def _model(seed=0):
    """fc1's kernel has input row 0 inactive; trained with Adam."""
    keras.utils.set_random_seed(seed)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc1"),
                              keras.layers.Dense(3, name="fc2")], name="net")
    model = ks.sparsify(dense, 0.0)
    masks = model.get_masks()
    masks["net/fc1/kernel"][0, :] = 0  # input feature 0 reaches nothing
    masks["net/fc1/kernel"][1, :4] = 0
    model.set_masks(masks)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def _inactive(model):
    """`[(weight values, slot values list)]` at inactive positions."""
    out = []
    for mw in model.masked_weights:
        off = to_np(mw.mask) == 0
        slots = slots_for(model.optimizer, mw.weight, model.trainable_variables)
        out.append((to_np(mw.weight)[off], [to_np(s)[off] for s in slots]))
    return out


def test_huge_input_on_inactive_row_keeps_weights_and_adam_slots_zero():
    model = _model()
    x, y = _data()
    x[:, 0] = 3e38  # finite, but its gradient on fc1's row 0 overflows to Inf
    y = 1e3 * y     # (large errors: the summed gradient exceeds float32's range)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))  # the loss stays finite
    for weights, slots in _inactive(model):
        assert np.all(weights == 0.0)
        assert len(slots) == 2 or not slots  # Adam m and v
        for slot in slots:
            assert np.all(slot == 0.0)
    # The active part trained normally.
    fc1 = to_np(model.masked_weights[0].weight)
    assert np.all(np.isfinite(fc1))


def test_dense_gradient_of_the_inactive_row_is_really_infinite():
    # Guards the test above: without selection, Inf * 0 would be NaN here.
    model = _model()
    x, y = _data()
    x[:, 0] = 3e38
    y = 1e3 * y
    with tf.GradientTape() as tape:
        with raw_reads(model.masked_weights):
            loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x)))
    assert np.isfinite(to_np(loss))
    grad = tape.gradient(loss, model.masked_weights[0].weight)
    assert not np.all(np.isfinite(to_np(grad)[0]))


def test_rigl_updates_after_an_infinite_gradient():
    model = _model()
    x, y = _data(32)
    bad = x.copy()
    bad[:, 0] = 3e38
    model.fit(bad, 1e3 * y, batch_size=32, epochs=1, verbose=0)
    before = model.get_masks()
    rigl = ks.callbacks.RigL(delta_t=2, alpha=0.5, end_step=100)
    with _no_non_finite_warning():
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[rigl])
    after = model.get_masks()
    assert any(np.any(before[p] != after[p]) for p in before)  # masks moved
    for weights, slots in _inactive(model):
        assert np.all(weights == 0.0)
        for slot in slots:
            assert np.all(slot == 0.0)


class _no_non_finite_warning:
    """Fails if a mask update is skipped for NaN/Inf."""

    def __enter__(self):
        import warnings
        self._catch = warnings.catch_warnings(record=True)
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        messages = [str(r.message) for r in self._records]
        assert not [m for m in messages if "NaN or Inf" in m], messages


def _contaminate(model):
    """Writes NaN into every inactive kernel entry, directly (as a bug would)."""
    for mw in model.masked_weights:
        off = to_np(mw.mask) == 0
        value = to_np(mw.weight).copy()
        value[off] = np.nan
        mw.weight.assign(value)


def test_random_redraw_never_activates_nan_weights():
    keras.utils.set_random_seed(1)
    dense = keras.Sequential([keras.Input((20,)), keras.layers.Dense(30, name="fc1"),
                              keras.layers.Dense(5, name="fc2")], name="net")
    model = ks.sparsify(dense, 0.8, distribution="uniform", seed=0)
    _contaminate(model)
    ks.pruning.random(model, 0.8, distribution="uniform", seed=7)  # a new draw
    grown = 0
    for mw in model.masked_weights:
        weight, mask = to_np(mw.weight), to_np(mw.mask)
        assert np.all(np.isfinite(weight))
        assert np.all(weight[mask == 0] == 0.0)
        grown += int(np.sum(mask))
    assert grown > 0


def test_grown_weight_starts_at_grow_init_whatever_was_stored():
    model = _model()
    _contaminate(model)
    mw = model.masked_weights[0]
    model.set_masks({"net/fc1/kernel": np.ones(mw.weight.shape)}, grow_init=0.25)
    weight = to_np(mw.weight)
    assert np.all(weight[0] == 0.25) and np.all(weight[1, :4] == 0.25)
    assert np.all(np.isfinite(weight))


def test_assign_mask_and_slot_reset_select_inside_tf_function():
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds Adam slots
    mw = model.masked_weights[0]
    slots = slots_for(model.optimizer, mw.weight, model.trainable_variables)
    off = to_np(mw.mask) == 0
    for slot in slots:  # NaN in the slots of inactive weights
        value = to_np(slot).copy()
        value[off] = np.nan
        slot.assign(value)
    _contaminate(model)
    ones = tf.ones(mw.weight.shape)
    tf.function(lambda: model.assign_mask(mw, ones, 0.5))()
    assert np.all(to_np(mw.weight)[off] == 0.5)
    for slot in slots:
        assert np.all(to_np(slot)[off] == 0.0)
        assert np.all(np.isfinite(to_np(slot)))


def test_apply_masks_and_strip_drop_nan_at_inactive_positions():
    model = _model()
    x, _ = _data()
    _contaminate(model)
    plain = ks.strip(model)
    assert np.all(np.isfinite(to_np(plain.get_layer("fc1").kernel)))
    assert np.all(np.isfinite(to_np(plain(x))))
    model.apply_masks()
    for weights, _ in _inactive(model):
        assert np.all(weights == 0.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_set_masks_refuses_non_finite_grow_init(bad):
    model = _model()
    before = model.get_masks()
    kernel = to_np(model.masked_weights[0].weight).copy()
    with pytest.raises(ValueError, match="`grow_init` must be a finite number"):
        model.set_masks({"net/fc1/kernel": np.ones((4, 8))}, grow_init=bad)
    after = model.get_masks()
    assert all(np.array_equal(before[p], after[p]) for p in before)
    assert np.array_equal(to_np(model.masked_weights[0].weight), kernel)


def test_set_masks_refuses_grow_init_of_wrong_type():
    model = _model()
    with pytest.raises(TypeError, match="`grow_init`"):
        model.set_masks({"net/fc1/kernel": np.ones((4, 8))}, grow_init="0.1")
