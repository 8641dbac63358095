"""DynamicSparsity and its presets inside `fit`: invariants, logs, state, resume."""

import csv
import glob
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.callbacks import drop_grow, drop_schedules
from keras_sparse.callbacks.drop_grow import Exploration, Gradient, Momentum
from keras_sparse.model import DENSE_GRAD
from keras_sparse.optimizer_slots import slots_for

X = np.random.RandomState(0).randn(64, 8).astype("float32")
Y = (X[:, 0] > 0).astype("int32") + (X[:, 1] > 0.5).astype("int32")


def small_model(optimizer=None, sparsity=0.7, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    hidden = ks.layers.SparseDense(16, activation="relu", name="h")(inputs)
    model = ks.SparseModel(inputs, ks.layers.SparseDense(3, name="out")(hidden))
    ks.pruning.random(model, sparsity, distribution="uniform", seed=seed)
    model.compile(optimizer or keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def masks_of(model):
    return [keras.ops.convert_to_numpy(mw.mask) for mw in model.masked_weights]


def fit(model, callbacks, epochs=2, **kwargs):
    return model.fit(X, Y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=callbacks, **kwargs)


# -- arguments and configs ----------------------------------------------------------


@pytest.mark.parametrize("kwargs,error,name", [
    (dict(delta_t=0), ValueError, "delta_t"),
    (dict(delta_t=2.5), TypeError, "delta_t"),
    (dict(delta_t="batch"), ValueError, "delta_t"),
    (dict(begin_step=-1), ValueError, "begin_step"),
    (dict(begin_step=10, end_step=10), ValueError, "end_step"),
    (dict(alpha=1.5), ValueError, "alpha"),
    (dict(alpha=float("nan")), ValueError, "alpha"),
    (dict(grow_init="ones"), ValueError, "grow_init"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(drop="smallest"), ValueError, "drop"),
    (dict(grow=3), TypeError, "grow"),
    (dict(drop_schedule="exp"), ValueError, "drop_schedule"),
    (dict(redistribution="uniform"), ValueError, "redistribution"),
    (dict(log_dir=3), TypeError, "log_dir"),
    (dict(grow=Gradient() + Momentum()), ValueError, "grow"),
])
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        ks.callbacks.DynamicSparsity(**kwargs)


@pytest.mark.parametrize("kwargs,name", [
    (dict(c=-1.0), "c"), (dict(eps=0.0), "eps"), (dict(c_decay=0), "c_decay"),
    (dict(c_decay_every=0), "c_decay_every"), (dict(t="epochs"), "`t`.*epochs"),
    (dict(c_scale="log"), "c_scale"),
])
def test_bad_dstee_knobs(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ks.callbacks.DSTEE(**kwargs)


def test_needs_a_sparse_model_and_a_known_plan():
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match="SparseModel"):
        ks.callbacks.RigL().set_model(dense)
    model = small_model()
    before = masks_of(model)
    cb = ks.callbacks.RigL()  # end_step=None: 75% of what fit plans
    cb.set_model(model)
    with pytest.raises(ValueError, match="end_step"):
        cb.update_masks(5)
    unknown_size = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(8)
    with pytest.raises(ValueError, match="delta_t"):
        model.fit(unknown_size, epochs=1, verbose=0, shuffle=False,
                  callbacks=[ks.callbacks.SET(end_step=100)])
    for old, new in zip(before, masks_of(model)):
        np.testing.assert_array_equal(old, new)


def test_bad_schedule_value_is_refused_before_any_change():
    class TooBig(drop_schedules.DropSchedule):
        def __call__(self, step, alpha, end_step):
            return 2.0

    model = small_model()
    cb = ks.callbacks.DynamicSparsity(grow="random", drop_schedule=TooBig(), end_step=100)
    cb.set_model(model)
    before = masks_of(model)
    with pytest.raises(ValueError, match="schedule"):
        cb.update_masks(10)
    for old, new in zip(before, masks_of(model)):
        np.testing.assert_array_equal(old, new)


CALLBACKS = [
    lambda: ks.callbacks.DynamicSparsity(drop="magnitude", grow="random", drop_schedule="linear",
                                         delta_t=7, begin_step=3, end_step=50, alpha=0.2,
                                         grow_init=0.5, seed=4, log_dir="/tmp/x"),
    lambda: ks.callbacks.DynamicSparsity(grow=Gradient() + Exploration(c=0.1, c_decay_every=3),
                                         drop_schedule=drop_schedules.Constant()),
    lambda: ks.callbacks.DynamicSparsity(grow=Momentum(0.8), redistribution="mean_score",
                                         delta_t="epoch"),
    lambda: ks.callbacks.SET(seed=3),
    lambda: ks.callbacks.RigL(delta_t=10, end_step=90),
    lambda: ks.callbacks.SNFS(momentum=0.5),
    lambda: ks.callbacks.DSTEE(c=1e-3, eps=0.5, c_decay=0.5, c_decay_every=2),
]


@pytest.mark.parametrize("make", CALLBACKS)
def test_config_round_trip(make):
    cb = make()
    config = cb.get_config()
    again = type(cb).from_config(config)
    assert again.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cb))
    assert type(revived) is type(cb) and revived.get_config() == config
    assert type(again.grow) is type(cb.grow)
    assert type(again.drop_schedule) is type(cb.drop_schedule)


