"""sparsify / strip / sparsity_report on Sequential, Functional, nested models."""

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.masks import num_inactive

to_np = keras.ops.convert_to_numpy


@keras.saving.register_keras_serializable(package="tests")
class Gate(keras.layers.Layer):
    """User layer opting in through get_prunable_weights."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), name="w")

    def call(self, x):
        return keras.ops.tanh(x @ self.w)

    def get_prunable_weights(self):
        return [self.w]


def _sequential():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="fc1"),
        keras.layers.Dense(3, name="fc2"),
    ], name="seq")


def _nested():
    """A Functional model holding a Sequential, a BatchNorm and a user layer."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(7, activation="relu", name="inner_a"),
        keras.layers.Dense(6, name="inner_b"),
    ], name="block")
    inputs = keras.Input((5,))
    x = block(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = Gate(name="gate")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs, name="nested")
    bn = model.get_layer("bn")
    bn.gamma.assign(np.linspace(0.5, 1.5, 6).astype("float32"))  # non-default
    bn.moving_mean.assign(np.linspace(-1, 1, 6).astype("float32"))
    return model


def _x(model, n=4, seed=1):
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer_of(model, path):
    return {mw.path: mw for mw in model.masked_weights}[path]


def test_sequential_becomes_sparse_model_keeping_weights():
    dense = _sequential()
    model = ks.sparsify(dense, 0.0)
    assert isinstance(model, ks.SparseModel)
    assert [type(mw.layer) for mw in model.masked_weights] == [
        ks.layers.SparseConv2D, ks.layers.SparseDense, ks.layers.SparseDense]
    for mask in model.get_masks().values():
        np.testing.assert_array_equal(mask, 1.0)
    x = _x(dense)
    np.testing.assert_allclose(to_np(model(x)), to_np(dense(x)), rtol=1e-6, atol=1e-6)
    # The input model is untouched and still plain.
    assert not any(isinstance(layer, ks.layers.SparseLayer) for layer in dense.layers)


def test_nested_functional_with_user_layer_and_batchnorm():
    dense = _nested()
    model = ks.sparsify(dense, 0.5, distribution="uniform")
    assert [mw.path for mw in model.masked_weights] == [
        "block/inner_a/kernel", "block/inner_b/kernel", "gate/w", "head/kernel"]
    assert isinstance(model.get_layer("block").get_layer("inner_a"), ks.layers.SparseDense)
    assert isinstance(_layer_of(model, "gate/w").layer, ks.layers.SparseWrapper)
    originals = {w.path: to_np(w) for w in dense.weights}
    for w in model.weights:
        if w.path.endswith("_mask"):
            continue
        mask = model.get_masks().get(w.path, 1.0)
        # Every weight kept (BatchNorm statistics too), masked ones folded to 0.
        np.testing.assert_array_equal(to_np(w), originals[w.path] * mask, err_msg=w.path)
    for mw in model.masked_weights:
        assert (to_np(mw.mask) == 0).sum() == num_inactive(mw.size, 0.5)


def test_custom_and_dense_layers_reach_nested_and_wrapped_layers():
    model = ks.sparsify(_nested(), 0.3, custom={"inner_b": 0.25, "gate": 0.75},
                        dense_layers=["inner_a"])
    report = {row["layer"]: row for row in ks.sparsity_report(model)}
    assert report["inner_a"]["sparsity"] == 0.0
    assert report["inner_b"]["active"] == 42 - num_inactive(42, 0.25)
    assert report["sparse_gate"]["active"] == 24 - num_inactive(24, 0.75)


def test_resnet50_backbone():
    keras.utils.set_random_seed(0)
    dense = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    prunable = [layer for layer in dense.layers
                if type(layer) in (keras.layers.Conv2D, keras.layers.Dense)]
    model = ks.sparsify(dense, 0.9, distribution="erk")
    rows = ks.sparsity_report(model)
    assert len(rows) - 1 == len(prunable) == 54
    targets = ks.distributions.layer_sparsities(dense, 0.9, "erk")
    for mw in model.masked_weights:
        assert (to_np(mw.mask) == 0).sum() == num_inactive(mw.size, targets[mw.path])
    assert rows[-1]["sparsity"] == pytest.approx(0.9, abs=len(rows) / rows[-1]["total"])
    out = model.predict(_x(model, n=2), verbose=0)
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_magnitude_init_keeps_the_largest_weights():
    dense = _sequential()
    model = ks.sparsify(dense, 0.7, distribution="uniform", mask_init="magnitude")
    for mw in model.masked_weights:
        original = np.abs(to_np(dense.get_layer(mw.layer.name).weights[0]))
        mask = to_np(mw.mask)
        assert 0 < mask.sum() < mask.size, mw.path
        assert original[mask == 1].min() >= original[mask == 0].max(), mw.path


