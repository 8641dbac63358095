"""Pruning at initialization: SNIP, GraSP, SynFlow, random, magnitude, lottery reset."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.masks import num_inactive

RNG = np.random.RandomState(0)
X = RNG.randn(40, 6, 6, 1).astype("float32")
Y = np.arange(40) % 4
METHODS = ["random", "magnitude", "snip", "grasp", "synflow"]


def convnet():
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(4),
    ])
    return ks.sparsify(dense, 0.0)


def inactive(model):
    return {p: int((m == 0).sum()) for p, m in model.get_masks().items()}


@pytest.mark.parametrize("name", METHODS)
def test_exact_zero_counts_per_layer_and_global(name):
    method = getattr(ks.pruning, name)
    extra = {"rounds": 10} if name == "synflow" else {}
    model = convnet()
    before = {v.path: np.asarray(v) for v in model.weights}
    method(model, 0.7, distribution="erk", data=(X, Y), **extra)
    targets = ks.distributions.layer_sparsities(model, 0.7, "erk")
    for mw in model.masked_weights:
        assert inactive(model)[mw.path] == num_inactive(mw.size, targets[mw.path])
        mask = np.asarray(mw.mask)
        np.testing.assert_array_equal(np.asarray(mw.weight), before[mw.path] * mask)
    prunable = {mw.path for mw in model.masked_weights}
    for v in model.weights:  # biases, BatchNorm statistics: untouched
        if v.path not in prunable and not v.path.endswith("_mask"):
            np.testing.assert_array_equal(np.asarray(v), before[v.path])
    model = convnet()
    method(model, 0.6, scope="global",
           data=tf.data.Dataset.from_tensor_slices((X, Y)).batch(7), **extra)
    total = sum(mw.size for mw in model.masked_weights)
    assert sum(inactive(model).values()) == num_inactive(total, 0.6)


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_reachable_from_sparsify(name):
    keras.utils.set_random_seed(1)
    dense = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10), keras.layers.Dense(4)])
    model = ks.sparsify(dense, 0.8, distribution="uniform", mask_init=name, data=(X, Y))
    for mw in model.masked_weights:
        assert inactive(model)[mw.path] == num_inactive(mw.size, 0.8)


def linear_model(units=(5, 3), dtype="float32"):
    keras.utils.set_random_seed(2)
    layers = [keras.Input((4,), dtype=dtype)]
    layers += [keras.layers.Dense(u, use_bias=False, dtype=dtype) for u in units]
    return ks.sparsify(keras.Sequential(layers), 0.0)


def test_snip_scores_match_a_hand_computation():
    model = linear_model(units=(3,))
    x, y = RNG.randn(120, 4).astype("float32"), RNG.randint(0, 3, 120)
    w = np.asarray(model.masked_weights[0].weight, dtype=np.float64)
    xs, ys = x[:100].astype(np.float64), y[:100]  # the first 100 examples
    logits = xs @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = xs.T @ (p - np.eye(3)[ys]) / len(xs)  # mean cross-entropy from logits
    scores = ks.pruning.snip_scores(model, (x, y))
    np.testing.assert_allclose(scores[model.masked_weights[0].path], np.abs(grad * w),
                               rtol=1e-4, atol=1e-7)
    ks.pruning.snip(model, 0.5, data=(x, y))
    keep = np.abs(grad * w) >= np.sort(np.abs(grad * w).ravel())[6]
    np.testing.assert_array_equal(model.get_masks()[model.masked_weights[0].path], keep)


def test_snip_uses_the_compiled_loss():
    model = linear_model(units=(3,))
    model.compile("sgd", loss=lambda y_true, y_pred: tf.reduce_mean(y_pred ** 2))
    x, y = RNG.randn(100, 4).astype("float32"), RNG.randint(0, 3, 100)
    w = np.asarray(model.masked_weights[0].weight, dtype=np.float64)
    grad = 2 * x.T.astype(np.float64) @ (x @ w) / (100 * 3)
    scores = ks.pruning.snip_scores(model, (x, y))
    np.testing.assert_allclose(scores[model.masked_weights[0].path], np.abs(grad * w),
                               rtol=1e-4, atol=1e-7)


def test_snip_on_a_masked_model_keeps_pruned_weights_pruned():
    model = convnet()
    ks.pruning.random(model, 0.5, seed=3)
    before = model.get_masks()
    ks.pruning.snip(model, 0.8, data=(X, Y))
    for path, mask in model.get_masks().items():
        assert np.all(mask <= before[path])


def test_grasp_hessian_gradient_product_matches_finite_differences():
    model = linear_model(units=(5, 3), dtype="float64")
    x = RNG.randn(30, 4)
    y = np.arange(30) % 3
    # Keras losses compute in float32 unless told; float64 makes the differences exact enough.
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    scores = ks.pruning.grasp_scores(model, (x, y), examples_per_class=4, batch_size=5,
                                     loss=loss_fn)
    # The examples GraSP uses: the first 4 of each class, in data order.
    rows = np.sort(np.concatenate([np.flatnonzero(y == c)[:4] for c in range(3)]))
    xs, ys = tf.constant(x[rows]), tf.constant(y[rows])
    weights = [mw.weight for mw in model.masked_weights]

    def grads(values):
        for variable, value in zip(weights, values):
            variable.assign(value)
        with tf.GradientTape() as tape:
            loss = loss_fn(ys, model(xs) / 200.0)
        return [g.numpy() for g in tape.gradient(loss, [w.value for w in weights])]

    w0 = [np.asarray(w) for w in weights]
    g = grads(w0)
    eps = 1e-3
    plus = grads([w + eps * d for w, d in zip(w0, g)])
    minus = grads([w - eps * d for w, d in zip(w0, g)])
    grads(w0)
    for mw, w, a, b in zip(model.masked_weights, w0, plus, minus):
        hg = (a - b) / (2 * eps)
        assert np.abs(hg).max() > 0
        np.testing.assert_allclose(scores[mw.path], -w * hg, rtol=1e-5,
                                   atol=1e-6 * np.abs(w * hg).max())


def test_grasp_removes_the_largest_scores():
    model = linear_model()
    scores = ks.pruning.grasp_scores(model, (X.reshape(40, -1)[:, :4], Y % 3))
    ks.pruning.grasp(model, 0.5, distribution="uniform", data=(X.reshape(40, -1)[:, :4], Y % 3))
    for mw in model.masked_weights:
        s = np.asarray(scores[mw.path])
        mask = np.asarray(mw.mask)
        assert s[mask == 0].min() >= s[mask == 1].max()


def test_synflow_needs_no_data_and_matches_a_direct_computation():
    model = linear_model(units=(5, 3))
    w1, w2 = (np.asarray(mw.weight) for mw in model.masked_weights)
    # R = 1^T |W1| |W2| 1: dR/d|W1|[i, j] = sum_k |W2|[j, k], dR/d|W2|[j, k] = sum_i |W1|[i, j]
    expected1 = np.abs(w1) * np.abs(w2).sum(1)[None, :]
    expected2 = np.abs(w2) * np.abs(w1).sum(0)[:, None]
    scores = ks.pruning.synflow_scores(model)
    p1, p2 = (mw.path for mw in model.masked_weights)
    np.testing.assert_allclose(scores[p1], expected1, rtol=1e-5)
    np.testing.assert_allclose(scores[p2], expected2, rtol=1e-5)
    # One round on the global ranking: keep the top scores; signs restored.
    ks.pruning.synflow(model, 0.5, scope="global", rounds=1)
    flat = np.concatenate([expected1.ravel(), expected2.ravel()])
    threshold = np.sort(flat)[num_inactive(flat.size, 0.5)]
    np.testing.assert_array_equal(model.get_masks()[p1], expected1 >= threshold)
    np.testing.assert_array_equal(model.get_masks()[p2], expected2 >= threshold)
    np.testing.assert_array_equal(np.asarray(model.masked_weights[0].weight),
                                  w1 * (expected1 >= threshold))


def test_synflow_iterates_to_exact_sparsity_and_restores_weights():
    model = convnet()
    before = {v.path: np.asarray(v) for v in model.weights}
    ks.pruning.synflow(model, 0.9, rounds=100)
    targets = ks.distributions.layer_sparsities(model, 0.9, "erk")
    masks = model.get_masks()
    for mw in model.masked_weights:
        assert inactive(model)[mw.path] == num_inactive(mw.size, targets[mw.path])
        np.testing.assert_array_equal(np.asarray(mw.weight), before[mw.path] * masks[mw.path])
    for v in model.weights:  # BatchNorm statistics and biases keep their signs
        if v.path not in masks and not v.path.endswith("_mask"):
            np.testing.assert_array_equal(np.asarray(v), before[v.path])


def test_lottery_reset_keeps_masks_and_restores_masked_initial_values():
    model = convnet()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = model.get_weights()
    initial_by_path = {v.path: np.asarray(v) for v in model.weights}
    model.fit(X, Y, epochs=1, batch_size=10, verbose=0)
    ks.pruning.magnitude(model, 0.8)
    masks = model.get_masks()
    trained = model.get_weights()
    for form in (initial, initial_by_path):
        model.set_weights(trained)
        ks.pruning.lottery_reset(model, form)
        for path, mask in model.get_masks().items():
            np.testing.assert_array_equal(mask, masks[path])
        for v in model.weights:
            expected = initial_by_path[v.path]
            if v.path in masks:
                expected = expected * masks[v.path]
            elif v.path.endswith("_mask"):
                expected = masks[v.path[: -len("_mask")]]
            np.testing.assert_array_equal(np.asarray(v), expected)


def test_lottery_reset_bad_input_changes_nothing():
    model = convnet()
    weights = model.get_weights()
    with pytest.raises(ValueError, match="initial_weights"):
        ks.pruning.lottery_reset(model, weights[:-1])
    bad = {mw.path: np.zeros((2, 2)) for mw in model.masked_weights}
    with pytest.raises(ValueError, match="shape"):
        ks.pruning.lottery_reset(model, bad)
    with pytest.raises(ValueError, match="unknown"):
        ks.pruning.lottery_reset(model, {"nope/kernel": np.zeros(3)})
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", METHODS)
def test_bad_input_raises_and_leaves_masks_unchanged(name):
    method = getattr(ks.pruning, name)
    model = convnet()
    ks.pruning.random(model, 0.3, seed=5)
    before = model.get_masks()
    for sparsity in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            method(model, sparsity, data=(X, Y))
    with pytest.raises(ValueError, match="scope"):
        method(model, 0.5, scope="model", data=(X, Y))
    if name in ("snip", "grasp"):
        with pytest.raises(ValueError, match="data"):
            method(model, 0.5, data=(X[:0], Y[:0]))
        with pytest.raises(ValueError, match="data"):
            method(model, 0.5, data=tf.data.Dataset.from_tensor_slices((X, Y)).batch(4).take(0))
        with pytest.raises(ValueError, match="data"):
            method(model, 0.5)
    for path, mask in model.get_masks().items():
        np.testing.assert_array_equal(mask, before[path])