@pytest.mark.parametrize("part", [
    drop_schedules.CosineDecay(), drop_schedules.Constant(), drop_schedules.LinearDecay(),
    drop_grow.Magnitude(), drop_grow.Random(), drop_grow.Gradient(), drop_grow.Momentum(0.7),
    drop_grow.Exploration(c=0.1, eps=2.0, c_decay=0.9, c_decay_every=5),
    drop_grow.Gradient() + drop_grow.Exploration(c=0.2),
    drop_grow.MeanScoreRedistribution(),
])
def test_parts_config_round_trip(part):
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(part))
    assert type(again) is type(part) and again.get_config() == part.get_config()


def test_preset_rules_and_defaults():
    assert isinstance(ks.callbacks.RigL().grow, Gradient)
    assert isinstance(ks.callbacks.SET().grow, drop_grow.Random)
    snfs = ks.callbacks.SNFS()
    assert isinstance(snfs.grow, Momentum) and snfs.redistribution is not None
    assert (snfs.alpha, snfs.delta_t) == (0.5, "epoch")
    dstee = ks.callbacks.DSTEE()
    assert [type(p) for p in dstee.grow.parts()] == [Gradient, Exploration]
    assert (dstee.exploration.c, dstee.delta_t, dstee.alpha) == (1e-2, 100, 0.3)
    # What each update reads of the model's kept dense gradients.
    assert [cb.reads_dense_gradients for cb in (ks.callbacks.RigL(), snfs, dstee)] == [True] * 3
    assert not ks.callbacks.SET().reads_dense_gradients