def test_random_init_is_seeded_and_exact():
    dense = _sequential()
    targets = ks.distributions.layer_sparsities(dense, 0.7, "erk")
    first = ks.sparsify(dense, 0.7, seed=3).get_masks()
    again = ks.sparsify(dense, 0.7, seed=3).get_masks()
    other = ks.sparsify(dense, 0.7, seed=4).get_masks()
    for path, mask in first.items():
        assert (mask == 0).sum() == num_inactive(mask.size, targets[path])
        np.testing.assert_array_equal(mask, again[path])
    assert any(not np.array_equal(first[p], other[p]) for p in first)


def test_scale_init_divides_by_sqrt_density():
    dense = _sequential()
    plain = ks.sparsify(dense, 0.75, distribution="uniform", seed=1)
    scaled = ks.sparsify(dense, 0.75, distribution="uniform", seed=1, scale_init=True)
    for a, b in zip(plain.masked_weights, scaled.masked_weights):
        density = to_np(a.mask).mean()
        np.testing.assert_allclose(to_np(b.weight), to_np(a.weight) / np.sqrt(density),
                                   rtol=1e-6)


def test_strip_gives_plain_model_with_same_outputs():
    model = ks.sparsify(_nested(), 0.6)
    model.compile("adam", "mse")
    x = _x(model, n=16)
    model.fit(x, np.zeros((16, 2), "float32"), batch_size=8, verbose=0)
    plain = ks.strip(model)
    assert type(plain) is keras.Model or type(plain).__name__ == "Functional"
    flat = plain.get_layer("block").layers + plain.layers
    assert not any(isinstance(layer, (ks.layers.SparseLayer, ks.SparseModel)) for layer in flat)
    assert type(plain.get_layer("gate")) is Gate
    assert not any(w.path.endswith("_mask") for w in plain.weights)
    np.testing.assert_allclose(to_np(plain(x)), to_np(model(x)), atol=1e-6)
    # The masks are folded in: the stripped kernels are exactly as sparse.
    kernels = {w.path: to_np(w) for w in plain.weights}
    for path, mask in model.get_masks().items():
        np.testing.assert_array_equal(kernels[path][mask == 0], 0.0)


def test_sparsity_report_rows():
    model = ks.sparsify(_sequential(), 0.8, distribution="uniform")
    rows = ks.sparsity_report(model)
    assert [r["layer"] for r in rows] == ["conv", "fc1", "fc2", "total"]
    conv = rows[0]
    assert conv["weight"] == "kernel" and conv["shape"] == (3, 3, 2, 4)
    assert conv["total"] == 72 and conv["active"] == 72 - num_inactive(72, 0.8)
    assert conv["sparsity"] == pytest.approx(1 - conv["active"] / 72)
    total = rows[-1]
    assert total["total"] == sum(r["total"] for r in rows[:-1])
    assert total["active"] == sum(int(m.sum()) for m in model.get_masks().values())


def test_global_scope_ranks_all_layers_together():
    """One ranking whatever `distribution` says; pinned layers keep their count."""
    dense = _sequential()
    # ERK alone would keep the small last layer dense at this sparsity.
    assert ks.distributions.layer_sparsities(dense, 0.5, "erk")["seq/fc2/kernel"] == 0.0
    model = ks.sparsify(dense, 0.5, mask_init="magnitude", scope="global")
    weights = {mw.path: np.abs(to_np(dense.get_layer(mw.layer.name).weights[0]))
               for mw in model.masked_weights}
    flat = np.concatenate([w.ravel() for w in weights.values()])
    threshold = np.sort(flat)[num_inactive(flat.size, 0.5)]
    for path, mask in model.get_masks().items():
        np.testing.assert_array_equal(mask, weights[path] >= threshold, err_msg=path)
    pinned = ks.sparsify(dense, 0.5, mask_init="magnitude", scope="global",
                         dense_layers=["conv"], custom={"fc2": 0.25})
    masks = pinned.get_masks()
    assert masks["seq/conv/kernel"].all()
    assert (masks["seq/fc2/kernel"] == 0).sum() == num_inactive(24, 0.25)
    assert sum((m == 0).sum() for m in masks.values()) == num_inactive(flat.size, 0.5)


def test_weights_copied_by_position_for_layers_with_repeated_names():
    # MultiHeadAttention holds several variables all called "kernel"/"bias".
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    dense = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    model = ks.sparsify(dense, 0.0)
    x = _x(dense)
    np.testing.assert_allclose(to_np(model(x)), to_np(dense(x)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_np(ks.strip(model)(x)), to_np(dense(x)), rtol=1e-6, atol=1e-6)
