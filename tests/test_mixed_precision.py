"""mixed_float16: masks in the variable dtype, exact sparsity, unscaled gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.masks import num_inactive
from keras_sparse.optimizer_slots import slots_for

to_np = keras.ops.convert_to_numpy


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="tanh")(x)
    outputs = keras.layers.Dense(3, dtype="float32")(x)
    return ks.sparsify(keras.Model(inputs, outputs), 0.6, distribution="uniform")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    return x, rng.normal(size=(16, 3)).astype("float32")


def test_fit_keeps_exact_sparsity(mixed_float16):
    model = _model()
    assert model.masked_weights[0].layer.compute_dtype == "float16"
    for mw in model.masked_weights:
        assert mw.weight.dtype == "float32" and mw.mask.dtype == "float32"
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(*_data(), batch_size=8, epochs=2, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for mw in model.masked_weights:
        mask = to_np(mw.mask)
        assert (mask == 0).sum() == num_inactive(mw.size, 0.6)
        np.testing.assert_array_equal(to_np(mw.weight)[mask == 0], 0.0)
        slots = slots_for(model.optimizer, mw.weight)  # found inside the wrapper
        assert len(slots) == 2
        for slot in slots:
            np.testing.assert_array_equal(to_np(slot)[mask == 0], 0.0)
    # A mask change resets the inner optimizer's slots too.
    mw = model.masked_weights[0]
    model.set_masks({mw.path: np.zeros(mw.weight.shape)})
    for slot in slots_for(model.optimizer, mw.weight):
        np.testing.assert_array_equal(to_np(slot), 0.0)
    assert keras.config.dtype_policy().name == "mixed_float16"


def test_dense_gradients_are_unscaled(mixed_float16):
    model = _model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model.request_dense_gradients()
    x, y = _data()
    model.fit(x, y, batch_size=16, verbose=0)
    plain = ks.strip(model)
    by_path = {w.path: w for w in plain.trainable_weights}
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, plain(x, training=True))
    expected = tape.gradient(loss, [by_path[mw.path] for mw in model.masked_weights])
    for got, want in zip(model.dense_gradients(), expected):
        assert got.dtype == tf.float32
        want = to_np(want)
        # Loss scaling (2**15) removed; float16 forward, so a loose tolerance.
        np.testing.assert_allclose(to_np(got), want, rtol=0.05, atol=0.05 * np.abs(want).max())