def test_schedules():
    assert drop_schedules.CosineDecay()(0, 0.3, 100) == pytest.approx(0.3)
    assert drop_schedules.CosineDecay()(50, 0.3, 100) == pytest.approx(0.15)
    assert drop_schedules.CosineDecay()(25, 0.3, 100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_schedules.CosineDecay()(150, 0.3, 100) == pytest.approx(0.0)
    assert drop_schedules.Constant()(70, 0.3, 100) == 0.3
    assert drop_schedules.LinearDecay()(25, 0.4, 100) == pytest.approx(0.3)
    assert drop_schedules.LinearDecay()(200, 0.4, 100) == 0.0


def test_update_steps_and_dense_gradient_capture():
    model = small_model()
    cb = ks.callbacks.RigL(delta_t=3, begin_step=4)
    cb.set_model(model)
    cb.set_params({"epochs": 2, "steps": 8})  # end_step: 75% of 16 = 12
    updates = [s for s in range(20) if cb.clock.is_due(s)]
    assert updates == [6, 9, 12]  # end_step included, as in rigl
    # The train step keeps the gradient of the step whose index is s - 1.
    captured = [s for s in range(20) if bool(model._dense_grad_requests.when(tf.constant(s, tf.int64)))]
    assert captured == [5, 8, 11]
    assert [cb.clock.rounds(s) for s in (5, 6, 8, 9, 12, 15)] == [0, 1, 1, 2, 3, 3]


# -- training invariants ----------------------------------------------------------


class Checker(keras.callbacks.Callback):
    """After every batch: exact sparsity, zero inactive weights and slots,
    grown weights at `grow_init` with fresh slots (runs after the DST callback)."""

    def __init__(self, grow_init=0.0, per_layer=True):
        super().__init__()
        self.grow_init, self.per_layer, self.updates = grow_init, per_layer, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.before = masks_of(self.model)
        self.counts = [m.sum() for m in self.before]

    def on_train_batch_end(self, batch, logs=None):
        after = masks_of(self.model)
        changed = any((a != b).any() for a, b in zip(after, self.before))
        self.updates += changed
        counts = [m.sum() for m in after]
        if self.per_layer:
            assert counts == self.counts
        assert sum(counts) == sum(self.counts)
        optimizer = self.model.optimizer
        for mw, old, new in zip(self.model.masked_weights, self.before, after):
            w = keras.ops.convert_to_numpy(mw.weight)
            slots = [keras.ops.convert_to_numpy(s) for s in slots_for(optimizer, mw.weight)]
            assert slots
            assert (w[new == 0] == 0).all()
            grown = (new == 1) & (old == 0)
            assert (w[grown] == np.float32(self.grow_init)).all()
            for slot in slots:
                assert (slot[new == 0] == 0).all() and (slot[grown] == 0).all()


@pytest.mark.parametrize("make,optimizer,grow_init,per_layer", [
    (lambda: ks.callbacks.RigL(delta_t=3), "adam", "zeros", True),
    (lambda: ks.callbacks.SET(delta_t=3, grow_init=0.05), "sgd", 0.05, True),
    (lambda: ks.callbacks.SNFS(delta_t=3), "sgd", "zeros", False),
    (lambda: ks.callbacks.DSTEE(delta_t=3, c=1e-2), "adam", "zeros", True),
])
def test_training_keeps_the_invariants(make, optimizer, grow_init, per_layer):
    opt = keras.optimizers.Adam(0.01) if optimizer == "adam" else keras.optimizers.SGD(0.05, momentum=0.9)
    model = small_model(opt)
    start = masks_of(model)
    checker = Checker(0.0 if grow_init == "zeros" else grow_init, per_layer)
    history = fit(model, [make(), checker], epochs=2)
    assert checker.updates >= 2  # 16 steps, end 12 (included), every 3 steps: 3, 6, 9, 12
    assert any((a != b).any() for a, b in zip(start, masks_of(model)))
    logs = history.history
    assert logs["dst/updates"] == [2, 2]
    assert logs["dst/changed"][0] > 0 and 0 < logs["dst/churn"][0] <= 1
    assert 0.3 < logs["dst/itop"][0] <= logs["dst/itop"][1] <= 1.0
    assert logs["dst/update_ms"][0] > 0 and 0 < logs["dst/drop_fraction"][0] <= 0.5


def test_logs_reach_csv_and_tensorboard(tmp_path):
    model = small_model()
    cb = ks.callbacks.RigL(delta_t=2, log_dir=str(tmp_path / "tb"))
    fit(model, [cb, keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))], epochs=2)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {"dst/drop_fraction", "dst/changed", "dst/itop", "dst/update_ms"} <= set(rows[0])
    tags = set()
    for path in glob.glob(str(tmp_path / "tb" / "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    path = model.masked_weights[0].path
    assert {"dst/drop_fraction", "dst/itop", f"dst/changed/{path}", f"dst/sparsity/{path}"} <= tags


def test_end_step_defaults_to_75_percent_of_training():
    model = small_model()
    cb = ks.callbacks.SET(delta_t=2, drop_schedule="constant")
    history = fit(model, [cb], epochs=2)
    # 16 steps, end 12 (included): updates at 2, 4, ..., 12 (six), none after.
    assert history.history["dst/updates"] == [4, 2]
    # Fitting on to epoch 4: the plan is 32 steps, end 24: 18, 20, 22, 24.
    history = fit(model, [cb], epochs=4, initial_epoch=2)
    assert history.history["dst/updates"] == [4, 0]


def test_per_epoch_updates():
    model = small_model()
    history = fit(model, [ks.callbacks.SET()], epochs=4)  # 8 steps/epoch, end 24 (included)
    assert history.history["dst/updates"] == [1, 1, 1, 0]


def test_steps_per_execution_catches_up():
    model = small_model()
    model.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=2)
    cb = ks.callbacks.RigL(delta_t=3)
    history = model.fit(X, keras.utils.to_categorical(Y, 3), batch_size=8, epochs=2,
                        shuffle=False, verbose=0, callbacks=[cb])
    # Updates due at steps 3, 6, 9, 12 run at the batch ends 4, 6, 10 and 12.
    assert history.history["dst/updates"] == [2, 2]


def test_non_finite_scores_skip_the_layer():
    model = small_model()
    cb = ks.callbacks.RigL(delta_t=1, end_step=100)
    cb.set_model(model)
    bad, good = model.masked_weights
    rng = np.random.RandomState(0)
    for mw in (bad, good):
        mw.weight.assign(rng.randn(*mw.weight.shape) * keras.ops.convert_to_numpy(mw.mask))
        mw.state(DENSE_GRAD).assign(rng.randn(*mw.weight.shape))
    grad = rng.randn(*bad.weight.shape).astype("float32")
    grad[0, 0] = np.nan
    bad.state(DENSE_GRAD).assign(grad)
    before = masks_of(model)
    weight_before = keras.ops.convert_to_numpy(bad.weight)
    with pytest.warns(UserWarning, match=f"{bad.path}.*NaN or Inf"):
        stats = cb.update_masks(1)
    after = masks_of(model)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bad.weight), weight_before)
    assert not stats[bad.path]["finite"] and stats[good.path]["changed"] > 0
    assert (after[1] != before[1]).any()


