"""K-starts and dissipating gradients (Haroon 2022), alone and combined."""

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.masks import num_inactive

RNG = np.random.RandomState(0)
X = RNG.randn(32, 6).astype("float32")
Y = np.arange(32) % 4
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def single(learning_rate=0.0):
    """One bias-free Dense layer; with learning rate 0 its weights never move."""
    keras.utils.set_random_seed(4)
    model = ks.sparsify(keras.Sequential([keras.Input((6,)),
                                          keras.layers.Dense(4, use_bias=False)]), 0.0)
    model.compile(keras.optimizers.SGD(learning_rate), LOSS)
    return model


def two_layers():
    keras.utils.set_random_seed(5)
    model = ks.sparsify(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(10, activation="relu"), keras.layers.Dense(4)]), 0.0)
    model.compile(keras.optimizers.Adam(0.01), LOSS)
    return model


def fit(model, callbacks, epochs, initial_epoch=0):
    return model.fit(X, Y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
                     shuffle=False, verbose=0, callbacks=callbacks).history


def candidates(callback, model):
    callback.set_model(model)
    return [{p: np.asarray(m) for p, m in callback.candidate(i).items()}
            for i in range(callback.k)]


def test_kstarts_picks_the_largest_magnitude_candidate():
    model = single()
    callback = ks.callbacks.KStarts(0.5, k=4, selection_epochs=1, fitness="magnitude",
                                    mode="union")
    cands = candidates(callback, model)
    path = model.masked_weights[0].path
    for c in cands:
        assert int((c[path] == 0).sum()) == num_inactive(24, 0.5)
    w = np.where(cands[2][path] == 1, 1.0, 0.1).astype("float32")  # candidate 2 is the fittest
    model.masked_weights[0].weight.assign(w)
    history = fit(model, [callback], epochs=2)
    expected = [float((np.abs(w) * c[path]).sum()) for c in cands]
    assert history["kstarts_winner"] == [2]
    for i in range(4):
        assert history[f"kstarts_fitness_{i}"][0] == pytest.approx(expected[i])
    np.testing.assert_array_equal(model.get_masks()[path], cands[2][path])
    np.testing.assert_array_equal(np.asarray(model.masked_weights[0].weight), w * cands[2][path])
    assert history["sparsity"] == [0.5, 0.5]


