"""Bad input raises a clear TypeError/ValueError, naming the argument, and changes nothing."""

import keras
import numpy as np
import pytest

import keras_sparse as ks

to_np = keras.ops.convert_to_numpy


def _dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc2")(x), name="net")


def _state(model):
    return [(w.path, to_np(w).copy()) for w in model.weights], [type(layer) for layer in model.layers]


def _assert_same(model, state):
    weights, kinds = state
    assert [type(layer) for layer in model.layers] == kinds
    assert [p for p, _ in weights] == [w.path for w in model.weights]
    for (path, old), new in zip(weights, model.weights):
        np.testing.assert_array_equal(old, to_np(new), err_msg=path)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(sparsity=1.0), ValueError, r"`sparsity` must be in \[0, 1\); got 1.0"),
    (dict(sparsity=-0.1), ValueError, r"`sparsity` must be in \[0, 1\); got -0.1"),
    (dict(sparsity=float("nan")), ValueError, r"`sparsity` must be in \[0, 1\)"),
    (dict(sparsity="high"), TypeError, r"`sparsity` must be a number in \[0, 1\); got 'high'"),
    (dict(distribution="erdos"), ValueError, r"`distribution` must be one of .*'erk'.*'erdos'"),
    (dict(mask_init="lottery"), ValueError, r"`mask_init` must be one of .*'random'.*'lottery'"),
    (dict(custom={"fc9": 0.5}), ValueError, r"`custom` names 'fc9'.*not a layer.*fc1"),
    (dict(custom={"bn": 0.5}), TypeError, r"`custom` names layer 'bn' of kind "
                                           r"BatchNormalization, which cannot be made sparse"),
    (dict(custom={"fc1": 1.5}), ValueError, r"`custom\['fc1'\]` must be in \[0, 1\); got 1.5"),
    (dict(dense_layers=["fc9"]), ValueError, r"`dense_layers` names 'fc9'"),
    (dict(scope="everywhere"), ValueError, r"`scope` must be one of"),
])
def test_sparsify_rejects_bad_arguments_and_keeps_the_model(kwargs, error, message):
    model = _dense_model()
    state = _state(model)
    kwargs = {"sparsity": 0.5, **kwargs}
    with pytest.raises(error, match=message):
        ks.sparsify(model, **kwargs)
    _assert_same(model, state)


def test_sparsify_refuses_sparse_and_non_models():
    sparse = ks.sparsify(_dense_model(), 0.5)
    state = _state(sparse)
    with pytest.raises(ValueError, match="already sparse"):
        ks.sparsify(sparse, 0.5)
    _assert_same(sparse, state)
    inputs = keras.Input((4,))
    mixed = keras.Model(inputs, ks.layers.SparseDense(2)(inputs))  # plain Model, sparse layer
    with pytest.raises(ValueError, match="already sparse"):
        ks.sparsify(mixed, 0.5)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        ks.sparsify(keras.layers.Dense(3), 0.5)
    with pytest.raises(ValueError, match="defined inputs"):
        ks.sparsify(keras.Sequential([keras.layers.Dense(3)]), 0.5)


def test_set_masks_validates_everything_before_assigning():
    model = ks.sparsify(_dense_model(), 0.5)
    model.compile("adam", "mse")
    model.fit(np.ones((4, 4), "float32"), np.ones((4, 2), "float32"), verbose=0)
    state = _state(model)
    good = np.ones((4, 6), "float32")
    bad_cases = [
        ({"fc1/kernel": good, "fc2/kernel": np.ones((2, 6))}, r"'fc2/kernel' has shape \(2, 6\); "
                                                              r"expected \(6, 2\)"),
        ({"fc1/kernel": good, "fc2/kernel": np.full((6, 2), 0.5)}, r"only 0 and 1; found \[0.5"),
        ({"fc1/kernel": good, "fc2/kernel": np.full((6, 2), np.nan)}, r"only 0 and 1"),
        ({"fc1/kernel": good, "fc3/kernel": np.ones((6, 2))},
         r"unknown prunable weight paths \['fc3/kernel'\]"),
        ([good], r"got 1 masks for 2 prunable weights"),
    ]
    for masks, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            model.set_masks(masks)
        _assert_same(model, state)


def test_sparse_step_required_by_rules():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, ks.layers.SparseDense(2)(inputs))
    plain.compile("sgd", "mse")
    state = _state(plain)
    with pytest.raises(TypeError, match=r"Static needs a keras_sparse.SparseModel.*got Functional"):
        plain.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0, callbacks=[ks.callbacks.Static()])
    _assert_same(plain, state)
    assert int(plain.optimizer.iterations) == 0
    with pytest.raises(TypeError, match="SparseModel"):
        ks.pruning.magnitude(plain, 0.5)


def test_mask_state_cannot_shadow_layer_attributes():
    layer = ks.layers.SparseDense(3)
    layer.build((None, 4))
    for name in ("mask", "initializer", "constraint"):
        with pytest.raises(ValueError, match=rf"`name`='{name}' would shadow \['kernel_{name}'\]"):
            layer.add_mask_state(name)
    assert layer.get_config().get("mask_states") is None
    layer.add_mask_state("count")
    assert layer.kernel_count.shape == (4, 3)