# -- DST-EE ----------------------------------------------------------------------


def explore(c, rounds=10):
    """Position (0, 0) of the first kernel: never active, zero gradient."""
    model = small_model(sparsity=0.5)
    cb = ks.callbacks.DSTEE(c=c, delta_t=1, end_step=1000, drop_schedule="constant", alpha=0.3)
    cb.set_model(model)
    first = model.masked_weights[0]
    mask = keras.ops.convert_to_numpy(first.mask)
    if mask[0, 0]:  # make (0, 0) inactive, keeping the count
        mask[0, 0] = 0.0
        mask[tuple(np.argwhere(mask == 0)[1])] = 1.0
    model.set_masks({first.path: mask})
    rng = np.random.RandomState(1)
    for mw in model.masked_weights:
        grad = 0.01 + 0.01 * rng.rand(*mw.weight.shape).astype("float32")
        if mw is first:
            grad[0, 0] = 0.0
        mw.state(DENSE_GRAD).assign(grad)
    grown_at = None
    for step in range(1, rounds + 1):
        cb.update_masks(step)
        if grown_at is None and keras.ops.convert_to_numpy(first.mask)[0, 0] == 1:
            grown_at = step
    counts = keras.ops.convert_to_numpy(first.state(Exploration.COUNT))
    return grown_at, counts


