"""OneShotPruning: dense epochs, then one pruning step to the exact target."""

import keras
import numpy as np
import pytest

import keras_sparse as ks

X = np.random.RandomState(0).randn(64, 8).astype("float32")
Y = (X[:, 0] > 0).astype("int32")


def dense_start():
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(2)])
    model = ks.sparsify(dense, 0.0)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("criterion", ["magnitude", "random"])
def test_prunes_once_after_the_given_epoch(criterion):
    model = dense_start()
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        [keras.ops.convert_to_numpy(mw.mask).copy() for mw in model.masked_weights]))
    history = model.fit(X, Y, batch_size=16, epochs=4, verbose=0, callbacks=[
        ks.callbacks.OneShotPruning(0.75, epoch=2, criterion=criterion, distribution="uniform"),
        probe])
    assert history.history["sparsity"] == [0.0, 0.75, 0.75, 0.75]
    assert all(m.all() for m in seen[0])  # dense through epoch 1
    for mw, mask in zip(model.masked_weights, seen[1]):
        assert int((mask == 0).sum()) == round(0.75 * mw.size)  # exact per layer
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mw.mask), mask)  # fixed after
        weight = keras.ops.convert_to_numpy(mw.weight)
        assert (weight[mask == 0] == 0).all()
        for slot in model.optimizer.variables:
            if slot.shape == mw.weight.shape and "kernel" in slot.path:
                assert (keras.ops.convert_to_numpy(slot)[mask == 0] == 0).all()


def test_magnitude_keeps_the_largest_weights():
    model = dense_start()
    before = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: before.extend(
        np.abs(keras.ops.convert_to_numpy(mw.weight)).copy() for mw in model.masked_weights))
    cb = ks.callbacks.OneShotPruning(0.5, epoch=1, distribution="uniform")
    model.fit(X, Y, batch_size=64, epochs=1, verbose=0, callbacks=[record, cb])
    for mw, magnitude in zip(model.masked_weights, before):
        mask = keras.ops.convert_to_numpy(mw.mask)
        assert magnitude[mask == 1].min() >= magnitude[mask == 0].max()


@pytest.mark.parametrize("kwargs, name", [
    (dict(sparsity=1.0, epoch=1), "sparsity"), (dict(sparsity=0.5, epoch=0), "epoch"),
    (dict(sparsity=0.5, epoch=1, criterion="snip"), "criterion"),
    (dict(sparsity=0.5, epoch=1, distribution="global"), "distribution"),
    (dict(sparsity=0.5, epoch=1, seed=-1), "seed"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ks.callbacks.OneShotPruning(**kwargs)


def test_config_round_trip():
    cb = ks.callbacks.OneShotPruning(0.9, epoch=3, criterion="random", seed=4)
    again = ks.callbacks.OneShotPruning.from_config(cb.get_config())
    assert again.get_config() == cb.get_config()
