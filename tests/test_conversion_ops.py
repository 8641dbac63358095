"""sparsify / strip on Functional graphs with operation nodes (`+`, keras.ops).

The full `keras.applications` sweep is `python -m benchmarks.applications_sweep`;
here a representative set runs through the same check.
"""

import keras
import numpy as np
import keras_sparse as ks
from benchmarks.applications_sweep import check

to_np = keras.ops.convert_to_numpy


def _train_strip_compare(dense, x, y):
    """Sparsify at 50%, one training step, strip: outputs must agree."""
    sparse = ks.sparsify(dense, 0.5)
    sparse.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {p: m.copy() for p, m in sparse.get_masks().items()}
    sparse.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    for mw in sparse.masked_weights:  # inactive weights stayed exactly 0
        inactive = to_np(mw.mask) == 0
        assert inactive.any() and np.all(to_np(mw.weight)[inactive] == 0.0)
        np.testing.assert_array_equal(to_np(mw.mask), before[mw.path])
    plain = ks.strip(sparse)
    assert not ks.conversion.is_sparse(plain)
    np.testing.assert_allclose(to_np(plain(x)), to_np(sparse(x)), atol=1e-5)
    return sparse, plain


def _data(features=32, n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, 10, (n,))


def test_sparsify_graph_with_tensor_addition():
    keras.utils.set_random_seed(0)
    i = keras.Input((32,))
    x = keras.layers.Dense(32, name="fc1")(i) + i
    dense = keras.Model(i, keras.layers.Dense(10, name="fc2")(x))
    sparse, plain = _train_strip_compare(dense, *_data())
    assert sorted(sparse.get_masks()) == ["fc1/kernel", "fc2/kernel"]
    # The sparse model keeps the dense model's weights (before training).
    fresh = ks.sparsify(dense, 0.5)
    for mw in fresh.masked_weights:
        original = to_np(dense.get_layer(mw.layer.name).kernel)
        np.testing.assert_array_equal(to_np(mw.weight), original * to_np(mw.mask))


def test_sparsify_graph_with_keras_ops_calls():
    keras.utils.set_random_seed(0)
    i = keras.Input((32,))
    h = keras.layers.Dense(16, name="fc1")(i)
    x = keras.ops.concatenate([keras.ops.relu(h), keras.ops.tanh(h)], axis=-1)
    x = keras.ops.sum(keras.ops.expand_dims(x, 1), axis=1) * 0.5
    x = keras.layers.BatchNormalization()(x)
    dense = keras.Model(i, keras.layers.Dense(10, name="fc2")(x))
    x_data, y_data = _data()
    sparse, plain = _train_strip_compare(dense, x_data, y_data)
    # The operation nodes survive the round trip, in order.
    ops_of = lambda m: [type(o).__name__ for o in m.operations if not isinstance(o, keras.layers.Layer)]
    assert ops_of(sparse) == ops_of(plain) == ops_of(dense)
    assert "Concatenate" in ops_of(dense)


def test_sparsify_nested_model_with_operation_nodes():
    keras.utils.set_random_seed(0)
    i = keras.Input((32,))
    inner = keras.Model(i, keras.ops.relu(keras.layers.Dense(32, name="inner_fc")(i) + i),
                        name="block")
    j = keras.Input((32,))
    dense = keras.Model(j, keras.layers.Dense(10, name="head")(inner(j) * 2.0))
    sparse, _ = _train_strip_compare(dense, *_data())
    assert sorted(sparse.get_masks()) == ["head/kernel", "inner_fc/kernel"]


def test_keras_applications_mobilenet_v3_small_sparsify_train_strip():
    # Operation nodes (hard-sigmoid, squeeze-excite products), depthwise and
    # pointwise convs, residual Add layers; the sweep script covers the rest.
    assert check("MobileNetV3Small") <= 1e-5
