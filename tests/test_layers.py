"""Sparse layers: masked forward pass, exact sparsity after training, slots."""

import copy

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.masks import num_inactive
from keras_sparse.optimizer_slots import slots_for


@keras.saving.register_keras_serializable(package="tests")
class Affine(keras.layers.Layer):
    """A user layer opting in with get_prunable_weights (no output shape)."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="ones", name="b")

    def call(self, x):
        return x @ self.w + self.b

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# kind -> (input shape, dense layer, sparse class, masked weight names)
KINDS = {
    "Dense": ((6,), lambda: keras.layers.Dense(5), ks.layers.SparseDense, ["kernel"]),
    "Conv1D": ((6, 3), lambda: keras.layers.Conv1D(4, 3), ks.layers.SparseConv1D, ["kernel"]),
    "Conv2D": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3), ks.layers.SparseConv2D, ["kernel"]),
    "Conv3D": ((4, 4, 4, 2), lambda: keras.layers.Conv3D(3, 2), ks.layers.SparseConv3D,
               ["kernel"]),
    "DepthwiseConv2D": ((5, 5, 3), lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
                        ks.layers.SparseDepthwiseConv2D, ["kernel"]),
    "SeparableConv2D": ((5, 5, 3), lambda: keras.layers.SeparableConv2D(4, 3),
                        ks.layers.SparseSeparableConv2D, ["pointwise_kernel"]),
    "EinsumDense": ((4, 6), lambda: keras.layers.EinsumDense("abc,cd->abd", (4, 5),
                                                             bias_axes="d"),
                    ks.layers.SparseEinsumDense, ["kernel"]),
    "SparseWrapper": ((6,), lambda: Affine(), ks.layers.SparseWrapper, ["w"]),
}

OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.05),
    "adamw": lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
}


def _sparse_model(kinds, sparsity=0.5, seed=0):
    """One branch per layer kind (one input and output each), sparsified."""
    keras.utils.set_random_seed(seed)
    inputs = [keras.Input(KINDS[k][0], name=f"in_{k}") for k in kinds]
    outputs = [KINDS[k][1]()(x) for k, x in zip(kinds, inputs)]
    dense = keras.Model(inputs, outputs)
    return ks.sparsify(dense, sparsity, distribution="uniform", seed=seed)


def _data(model, n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(n,) + t.shape[1:]).astype("float32") for t in model.inputs]
    y = [rng.normal(size=(n,) + t.shape[1:]).astype("float32") for t in model.outputs]
    return x, y


def assert_sparse_invariants(model, sparsity=None):
    """Exact zero count, zero inactive weights, zero slots at inactive spots."""
    assert model.masked_weights
    for mw in model.masked_weights:
        mask = keras.ops.convert_to_numpy(mw.mask)
        weight = keras.ops.convert_to_numpy(mw.weight)
        inactive = mask == 0
        if sparsity is not None:
            assert inactive.sum() == num_inactive(mw.size, sparsity), mw.path
        np.testing.assert_array_equal(weight[inactive], 0.0, err_msg=mw.path)
        slots = slots_for(model.optimizer, mw.weight)
        if model.optimizer is not None and model.optimizer.built:
            assert slots, f"no optimizer slots found for {mw.path}"
        for slot in slots:
            values = keras.ops.convert_to_numpy(slot)
            np.testing.assert_array_equal(values[inactive], 0.0, err_msg=slot.name)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fit_keeps_exact_sparsity_weights_and_slots(optimizer):
    # Every layer kind in one model (one branch each): one trace per optimizer.
    kinds = sorted(KINDS)
    model = _sparse_model(kinds)
    weights = model.masked_weights
    assert [mw.name for mw in weights] == [n for k in kinds for n in KINDS[k][3]]
    for kind, mw in zip(kinds, weights):
        assert isinstance(mw.layer, KINDS[kind][2]), kind
    before = [keras.ops.convert_to_numpy(mw.weight) for mw in weights]
    model.compile(OPTIMIZERS[optimizer](), "mse")
    x, y = _data(model)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 4
    assert_sparse_invariants(model, sparsity=0.5)
    for mw, old in zip(weights, before):
        active = keras.ops.convert_to_numpy(mw.mask) == 1
        # Training really moved the active weights.
        assert not np.allclose(keras.ops.convert_to_numpy(mw.weight)[active], old[active]), mw.path


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forward_uses_kernel_times_mask_and_config_round_trips(kind):
    model = _sparse_model([kind], sparsity=0.6)
    layer = model.masked_weights[0].layer
    (x,), _ = _data(model, n=3)
    base = KINDS[kind][1]()
    base(x)  # build
    # Same weights with the mask folded in: the base layer gives the same output.
    folded = []
    masks = {id(mw.weight): mw.mask for mw in model.masked_weights}
    plain = [w for w in layer.weights if not w.path.endswith("_mask")]
    for w in plain:
        value = keras.ops.convert_to_numpy(w)
        if id(w) in masks:
            value = value * keras.ops.convert_to_numpy(masks[id(w)])
        folded.append(value)
    base.set_weights(folded)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(base(x)),
        rtol=1e-6, atol=1e-6)
    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))  # Wrapper pops keys
    assert clone.get_config() == config


def test_public_attribute_is_masked_and_bias_is_not():
    layer = ks.layers.SparseDense(3, bias_initializer="ones")
    layer.build((None, 4))
    mask = np.zeros((4, 3), "float32")
    mask[0] = 1.0
    layer.kernel_mask.assign(mask)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_array_equal(kernel[1:], 0.0)
    np.testing.assert_array_equal(kernel[0], keras.ops.convert_to_numpy(layer._kernel)[0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.bias), 1.0)
    assert [w.path for w in layer.get_prunable_weights()] == [layer._kernel.path]
    assert not layer.kernel_mask.trainable
    assert layer.kernel_mask.dtype == layer._kernel.dtype
    # Input [1, 0, 0, 0] meets the only active row.
    out = layer(np.eye(4, dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out)[1:], 1.0)


def test_wrapper_needs_get_prunable_weights():
    with pytest.raises(TypeError, match="get_prunable_weights"):
        ks.layers.SparseWrapper(keras.layers.Flatten())


@pytest.mark.parametrize("optimizer", ["rmsprop", "adagrad", "ftrl", "lion", "nadam"])
def test_other_optimizers_stay_exact_after_a_mask_change(optimizer):
    """Dropping then regrowing mid-training: weights and slots stay consistent.

    Adagrad and Ftrl accumulators are reset to `initial_accumulator_value`
    (their fresh value), not 0: a zero Ftrl accumulator would give NaN.
    """
    model = _sparse_model(["Dense"])
    model.compile(optimizer, "mse")
    x, y = _data(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    mw = model.masked_weights[0]
    mask = keras.ops.convert_to_numpy(mw.mask).copy()
    flat = mask.reshape(-1)
    drop, grow = np.flatnonzero(flat == 1)[:3], np.flatnonzero(flat == 0)[:3]
    flat[drop], flat[grow] = 0.0, 1.0
    model.set_masks({mw.path: mask})
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    weight = keras.ops.convert_to_numpy(mw.weight)
    assert np.all(np.isfinite(weight))
    np.testing.assert_array_equal(weight[mask == 0], 0.0)
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    fresh = getattr(inner, "initial_accumulator_value", 0.0)
    for slot in slots_for(model.optimizer, mw.weight):
        values = keras.ops.convert_to_numpy(slot)
        expected = fresh if slot.name.endswith("_accumulator") else 0.0
        np.testing.assert_allclose(values[mask == 0], expected, err_msg=slot.name)
