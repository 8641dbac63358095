"""One contract every sparse layer kind keeps (in the manner of Keras'
`run_layer_test`): build, call, mask shape and dtype, config round trip,
`.keras` save and load, strip equality, mixed precision, refused LoRA and
quantization."""

import copy

import keras
import numpy as np
import pytest

import keras_sparse as ks

to_np = keras.ops.convert_to_numpy


@keras.saving.register_keras_serializable(package="tests_contract")
class Scale(keras.layers.Layer):
    """A user layer that opts in with get_prunable_weights."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 5), name="w")

    def call(self, x):
        return x @ keras.ops.cast(self.w, x.dtype)

    def get_prunable_weights(self):
        return [self.w]


# kind -> (input shape, plain layer, sparse class, masked weight names)
KINDS = {
    "Dense": ((6,), lambda: keras.layers.Dense(5), ks.layers.SparseDense, ["kernel"]),
    "Conv1D": ((6, 3), lambda: keras.layers.Conv1D(4, 3), ks.layers.SparseConv1D, ["kernel"]),
    "Conv2D": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3), ks.layers.SparseConv2D,
               ["kernel"]),
    "Conv3D": ((4, 4, 4, 2), lambda: keras.layers.Conv3D(3, 2), ks.layers.SparseConv3D,
               ["kernel"]),
    "DepthwiseConv2D": ((5, 5, 3), lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
                        ks.layers.SparseDepthwiseConv2D, ["kernel"]),
    "SeparableConv2D": ((5, 5, 3), lambda: keras.layers.SeparableConv2D(4, 3),
                        ks.layers.SparseSeparableConv2D, ["pointwise_kernel"]),
    "EinsumDense": ((4, 6), lambda: keras.layers.EinsumDense("abc,cd->abd", (4, 5),
                                                             bias_axes="d"),
                    ks.layers.SparseEinsumDense, ["kernel"]),
    "SparseWrapper": ((6,), Scale, ks.layers.SparseWrapper, ["w"]),
}


def test_every_sparse_class_is_covered():
    covered = {kind[2] for kind in KINDS.values()}
    assert set(ks.layers.SPARSE_CLASSES.values()) | {ks.layers.SparseWrapper} == covered


def _sparse(kind, seed=0):
    shape, plain, _, _ = KINDS[kind]
    keras.utils.set_random_seed(seed)
    dense = keras.Sequential([keras.Input(shape), plain()], name=f"net_{kind.lower()}")
    return ks.sparsify(dense, 0.5, distribution="uniform", seed=seed)


def _without_build_config(config):
    # A wrapped layer's config records its build shape once it was built.
    if isinstance(config, dict):
        return {k: _without_build_config(v) for k, v in config.items() if k != "build_config"}
    return config


def _x(kind, n=3):
    return np.random.default_rng(1).normal(size=(n,) + KINDS[kind][0]).astype("float32")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_contract(kind, tmp_path):
    _, _, cls, names = KINDS[kind]
    model = _sparse(kind)
    layer = model.layers[-1]
    x = _x(kind)

    # build: one mask per masked weight, same shape and dtype, not trainable.
    assert type(layer) is cls and layer.built
    weights = layer.get_prunable_weights()
    assert [w.path.split("/")[-1] for w in weights] == names
    for weight, mask in zip(weights, layer.get_masks()):
        assert mask.shape == weight.shape and mask.dtype == weight.dtype
        assert not mask.trainable
        assert id(mask) not in {id(v) for v in model.trainable_weights}
        values = to_np(mask)
        assert set(np.unique(values)) == {0.0, 1.0}
        assert np.all(to_np(weight)[values == 0] == 0)

    # call: the output of the plain layer with the mask folded in.
    plain = ks.strip(model)
    expected = to_np(plain(x))
    np.testing.assert_allclose(to_np(model(x)), expected, rtol=1e-5, atol=1e-6)

    # strip: the plain Keras kind, kernels folded, no mask variable left.
    base = type(plain.layers[-1])
    assert not isinstance(plain.layers[-1], ks.layers.SparseLayer)
    assert base is (Scale if kind == "SparseWrapper" else
                    next(k for k, v in ks.layers.SPARSE_CLASSES.items() if v is cls))
    assert not any(v.path.endswith("_mask") for v in plain.weights)

    # get_config round trip (also through Keras' registered-name serialization).
    config = layer.get_config()
    # (a copy: Keras' Wrapper.from_config pops from the dict it is given)
    assert _without_build_config(cls.from_config(copy.deepcopy(config)).get_config()) == \
        _without_build_config(config)
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"keras_sparse>{cls.__name__}"
    assert type(keras.saving.deserialize_keras_object(serialized)) is cls

    # save and load: same masks, weights and outputs.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ks.SparseModel)
    for old, new in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(to_np(old), to_np(new), err_msg=old.path)
    for old, new in zip(model.get_masks().values(), loaded.get_masks().values()):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_allclose(to_np(loaded(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_contract_mixed_float16(kind, mixed_float16):
    model = _sparse(kind)
    layer = model.layers[-1]
    for weight, mask in zip(layer.get_prunable_weights(), layer.get_masks()):
        assert weight.dtype == "float32" and mask.dtype == "float32"  # the variable dtype
    x = _x(kind)
    y = model(x)
    if kind != "SparseWrapper":  # the user layer computes in its input dtype
        assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_allclose(to_np(y).astype("float32"), to_np(ks.strip(model)(x)),
                               rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"SparseWrapper"}))
def test_quantize_and_lora_are_refused(kind):
    model = _sparse(kind)
    layer = model.layers[-1]
    before = [to_np(v).copy() for v in model.weights]
    with pytest.raises(TypeError, match=r"quantize\(\) is not supported on sparse layers"):
        layer.quantize("int8")
    with pytest.raises(TypeError, match=r"quantize\(\) is not supported"):
        model.quantize("int8")
    with pytest.raises(TypeError, match=r"enable_lora\(\) is not supported"):
        layer.enable_lora(2)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, to_np(new))
    # The way out the message names: strip first, then the plain layer can.
    plain = ks.strip(model)
    if hasattr(plain.layers[-1], "enable_lora") and kind.startswith(("Dense", "Conv", "Einsum")):
        plain.layers[-1].enable_lora(2)