@pytest.mark.parametrize("fitness", ["gradient", "both"])
def test_kstarts_gradient_fitness_sums_abs_gradients_over_selection(fitness):
    model = single()
    callback = ks.callbacks.KStarts(0.5, k=3, selection_epochs=2, fitness=fitness, seed=7,
                                    mode="union")
    cands = candidates(callback, model)
    path = model.masked_weights[0].path
    union = np.maximum.reduce([c[path] for c in cands])
    w = np.asarray(model.masked_weights[0].weight, np.float64) * union
    grad_sum = np.zeros_like(w)
    for _ in range(2):  # weights never move: every epoch sees the same gradients
        for start in range(0, 32, 8):
            x, y = X[start:start + 8].astype(np.float64), Y[start:start + 8]
            p = np.exp(x @ w)
            p /= p.sum(1, keepdims=True)
            grad_sum += np.abs(x.T @ (p - np.eye(4)[y]) / 8)
    magnitude = np.array([(np.abs(w) * c[path]).sum() for c in cands])
    gradient = np.array([(grad_sum * c[path]).sum() for c in cands])
    expected = gradient if fitness == "gradient" else (
        magnitude / magnitude.mean() + gradient / gradient.mean())
    history = fit(model, [callback], epochs=3)
    got = [history[f"kstarts_fitness_{i}"][0] for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert history["kstarts_winner"] == [int(np.argmax(expected))]
    np.testing.assert_array_equal(model.get_masks()[path], cands[int(np.argmax(expected))][path])


def test_kstarts_independent_winner_continues_as_if_trained_alone():
    model = two_layers()
    callback = ks.callbacks.KStarts(0.6, k=2, selection_epochs=1, mode="independent")
    cands = candidates(callback, model)
    history = fit(model, [callback], epochs=3)
    assert history["sparsity"] == pytest.approx([ks.sparsity_report(model)[-1]["sparsity"]] * 3)
    fitness, alone = [], []
    for i in range(2):  # each candidate trained alone, from the same start
        alone.append(two_layers())
        alone[i].set_masks(list(cands[i].values()))
        fit(alone[i], [], epochs=1)
        fitness.append(sum(float(np.abs(np.asarray(mw.weight)).sum())
                           for mw in alone[i].masked_weights))
    assert history["kstarts_winner"] == [int(np.argmax(fitness))]
    assert fitness[0] != fitness[1]
    np.testing.assert_allclose([history[f"kstarts_fitness_{i}"][0] for i in range(2)],
                               fitness, rtol=1e-5)
    winner = alone[history["kstarts_winner"][0]]
    fit(winner, [], epochs=2, initial_epoch=1)  # the winner goes on as if it alone had trained
    for a, b in zip(model.get_weights(), winner.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert int(model.optimizer.iterations) == int(winner.optimizer.iterations) == 8


def test_kstarts_independent_refuses_a_fit_too_short_before_the_first_step():
    model = two_layers()
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"needs 10 epochs.*plans 6 \(epochs=6\)"):
        fit(model, [ks.callbacks.KStarts(0.6, k=5, selection_epochs=2)], epochs=6)
    assert int(model.optimizer.iterations) == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


MULTIWORKER = """
import tensorflow as tf
import keras, numpy as np
import keras_sparse as ks
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
with strategy.scope():
    model = ks.sparsify(keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)]), 0.0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
try:
    model.fit(np.zeros((8, 6), "float32"), np.zeros(8), epochs=4, verbose=0,
              callbacks=[ks.callbacks.KStarts(0.5, k=2, selection_epochs=1)])
except ValueError as error:
    print("REFUSED", error, "STEPS", int(model.optimizer.iterations.numpy()))
"""


def test_kstarts_independent_refuses_multi_worker_with_the_reason(run_python):
    out = run_python(MULTIWORKER)
    assert "REFUSED" in out and "multi-worker" in out
    assert "host memory" in out and out.strip().endswith("STEPS 0")


def test_kstarts_union_resumed_equals_uninterrupted(tmp_path):
    def callback():
        return ks.callbacks.KStarts(0.5, k=3, selection_epochs=2, fitness="both", seed=2,
                                    mode="union")

    straight = two_layers()
    expected = fit(straight, [callback()], epochs=3)
    first = two_layers()
    with pytest.warns(UserWarning, match="before the selection"):
        fit(first, [callback()], epochs=1)
    first.save(tmp_path / "mid_selection.keras")
    resumed = keras.saving.load_model(tmp_path / "mid_selection.keras")
    history = fit(resumed, [callback()], epochs=3, initial_epoch=1)
    assert history["kstarts_winner"] == expected["kstarts_winner"]
    for i in range(3):
        assert history[f"kstarts_fitness_{i}"] == pytest.approx(
            expected[f"kstarts_fitness_{i}"], rel=1e-5)
    for a, b in zip(straight.get_masks().values(), resumed.get_masks().values()):
        np.testing.assert_array_equal(a, b)


def test_dissipating_removes_least_moved_first_and_reaches_target():
    model = single()
    w0 = np.asarray(model.masked_weights[0].weight)
    rel = RNG.permutation(np.linspace(0.0, 0.3, 24)).reshape(w0.shape).astype("float32")
    callback = ks.callbacks.DissipatingGradients(0.5, epochs=3, fraction=0.1)
    history = fit(model, [Drift(w0, [rel]), callback], epochs=4)
    order = np.argsort(rel.ravel())
    slow = int((rel < 0.1).sum())  # 8 weights below the threshold, budget 12
    assert history["dissipating_removed"] == [slow, 0, 12 - slow, 0]
    mask = model.get_masks()[model.masked_weights[0].path].ravel()
    np.testing.assert_array_equal(mask[order[:12]], 0)
    np.testing.assert_array_equal(mask[order[12:]], 1)
    assert history["sparsity"] == pytest.approx([slow / 24, slow / 24, 0.5, 0.5])


class Drift(keras.callbacks.Callback):
    """At each epoch end, sets `w = w_0 * (1 + rel[epoch])` on the active weights."""

    def __init__(self, w0, rels):
        super().__init__()
        self.w0, self.rels = w0, rels

    def on_epoch_end(self, epoch, logs=None):
        mw = self.model.masked_weights[0]
        rel = self.rels[min(epoch, len(self.rels) - 1)]
        mw.weight.assign(self.w0 * (1 + rel) * np.asarray(mw.mask))


def test_dissipating_by_threshold_prunes_only_slow_weights_until_the_target():
    model = single()
    w0 = np.asarray(model.masked_weights[0].weight)
    # Weight i moves by rel_e[i] at epoch e: 5, then 9, then 14 weights are below 10%.
    order = RNG.permutation(24)
    rels = []
    for below in (5, 9, 14):
        rel = np.full(24, 0.5, "float32")
        rel[order[:below]] = np.linspace(0.0, 0.09, below)
        rels.append(rel.reshape(w0.shape))
    callback = ks.callbacks.DissipatingGradients(0.5, fraction=0.1, max_epochs=5)
    assert callback.scope == "global" and callback.fill is None
    history = fit(model, [Drift(w0, rels), callback], epochs=5)
    assert history["dissipating_removed"] == [5, 4, 3, 0, 0]  # budget 12 reached at epoch 2
    assert history["sparsity"] == pytest.approx([5 / 24, 9 / 24, 0.5, 0.5, 0.5])
    mask = model.get_masks()[model.masked_weights[0].path].ravel()
    assert int((mask == 0).sum()) == 12
    np.testing.assert_array_equal(mask[order[:12]], 0)  # every removed weight was below 10%


def test_dissipating_warns_with_the_sparsity_reached_when_the_cap_stops_it():
    model = single()
    w0 = np.asarray(model.masked_weights[0].weight)
    rel = np.full(24, 0.5, "float32")
    rel[:6] = 0.01  # only 6 weights ever below the threshold; the target needs 18
    callback = ks.callbacks.DissipatingGradients(0.75, fraction=0.1, max_epochs=2)
    with pytest.warns(UserWarning, match=r"cap of 2 pruning epochs ended at sparsity 0\.2500"):
        history = fit(model, [Drift(w0, [rel.reshape(w0.shape)]), callback], epochs=4)
    assert history["dissipating_removed"] == [6, 0, 0, 0]  # the cap ends pruning
    assert history["sparsity"] == pytest.approx([0.25] * 4)  # and the run went on


def test_dissipating_fill_last_equals_the_short_form():
    w0 = np.asarray(single().masked_weights[0].weight)
    rel = RNG.permutation(np.linspace(0.0, 0.3, 24)).reshape(w0.shape).astype("float32")
    masks = []
    for callback in (ks.callbacks.DissipatingGradients(0.5, epochs=3),
                     ks.callbacks.DissipatingGradients(0.5, max_epochs=3, fill="last")):
        model = single()
        history = fit(model, [Drift(w0, [rel]), callback], epochs=3)
        assert history["dissipating_removed"][-1] > 0 and history["sparsity"][-1] == 0.5
        masks.append(model.get_masks()[model.masked_weights[0].path])
    np.testing.assert_array_equal(*masks)


def test_dissipating_never_exceeds_the_target():
    model = single()
    w0 = np.asarray(model.masked_weights[0].weight)
    rel = RNG.permutation(np.linspace(0.0, 0.05, 24)).reshape(w0.shape).astype("float32")
    callback = ks.callbacks.DissipatingGradients(0.25, epochs=2, fraction=0.5)
    history = fit(model, [Drift(w0, [rel]), callback], epochs=2)
    assert history["dissipating_removed"] == [6, 0]  # all 24 are slow; only 6 may go
    mask = model.get_masks()[model.masked_weights[0].path].ravel()
    np.testing.assert_array_equal(mask[np.argsort(rel.ravel())[:6]], 0)


def test_dissipating_global_scope_and_resume(tmp_path):
    def callback():
        return ks.callbacks.DissipatingGradients(0.7, epochs=2, fraction=0.02, scope="global")

    straight = two_layers()
    fit(straight, [callback()], epochs=3)
    total = sum(mw.size for mw in straight.masked_weights)
    inactive = sum(int((m == 0).sum()) for m in straight.get_masks().values())
    assert inactive == num_inactive(total, 0.7)
    first = two_layers()
    fit(first, [callback()], epochs=1)
    first.save(tmp_path / "mid.keras")
    resumed = keras.saving.load_model(tmp_path / "mid.keras")
    fit(resumed, [callback()], epochs=3, initial_epoch=1)
    for a, b in zip(straight.get_masks().values(), resumed.get_masks().values()):
        np.testing.assert_array_equal(a, b)


def test_combined_kstarts_then_dissipating_to_the_target():
    model = two_layers()
    kstarts = ks.callbacks.KStarts(0.5, k=3, selection_epochs=1, mode="union",
                                   distribution="erk")
    dissipating = ks.callbacks.DissipatingGradients(0.8, epochs=2, fraction=0.05, start_epoch=1,
                                                    scope="layer")
    cands = candidates(kstarts, model)
    history = fit(model, [kstarts, dissipating], epochs=3)
    winner = cands[history["kstarts_winner"][0]]
    targets = ks.distributions.layer_sparsities(model, 0.8, "erk")
    masks = model.get_masks()
    for mw in model.masked_weights:
        assert int((masks[mw.path] == 0).sum()) == num_inactive(mw.size, targets[mw.path])
        assert np.all(masks[mw.path] <= winner[mw.path])  # pruned within the K-starts mask
        assert np.all(np.asarray(mw.weight)[masks[mw.path] == 0] == 0)
    removed = sum(int((winner[p] == 1).sum() - (masks[p] == 1).sum()) for p in masks)
    assert sum(history["dissipating_removed"]) == removed
    assert history["dissipating_removed"][0] == 0  # before start_epoch


def test_configs_round_trip():
    for callback in [
        ks.callbacks.KStarts(0.7, k=3, selection_epochs=1, fitness="both",
                             mode="independent", scope="global", seed=4),
        ks.callbacks.DissipatingGradients(0.9, epochs=2, fraction=0.2, start_epoch=1,
                                          distribution="uniform"),
    ]:
        clone = type(callback).from_config(callback.get_config())
        assert clone.get_config() == callback.get_config()
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(callback))
        assert restored.get_config() == callback.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: ks.callbacks.KStarts(0.5, k=0), "`k`"),
    (lambda: ks.callbacks.KStarts(1.0), "sparsity"),
    (lambda: ks.callbacks.KStarts(0.5, selection_epochs=0), "selection_epochs"),
    (lambda: ks.callbacks.KStarts(0.5, fitness="loss"), "fitness"),
    (lambda: ks.callbacks.KStarts(0.5, mode="parallel"), "mode"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, fraction=0.0), "fraction"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, fraction=1.0), "fraction"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, fraction=-0.2), "fraction"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, epochs=0), "epochs"),
    (lambda: ks.callbacks.DissipatingGradients(-0.5), "sparsity"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, max_epochs=0), "max_epochs"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, fill="first"), "fill"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, fill="last"), "max_epochs"),
    (lambda: ks.callbacks.DissipatingGradients(0.5, epochs=2, max_epochs=3), "epochs"),
])
def test_bad_arguments_raise_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_refuses_a_plain_model_before_changing_it():
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    plain.compile("sgd", LOSS)
    before = plain.get_weights()
    for callback in (ks.callbacks.KStarts(0.5), ks.callbacks.DissipatingGradients(0.5)):
        with pytest.raises(TypeError, match="SparseModel"):
            plain.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    for a, b in zip(before, plain.get_weights()):
        np.testing.assert_array_equal(a, b)


