"""ks.callbacks.GradualMagnitudePruning: scheduled, exact, magnitude-based."""

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.masks import num_inactive
from keras_sparse.optimizer_slots import slots_for

X = np.random.RandomState(0).randn(48, 6).astype("float32")
Y = np.arange(48) % 3


def make(optimizer="adam"):
    keras.utils.set_random_seed(3)
    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(3)])
    model = ks.sparsify(dense, 0.0)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class Recorder(keras.callbacks.Callback):
    """Inactive counts per weight after every step, keyed by optimizer step."""

    def __init__(self):
        super().__init__()
        self.counts = {}

    def on_train_begin(self, logs=None):
        self.on_train_batch_end(None)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        self.counts[step] = [int((m == 0).sum()) for m in self.model.get_masks().values()]


def test_sparsity_at_each_step_follows_the_schedule_exactly():
    model = make()
    schedule = ks.schedules.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=12, frequency=3)
    recorder = Recorder()
    history = model.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[ks.callbacks.GradualMagnitudePruning(schedule), recorder])
    sizes = [mw.size for mw in model.masked_weights]
    for step, counts in recorder.counts.items():
        # The mask in force before step `step` is the one of the latest pruning step <= step.
        last = max(t for t in range(step + 1) if schedule.prunes_at(t))
        sparsity = float(schedule(last)[1])
        assert counts == [num_inactive(n, sparsity) for n in sizes], step
    assert recorder.counts[18] == [num_inactive(n, 0.8) for n in sizes]
    total = sum(num_inactive(n, 0.8) for n in sizes) / sum(sizes)
    assert history.history["sparsity"][-1] == pytest.approx(total)
    for mw in model.masked_weights:  # inactive weights and Adam slots exactly 0
        off = np.asarray(mw.mask) == 0
        assert np.all(np.asarray(mw.weight)[off] == 0)
        for slot in slots_for(model.optimizer, mw.weight):
            assert np.all(np.asarray(slot)[off] == 0)


def test_steps_per_execution_applies_the_latest_scheduled_step():
    model = make()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=4)
    schedule = ks.schedules.PolynomialDecay(0.0, 0.6, begin_step=1, end_step=10, frequency=3)
    recorder = Recorder()
    model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule), recorder])
    sizes = [mw.size for mw in model.masked_weights]
    assert sorted(recorder.counts) == [0, 4, 6, 10, 12]  # epochs of 6 steps, executions of 4
    for step in (4, 6, 10):  # latest pruning steps: 4, 4, 10
        sparsity = float(schedule(4 if step < 10 else 10)[1])
        assert recorder.counts[step] == [num_inactive(n, sparsity) for n in sizes]


class ProtocolOnly:
    """A schedule with only the tfmot protocol (no `prunes_at`), like a tfmot instance."""

    def __init__(self, schedule):
        self.inner = schedule

    def __call__(self, step):
        return self.inner(step)


def test_protocol_only_schedule_prunes_at_the_same_steps():
    # Its steps are evaluated in windows of 1,024 (one compiled call each):
    # the epochs here cross a window boundary.
    schedule = ks.schedules.PolynomialDecay(0.2, 0.8, begin_step=1010, end_step=1030, frequency=7)
    counts = {}
    for name, used in (("ks", schedule), ("protocol", ProtocolOnly(schedule))):
        model = make()
        model.optimizer.iterations.assign(1000)
        recorder = Recorder()
        model.fit(X, Y, batch_size=8, epochs=6, shuffle=False, verbose=0,
                  callbacks=[ks.callbacks.GradualMagnitudePruning(used), recorder])
        counts[name] = recorder.counts
    assert counts["ks"] == counts["protocol"]
    # Pruned at 1010, 1017 and 1024 (the last one in the second window).
    assert len({tuple(c) for c in counts["ks"].values()}) == 4
    sizes = [mw.size for mw in make().masked_weights]
    sparsity = float(schedule(1024)[1])
    assert counts["protocol"][1036] == [num_inactive(n, sparsity) for n in sizes]


def test_keeps_the_largest_magnitudes():
    model = make(keras.optimizers.SGD(learning_rate=0.0))  # weights never move
    initial = [np.abs(np.asarray(mw.weight)) for mw in model.masked_weights]
    schedule = ks.schedules.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    for w, mask in zip(initial, model.get_masks().values()):
        kept = np.sort(w[mask == 1])
        dropped = np.sort(w[mask == 0])
        assert len(dropped) == num_inactive(w.size, 0.75)
        assert dropped[-1] <= kept[0]


def test_large_layer_keeps_exactly_the_largest_magnitudes():
    # 256 x 256 = 65,536 weights: the mask comes from the radix select.
    from keras_sparse import masks
    keras.utils.set_random_seed(4)
    dense = keras.Sequential([keras.Input((256,)), keras.layers.Dense(256), keras.layers.Dense(3)])
    model = ks.sparsify(dense, 0.0)
    assert model.masked_weights[0].size >= masks.RADIX_MIN_SIZE
    model.compile(keras.optimizers.SGD(learning_rate=0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = np.abs(np.asarray(model.masked_weights[0].weight))
    schedule = ks.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, frequency=2)
    x = np.random.RandomState(1).randn(16, 256).astype("float32")
    model.fit(x, np.arange(16) % 3, batch_size=4, epochs=1, verbose=0,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    mask = np.asarray(model.masked_weights[0].mask)
    assert int((mask == 0).sum()) == num_inactive(initial.size, 0.8)
    assert np.sort(initial[mask == 0])[-1] <= np.sort(initial[mask == 1])[0]


def test_distribution_option_and_config_round_trip():
    model = make()
    schedule = ks.schedules.ConstantSparsity(0.7, begin_step=0, frequency=100)
    callback = ks.callbacks.GradualMagnitudePruning(schedule, distribution="erk")
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    targets = ks.distributions.layer_sparsities(model, 0.7, "erk", dense_layers=[])
    for mw in model.masked_weights:
        assert int((np.asarray(mw.mask) == 0).sum()) == num_inactive(mw.size, targets[mw.path])
    clone = ks.callbacks.GradualMagnitudePruning.from_config(callback.get_config())
    assert clone.get_config() == callback.get_config()
    assert clone.schedule.get_config() == schedule.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert restored.get_config() == callback.get_config()


def test_resumed_equals_uninterrupted(tmp_path):
    schedule = ks.schedules.PolynomialDecay(0.0, 0.8, begin_step=2, end_step=20, frequency=4)

    def fit(model, initial_epoch, epochs):
        model.fit(X, Y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
                  shuffle=False, verbose=0,
                  callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])

    straight = make()
    fit(straight, 0, 4)
    first = make()
    fit(first, 0, 2)
    first.save(tmp_path / "half.keras")
    resumed = keras.saving.load_model(tmp_path / "half.keras")
    fit(resumed, 2, 4)
    for a, b in zip(straight.get_masks().values(), resumed.get_masks().values()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="schedule"):
        ks.callbacks.GradualMagnitudePruning(0.5)
    schedule = ks.schedules.ConstantSparsity(0.5, 0)
    with pytest.raises(ValueError, match="distribution"):
        ks.callbacks.GradualMagnitudePruning(schedule, distribution="gaussian")
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    plain.compile("sgd", "mse")
    with pytest.raises(TypeError, match="SparseModel"):
        plain.fit(X, np.zeros((48, 3)), epochs=1, verbose=0,
                  callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
