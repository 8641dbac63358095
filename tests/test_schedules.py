"""ks.schedules: tfmot's protocol, signatures and semantics."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks


def cubic(step, s_i, s_f, t0, t1, power=3):
    progress = min(max((step - t0) / (t1 - t0), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - progress) ** power


def test_polynomial_decay_follows_the_cubic_formula():
    schedule = ks.schedules.PolynomialDecay(0.1, 0.9, begin_step=20, end_step=120,
                                            frequency=10)
    for step in range(0, 200, 3):
        should, sparsity = schedule(tf.constant(step, tf.int64))
        assert float(sparsity) == pytest.approx(cubic(step, 0.1, 0.9, 20, 120), abs=1e-6)
        expected = 20 <= step <= 120 and (step - 20) % 10 == 0
        assert bool(should) == expected == schedule.prunes_at(step)


def test_constant_sparsity_prunes_forever_by_default():
    schedule = ks.schedules.ConstantSparsity(0.75, begin_step=5, frequency=4)
    assert schedule.end_step == -1
    for step in [0, 4, 5, 8, 9, 10_005, 10_006]:
        should, sparsity = schedule(step)
        assert float(sparsity) == 0.75
        assert bool(should) == (step >= 5 and (step - 5) % 4 == 0) == schedule.prunes_at(step)
    bounded = ks.schedules.ConstantSparsity(0.5, begin_step=0, end_step=10, frequency=5)
    assert [bounded.prunes_at(s) for s in (0, 5, 10, 15)] == [True, True, True, False]


@pytest.mark.parametrize("make, match", [
    (lambda: ks.schedules.PolynomialDecay(0.0, 0.9, begin_step=100, end_step=50), "end_step"),
    (lambda: ks.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=-1), "end_step"),
    (lambda: ks.schedules.ConstantSparsity(0.5, begin_step=10, end_step=5), "end_step"),
    (lambda: ks.schedules.ConstantSparsity(0.5, begin_step=-1), "begin_step"),
    (lambda: ks.schedules.ConstantSparsity(0.5, begin_step=0, frequency=0), "frequency"),
    (lambda: ks.schedules.ConstantSparsity(1.0, begin_step=0), "target_sparsity"),
    (lambda: ks.schedules.PolynomialDecay(-0.1, 0.9, 0, 10), "initial_sparsity"),
    (lambda: ks.schedules.PolynomialDecay(0.0, 1.2, 0, 10), "final_sparsity"),
])
def test_bad_arguments_raise_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_config_round_trip():
    for schedule in [ks.schedules.PolynomialDecay(0.2, 0.8, 3, 40, power=2, frequency=7),
                     ks.schedules.ConstantSparsity(0.6, 1, end_step=9, frequency=2)]:
        config = schedule.get_config()
        clone = type(schedule).from_config(config)
        assert clone.get_config() == config
        restored = ks.schedules.deserialize(ks.schedules.serialize(schedule))
        assert type(restored) is type(schedule) and restored.get_config() == config
        keras_restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(schedule))
        for step in range(0, 50, 5):
            assert [float(v) for v in keras_restored(step)] == [float(v) for v in schedule(step)]


TFMOT_SCRIPT = """
import json, os
import keras, numpy as np
import keras_sparse as ks                      # Keras 3, imported first
import tensorflow_model_optimization as tfmot  # the legacy package, its own schedules
assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
sched = tfmot.sparsity.keras
cases = {
    "poly": sched.PolynomialDecay(0.05, 0.87, begin_step=13, end_step=211, power=3, frequency=9),
    "poly2": sched.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=50, power=2, frequency=1),
    "const": sched.ConstantSparsity(0.63, begin_step=7, end_step=-1, frequency=11),
}
values = {name: [[bool(a), float(b)] for a, b in (s(step) for step in range(0, 260))]
          for name, s in cases.items()}

# A tfmot schedule instance drives ks.callbacks.GradualMagnitudePruning.
def train(schedule):
    keras.utils.set_random_seed(1)
    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(10), keras.layers.Dense(3)])
    model = ks.sparsify(dense, 0.0)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    x = np.random.RandomState(0).randn(40, 6).astype("float32")
    model.fit(x, np.arange(40) % 3, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[ks.callbacks.GradualMagnitudePruning(schedule)])
    return model
a = train(sched.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=8, frequency=2))
b = train(ks.schedules.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=8, frequency=2))
same = all(np.array_equal(m, n) for m, n in zip(a.get_masks().values(), b.get_masks().values()))
callback = ks.callbacks.GradualMagnitudePruning(cases["poly"])
restored = ks.callbacks.GradualMagnitudePruning.from_config(callback.get_config())
print(json.dumps({"values": values, "same_masks": same,
                  "sparsity": ks.sparsity_report(a)[-1]["sparsity"],
                  "restored": type(restored.schedule).__module__}))
"""


def test_matches_tfmot_schedules_in_a_subprocess(run_python):
    out = json.loads(run_python(TFMOT_SCRIPT, env={"TF_USE_LEGACY_KERAS": "1"})
                     .strip().splitlines()[-1])
    ours = {
        "poly": ks.schedules.PolynomialDecay(0.05, 0.87, begin_step=13, end_step=211,
                                             power=3, frequency=9),
        "poly2": ks.schedules.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=50,
                                              power=2, frequency=1),
        "const": ks.schedules.ConstantSparsity(0.63, begin_step=7, end_step=-1, frequency=11),
    }
    for name, schedule in ours.items():
        for step, (should, sparsity) in enumerate(out["values"][name]):
            got_should, got_sparsity = schedule(tf.constant(step, tf.int64))
            assert bool(got_should) == should, (name, step)
            assert np.float32(got_sparsity) == np.float32(sparsity), (name, step)
    # The tfmot instance works in the callback, gives the same masks, and its
    # config comes back as the equivalent ks schedule (no tfmot needed).
    assert out["same_masks"]
    assert out["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert out["restored"] == "keras_sparse.schedules.pruning_schedules"