DISTRIBUTED = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
import keras_sparse as ks

X = np.random.RandomState(0).randn(32, 6).astype("float32")
Y = np.arange(32) % 4

def run(strategy, mode="union", epochs=3, start=1):
    keras.utils.set_random_seed(5)
    with strategy.scope():
        model = ks.sparsify(keras.Sequential([keras.Input((6,)),
            keras.layers.Dense(10, activation="relu"), keras.layers.Dense(4)]), 0.0)
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=[
        ks.callbacks.KStarts(0.4, k=3, selection_epochs=1, fitness="both", mode=mode),
        ks.callbacks.DissipatingGradients(0.6, epochs=1, start_epoch=start)]).history
    # Every variable but the per-replica dense-gradient buffers (sync on read).
    replicas_equal = {
        v.path: all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
            strategy.experimental_local_results(v.value),
            strategy.experimental_local_results(v.value)[1:]))
        for v in model.weights if not v.path.endswith("dense_grad")}
    masks = [np.asarray(m).tolist() for m in model.get_masks().values()]
    return {"history": history, "masks": masks, "replicas_equal": replicas_equal}

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(json.dumps({"mirrored": run(mirrored), "single": run(tf.distribute.get_strategy()),
                  "mirrored_independent": run(mirrored, "independent", 4, 3),
                  "single_independent": run(tf.distribute.get_strategy(), "independent", 4, 3)}))
"""


def test_replicas_agree_and_match_a_single_device(run_python):
    import json

    out = json.loads(run_python(DISTRIBUTED).strip().splitlines()[-1])
    for mode in ("", "_independent"):
        mirrored, single = out["mirrored" + mode], out["single" + mode]
        assert all(mirrored["replicas_equal"].values()), mirrored["replicas_equal"]
        assert mirrored["history"]["kstarts_winner"] == single["history"]["kstarts_winner"]
        for i in range(3):  # gradients summed from all-reduced (mean) batch gradients
            assert mirrored["history"][f"kstarts_fitness_{i}"] == pytest.approx(
                single["history"][f"kstarts_fitness_{i}"], rel=1e-4)
        assert (mirrored["history"]["dissipating_removed"]
                == single["history"]["dissipating_removed"])
        assert mirrored["masks"] == single["masks"]
