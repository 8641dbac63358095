"""`UpdateClock`: due steps, rounds, and following a fit without reading the
device at every batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.callbacks import drop_schedules
from keras_sparse.callbacks.clock import ScheduleClock, UpdateClock


class _Counter:
    """A stand-in model whose step counter counts how often it is read."""

    def __init__(self, step=0):
        self.reads = 0
        self.step = step
        outer = self

        class Iterations:
            def __array__(self, dtype=None, copy=None):
                outer.reads += 1
                return np.array(outer.step, dtype=dtype)

        class Optimizer:
            iterations = Iterations()

        self.optimizer = Optimizer()


def test_due_steps_rounds_and_bounds():
    clock = UpdateClock(delta_t=3, begin_step=4, end_step=None, default_end=0.75)
    clock.start({"epochs": 2, "steps": 8})  # end_step: 75% of 16 = 12
    assert [s for s in range(20) if clock.is_due(s)] == [6, 9, 12]
    assert [s for s in range(20) if clock.captures(s)] == [5, 8, 11]
    assert [clock.rounds(s) for s in (5, 6, 8, 9, 12, 15)] == [0, 1, 1, 2, 3, 3]
    assert [clock.round_step(r) for r in (1, 2, 3)] == [6, 9, 12]
    assert (clock.next_due(6), clock.next_due(12)) == (9, None)
    assert (clock.latest_due(7, 11), clock.latest_due(10, 11)) == (9, None)
    # Traced into a graph, the same answers.
    assert [bool(clock.is_due(tf.constant(s))) for s in (6, 7, 15)] == [True, False, False]
    every = UpdateClock(delta_t=5)  # no end
    every.start({})
    assert every.is_due(500) and every.rounds(17) == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta_t=0), "delta_t"), (dict(delta_t="step"), "delta_t"),
    (dict(begin_step=-1), "begin_step"), (dict(begin_step=5, end_step=5), "end_step"),
    (dict(delta_t=1.5), "delta_t"),
])
def test_bad_settings_are_refused_naming_them(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        UpdateClock(**kwargs)
    clock = UpdateClock(delta_t="epoch")
    with pytest.raises(ValueError, match="steps per epoch"):
        clock.start({"epochs": 2})
    with pytest.raises(ValueError, match="end_step"):
        UpdateClock(default_end=0.75).start({"epochs": 2})


def test_a_fit_reads_the_step_counter_only_when_an_update_may_be_due():
    clock = UpdateClock(delta_t=10)
    model = _Counter(step=0)
    clock.start({"epochs": 1, "steps": 35})
    clock.epoch_begin(0)
    due = []
    for batch in range(35):
        assert clock.batch_begin(batch, model) == (batch == 0)
        model.step += 1
        step = clock.batch_end(batch, model)
        if step is not None:
            due.append(step)
    assert due == [10, 20, 30]
    assert model.reads == 1 + 3  # the epoch's first batch, then each due step


def test_steps_per_execution_and_a_short_last_execution():
    # Executions of 4 steps; Keras reports the last one's full index range.
    clock = UpdateClock(delta_t=6)
    model = _Counter(step=0)
    clock.start({"epochs": 1, "steps": 10})
    clock.epoch_begin(0)
    found = []
    for begin, end, real in ((0, 3, 4), (4, 7, 8), (8, 11, 10)):
        clock.batch_begin(begin, model)
        model.step = real
        found.append(clock.batch_end(end, model))
    assert found == [None, 6, None] and clock.step == 10  # corrected at the due read


def test_schedule_clock_for_pruning_schedules():
    schedule = ks.schedules.PolynomialDecay(0.0, 0.5, begin_step=2, end_step=12, frequency=5)
    clock = ScheduleClock(schedule, window=4)
    assert [s for s in range(15) if clock.is_due(s)] == [2, 7, 12]
    assert clock.latest_due(3, 12) == 12 and clock.latest_due(8, 11) is None

    class Plain:  # no `prunes_at`: evaluated in compiled windows
        def __call__(self, step):
            return tf.equal(step % 5, 2), tf.constant(0.5)

    windowed = ScheduleClock(Plain(), window=4)
    assert [s for s in range(15) if windowed.is_due(s)] == [2, 7, 12]


def test_a_bad_custom_drop_schedule_fails_before_the_first_step():
    class TooBig(drop_schedules.DropSchedule):
        def __call__(self, step, alpha, end_step):
            return 1.7

    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    model = ks.sparsify(dense, 0.5, seed=0)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}
    x, y = np.ones((16, 6), "float32"), np.zeros((16, 2), "float32")
    cb = ks.callbacks.DynamicSparsity(grow="random", drop_schedule=TooBig(), delta_t=2,
                                      end_step=100)
    with pytest.raises(ValueError, match=r"drop_schedule.*TooBig.*1\.7.*step 2"):
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[cb])
    assert int(model.optimizer.iterations) == 0
    for variable in model.weights:
        if variable.path in before:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable),
                                          before[variable.path], err_msg=variable.path)