def test_dstee_exploration_grows_never_tried_connections():
    grown_at, counts = explore(c=1.0)
    assert grown_at is not None and grown_at >= 2  # round 1 has no bonus (ln 1 = 0)
    assert counts.max() == 10 and counts[0, 0] <= 10 - grown_at
    never, _ = explore(c=0.0)
    assert never is None  # RigL alone never tries it: its gradient is 0


def test_regrown_fraction_and_grown_ever_match_the_masks():
    """Grown weights are marked by grow_init=7 and checked against the mask history."""
    model = small_model(sparsity=0.6)
    cb = ks.callbacks.DynamicSparsity(grow="random", delta_t=1, end_step=1000, alpha=0.5,
                                      drop_schedule="constant", grow_init=7.0, seed=3)
    cb.set_model(model)
    rng = np.random.RandomState(0)
    masks = masks_of(model)
    union = [m.copy() for m in masks]
    initial = [m.copy() for m in masks]
    total_grown = total_regrown = 0
    for step in range(1, 7):
        for mw in model.masked_weights:  # fresh values: only this update's growth is 7
            mw.weight.assign(rng.uniform(-1, 1, mw.weight.shape).astype("float32")
                             * keras.ops.convert_to_numpy(mw.mask))
        stats = cb.update_masks(step)
        for i, mw in enumerate(model.masked_weights):
            grown = keras.ops.convert_to_numpy(mw.weight) == 7.0
            regrown = int((grown & (union[i] > 0)).sum())
            assert stats[mw.path]["grown"] == grown.sum()
            assert stats[mw.path]["regrown"] == regrown
            total_grown += int(grown.sum())
            total_regrown += regrown
            union[i] = np.maximum(union[i], keras.ops.convert_to_numpy(mw.mask))
    assert 0 < total_regrown < total_grown  # both kinds happen in this setting
    logs = {}
    cb.on_epoch_end(0, logs)
    assert logs["dst/regrown_fraction"] == total_regrown / total_grown
    ever_new = sum(int(((u > 0) & (m == 0)).sum()) for u, m in zip(union, initial))
    assert logs["dst/grown_ever"] == ever_new > 0


def test_regrown_and_grown_ever_are_logged_in_fit():
    model = small_model()
    history = fit(model, [ks.callbacks.RigL(delta_t=2)], epochs=2)
    assert all(0.0 <= v <= 1.0 for v in history.history["dst/regrown_fraction"])
    ever = sum(float(np.sum(keras.ops.convert_to_numpy(mw.state("itop"))))
               for mw in model.masked_weights)
    active = sum(float(np.sum(m)) for m in masks_of(model))
    assert history.history["dst/grown_ever"][-1] == ever - active


def test_union_pass_adds_new_masks_and_counts_every_layer():
    model = small_model()
    cb = ks.callbacks.RigL(delta_t=2)
    fit(model, [cb], epochs=1)
    unions = [keras.ops.convert_to_numpy(mw.state("itop")) for mw in model.masked_weights]
    # Masks set from outside (a new random mask): the pass must add them.
    ks.pruning.random(model, 0.7, seed=5)
    masks = masks_of(model)
    ever, active = cb.update.union(model)
    expected = [np.maximum(u, m) for u, m in zip(unions, masks)]
    for mw, want in zip(model.masked_weights, expected):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mw.state("itop")), want)
    assert ever == sum(float(e.sum()) for e in expected) > sum(float(u.sum()) for u in unions)
    assert active == sum(float(m.sum()) for m in masks)
    assert cb.update.union(model) == (ever, active)  # a second pass changes nothing


def _bonus(rule, step, round_, gradient):
    model = small_model(sparsity=0.5)
    rule.build(model)
    mw = model.masked_weights[0]
    update = drop_grow.LayerUpdate(
        weight=mw, index=0, mask=tf.cast(mw.mask, tf.float32), gradient=gradient,
        step=tf.constant(step, tf.int64), round=tf.constant(round_, tf.float64), seed=0)
    return keras.ops.convert_to_numpy(rule.score(update)), keras.ops.convert_to_numpy(mw.mask)


def test_dstee_t_counts_rounds_or_steps():
    rounds, mask = _bonus(Exploration(c=1.0), step=300, round_=3, gradient=None)
    steps, _ = _bonus(Exploration(c=1.0, t="steps"), step=300, round_=3, gradient=None)
    counts = mask  # N_i after this round's count: the mask itself (fresh counters)
    np.testing.assert_allclose(rounds, np.sqrt(np.log(3.0) / (counts + 1.0)), rtol=1e-6)
    np.testing.assert_allclose(steps, np.sqrt(np.log(300.0) / (counts + 1.0)), rtol=1e-6)
    assert ks.callbacks.DSTEE(t="steps").exploration.t == "steps"


def test_dstee_relative_c_scales_with_the_mean_gradient():
    gradient = tf.reshape(tf.cast(tf.range(128) % 3, tf.float32) * 0.1, [8, 16])
    rule = Exploration(c=2.0, c_scale="relative")
    assert rule.needs_gradient and not Exploration().needs_gradient
    relative, mask = _bonus(rule, step=5, round_=4, gradient=gradient)
    absolute, _ = _bonus(Exploration(c=2.0), step=5, round_=4, gradient=gradient)
    mean_g = float(tf.reduce_mean(tf.abs(gradient)))
    np.testing.assert_allclose(relative, absolute * mean_g, rtol=1e-6)
    # Scale-free: multiplying the gradient by 1000 multiplies the bonus by 1000 too.
    scaled, _ = _bonus(Exploration(c=2.0, c_scale="relative"), 5, 4, gradient * 1000.0)
    np.testing.assert_allclose(scaled, relative * 1000.0, rtol=1e-5)
    cb = ks.callbacks.DSTEE(c=1e-3, c_scale="relative", t="steps")
    again = ks.callbacks.DSTEE.from_config(cb.get_config())
    assert (again.exploration.c_scale, again.exploration.t) == ("relative", "steps")


def test_dstee_c_decays_every_few_rounds():
    bonus = Exploration(c=1.0, c_decay=0.5, c_decay_every=2)
    got = [float(bonus.coefficient(tf.constant(t, tf.float64))) for t in (1, 2, 3, 4, 5)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert float(Exploration(c=0.3).coefficient(tf.constant(9.0, tf.float64))) == 0.3


def test_dstee_with_c_zero_trains_like_rigl():
    results = []
    for cb in (ks.callbacks.RigL(delta_t=2), ks.callbacks.DSTEE(c=0.0, delta_t=2)):
        model = small_model()
        fit(model, [cb], epochs=2)
        results.append((masks_of(model), [keras.ops.convert_to_numpy(w) for w in model.weights]))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)


def test_dstee_state_survives_keras_save_and_load(tmp_path):
    model = small_model()
    fit(model, [ks.callbacks.DSTEE(delta_t=2, c=1e-2)], epochs=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model.masked_weights, loaded.masked_weights):
        for state in (Exploration.COUNT, "itop", DENSE_GRAD):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.state(state)),
                                          keras.ops.convert_to_numpy(b.state(state)))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.mask),
                                      keras.ops.convert_to_numpy(b.mask))
    # 8 steps, end 6 (included): rounds at steps 2, 4 and 6
    assert keras.ops.convert_to_numpy(loaded.masked_weights[0].state(Exploration.COUNT)).max() == 3
    fit(loaded, [ks.callbacks.DSTEE(delta_t=2, c=1e-2, end_step=20)], epochs=1)  # and goes on


# -- resume ----------------------------------------------------------------------


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("make", [
    lambda: ks.callbacks.DSTEE(delta_t=3, c=1e-2),
    lambda: ks.callbacks.SET(delta_t=3, seed=5),
    lambda: ks.callbacks.SNFS(delta_t=5),
])
def test_backup_and_restore_resumes_to_the_same_masks(make, tmp_path):
    uninterrupted = small_model(keras.optimizers.SGD(0.05, momentum=0.9))
    fit(uninterrupted, [make()], epochs=4)

    backup = str(tmp_path / "backup")
    model = small_model(keras.optimizers.SGD(0.05, momentum=0.9))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, [make(), keras.callbacks.BackupAndRestore(backup), Interrupt()], epochs=4)
    resumed = small_model(keras.optimizers.SGD(0.05, momentum=0.9))  # a new process would
    history = fit(resumed, [make(), keras.callbacks.BackupAndRestore(backup)], epochs=4)
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 only
    assert int(resumed.optimizer.iterations) == 32
    for a, b in zip(masks_of(uninterrupted), masks_of(resumed)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(uninterrupted.masked_weights, resumed.masked_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a.weight),
                                   keras.ops.convert_to_numpy(b.weight), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.state("itop")),
                                      keras.ops.convert_to_numpy(b.state("itop")))


# -- a real data set ----------------------------------------------------------------


def test_fashion_mnist_lenet_300_100_at_98_percent_trains():
    # Short form of `python -m benchmarks.dst_fashion_mnist` (full run there).
    from benchmarks.dst_fashion_mnist import run

    for method in ("rigl", "set", "dstee"):
        result = run(method, epochs=2, subset=6000, delta_t=10)
        assert result["loss"][1] < result["loss"][0], result
        assert result["test_accuracy"] > 0.5, result  # chance is 0.1
        assert abs(result["sparsity"] - 0.98) < 1e-4, result
        assert result["updates"] > 0 and result["itop"][-1] > 0.02, result


@pytest.mark.parametrize("eps, bonus_never, bonus_three, winners", [
    # c = 0.01, t = 3 rounds: ln 3 = 1.098612; by hand,
    # 0.01 * sqrt(1.098612 / 1e-8) = 104.8147 and 0.01 * sqrt(1.098612 / 3) = 0.0060515;
    # 0.01 * sqrt(1.098612 / 1) = 0.0104815 and 0.01 * sqrt(1.098612 / 4) = 0.0052407.
    (1e-8, 104.8147, 0.0060515, {"A", "B"}),  # never-active first, then abs(g) among them
    (1.0, 0.0104815, 0.0052407, {"A", "C"}),
])
def test_dstee_acquisition_matches_a_hand_worked_example(eps, bonus_never, bonus_three, winners):
    """Four inactive positions: A (g=0.05, never active), B (g=0.001, never active),
    C (g=0.2, active in 3 earlier rounds), D (g=0, never active); two are grown."""
    model = small_model(sparsity=0.5)
    rule = drop_grow.Gradient() + Exploration(c=0.01, eps=eps)
    rule.build(model)
    mw = model.masked_weights[0]
    where = {"A": (0, 0), "B": (0, 1), "C": (1, 0), "D": (1, 1)}
    g = np.zeros(mw.weight.shape, "float32")
    for name, value in (("A", 0.05), ("B", 0.001), ("C", 0.2)):
        g[where[name]] = value
    counts = np.zeros(mw.weight.shape, "float32")
    counts[where["C"]] = 3.0
    mw.state(Exploration.COUNT).assign(counts)
    update = drop_grow.LayerUpdate(
        weight=mw, index=0, mask=tf.zeros(mw.weight.shape), gradient=tf.constant(g),
        step=tf.constant(300, tf.int64), round=tf.constant(3.0, tf.float64), seed=0)
    score = keras.ops.convert_to_numpy(rule.score(update))
    expected = {"A": 0.05 + bonus_never, "B": 0.001 + bonus_never, "C": 0.2 + bonus_three,
                "D": bonus_never}
    for name, value in expected.items():
        assert score[where[name]] == pytest.approx(value, rel=1e-5), name
    picked = sorted(where, key=lambda n: -score[where[n]])[:2]
    assert set(picked) == winners
