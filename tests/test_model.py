"""SparseModel: construction, mask changes, the train step and its hook."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.optimizer_slots import slots_for
from keras_sparse.utils import keras_compat

to_np = keras.ops.convert_to_numpy


@keras.saving.register_keras_serializable(package="tests")
class Bilinear(keras.layers.Layer):
    """User layer opting in; reads its raw variable (wrapped by SparseWrapper)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

    def call(self, x):
        return x @ self.w

    def get_prunable_weights(self):
        return [self.w]


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 3)).astype("float32")


def _sparse_model(sparsity=0.5, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="tanh", name="fc")(inputs)
    outputs = Bilinear(name="bilinear")(hidden)
    return ks.sparsify(keras.Model(inputs, outputs), sparsity, distribution="uniform",
                       seed=seed)


def _masks(model):
    return [to_np(mw.mask).copy() for mw in model.masked_weights]


def test_functional_and_subclassed_forms_coexist():
    inputs = keras.Input((4,))
    functional = ks.SparseModel(inputs, ks.layers.SparseDense(3)(inputs))
    assert isinstance(functional, ks.SparseModel)
    # Keras did not rewrite it (the mixin is SparseModel's multi-worker workaround).
    assert ks.SparseModel.__bases__ == (keras_compat.MultiWorkerFixes, keras.Model)

    class Subclassed(ks.SparseModel):
        def __init__(self):
            super().__init__()
            self.fc1 = ks.layers.SparseDense(6, activation="relu")
            self.fc2 = ks.layers.SparseDense(3)

        def call(self, x):
            return self.fc2(self.fc1(x))

    class FunctionalSubclass(ks.SparseModel):
        def __init__(self):
            inputs = keras.Input((4,))
            super().__init__(inputs, ks.layers.SparseDense(3)(inputs))

    x, y = _data()
    for model in (functional, Subclassed(), FunctionalSubclass()):
        model(x[:1])
        masks = [np.ones(mw.weight.shape, "float32") for mw in model.masked_weights]
        for mask in masks:
            mask.reshape(-1)[::2] = 0.0
        model.set_masks(masks)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
        model.fit(x, y, batch_size=4, verbose=0)
        for mw, mask in zip(model.masked_weights, masks):
            np.testing.assert_array_equal(to_np(mw.mask), mask)
            np.testing.assert_array_equal(to_np(mw.weight)[mask == 0], 0.0)
    assert ks.SparseModel.__bases__ == (keras_compat.MultiWorkerFixes, keras.Model)
    assert issubclass(FunctionalSubclass, ks.SparseModel)


def test_set_masks_drops_grows_and_resets_slots():
    model = _sparse_model()
    model.compile(keras.optimizers.Adam(0.1), "mse")
    x, y = _data()
    model.fit(x, y, batch_size=4, verbose=0)
    mw = model.masked_weights[0]
    old_mask, old_weight = _masks(model)[0], to_np(mw.weight)
    old_slots = [to_np(s) for s in slots_for(model.optimizer, mw.weight)]
    assert len(old_slots) == 2 and all(np.any(s != 0) for s in old_slots)
    mask = old_mask.copy().reshape(-1)
    dropped, grown = np.flatnonzero(mask == 1)[:4], np.flatnonzero(mask == 0)[:4]
    mask[dropped], mask[grown] = 0.0, 1.0
    mask = mask.reshape(old_mask.shape)
    model.set_masks({mw.path: mask}, grow_init=0.25)

    weight = to_np(mw.weight).reshape(-1)
    np.testing.assert_array_equal(to_np(mw.mask), mask)
    np.testing.assert_array_equal(weight[dropped], 0.0)
    np.testing.assert_array_equal(weight[grown], 0.25)
    kept = (mask * old_mask).reshape(-1) == 1
    np.testing.assert_array_equal(weight[kept], old_weight.reshape(-1)[kept])
    for slot, old in zip(slots_for(model.optimizer, mw.weight), old_slots):
        values = to_np(slot).reshape(-1)
        np.testing.assert_array_equal(values[dropped], 0.0)
        np.testing.assert_array_equal(values[grown], 0.0)
        np.testing.assert_array_equal(values[kept], old.reshape(-1)[kept])
    # The other weight was not touched.
    np.testing.assert_array_equal(_masks(model)[1], to_np(model.masked_weights[1].mask))


def test_fit_zeroes_weights_and_slots_set_by_hand():
    model = _sparse_model()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    x, y = _data()
    model.fit(x, y, batch_size=4, verbose=0)
    for mw in model.masked_weights:
        mw.weight.assign(np.ones(mw.weight.shape, "float32"))
        for slot in slots_for(model.optimizer, mw.weight):
            slot.assign(np.ones(slot.shape, "float32"))
    masks = _masks(model)
    model.fit(x, y, batch_size=4, verbose=0)
    for mw, mask in zip(model.masked_weights, masks):
        np.testing.assert_array_equal(to_np(mw.weight)[mask == 0], 0.0)
        for slot in slots_for(model.optimizer, mw.weight):
            np.testing.assert_array_equal(to_np(slot)[mask == 0], 0.0)


def test_training_without_a_callback_keeps_the_mask():
    model = _sparse_model()
    masks = _masks(model)
    model.compile("adam", "mse")
    model.fit(*_data(), batch_size=4, epochs=2, verbose=0)
    for before, after in zip(masks, _masks(model)):
        np.testing.assert_array_equal(before, after)


def _expected_dense_gradient(model, x, y):
    """dL/d(W*M) by hand: the gradient of the stripped (folded) model."""
    plain = ks.strip(model)
    by_path = {w.path: w for w in plain.trainable_weights}
    variables = [by_path[mw.path] for mw in model.masked_weights]
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, plain(x, training=True))
    return [to_np(g) for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dense_gradients_on_requested_steps(jit_compile):
    model = _sparse_model()
    # lr 0: weights stay put, so the expected gradient is easy to recompute.
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    with pytest.raises(ValueError, match="request_dense_gradients"):
        model.dense_gradients()
    model.request_dense_gradients(when=lambda step: tf.equal(step, 1))
    x, y = _data()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0)  # steps 0, 1, 2
    expected = _expected_dense_gradient(model, x[4:8], y[4:8])
    other = _expected_dense_gradient(model, x[8:], y[8:])
    for mw, got, want, not_want in zip(model.masked_weights, model.dense_gradients(),
                                       expected, other):
        np.testing.assert_allclose(to_np(got), want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(to_np(got), not_want)
        # Dense: inactive positions get a gradient too (what growth reads).
        assert np.any(to_np(got)[to_np(mw.mask) == 0] != 0), mw.path


def test_dense_gradient_momentum_buffer():
    model = _sparse_model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model.request_dense_gradients(momentum=0.5)
    x, y = _data()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    expected = None
    for start in (0, 4, 8):
        grads = _expected_dense_gradient(model, x[start:start + 4], y[start:start + 4])
        expected = grads if expected is None else [0.5 * e + g for e, g in zip(expected, grads)]
    for got, want in zip(model.dense_gradients(), expected):
        np.testing.assert_allclose(to_np(got), want, rtol=1e-5, atol=1e-6)


def test_static_logs_sparsity_and_round_trips_config():
    model = _sparse_model(sparsity=0.6)
    model.compile("sgd", "mse")
    callback = ks.callbacks.Static()
    history = model.fit(*_data(), batch_size=4, epochs=2, verbose=0, callbacks=[callback])
    total = ks.sparsity_report(model)[-1]
    assert total["layer"] == "total"
    assert history.history["sparsity"] == [pytest.approx(total["sparsity"])] * 2
    assert total["sparsity"] == pytest.approx(0.6, abs=1.0 / total["total"] * 2)
    clone = ks.callbacks.Static.from_config(callback.get_config())
    assert isinstance(clone, ks.callbacks.Static)
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callback)).get_config() == callback.get_config()


def test_fit_refuses_muon_before_training():
    model = _sparse_model()
    model.compile(keras.optimizers.Muon(), "mse")
    before = [to_np(w) for w in model.weights]
    with pytest.raises(TypeError, match="Muon"):
        model.fit(*_data(), verbose=0)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, to_np(new))



def test_set_weights_then_train_on_batch_keeps_inactive_weights_at_zero():
    # The train step reads raw kernels, so weights written by set_weights
    # must be masked at once; otherwise train_on_batch would use them.
    model = _sparse_model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = _data()
    model.set_weights([np.ones_like(w) for w in model.get_weights()])
    for mw in model.masked_weights:
        mask = mw.mask.numpy()
        assert np.all(mw.weight.numpy()[mask == 0] == 0.0)
    expected = model.predict(x, verbose=0)
    assert np.allclose(model(x, training=False), expected)
    model.train_on_batch(x, y)
    for mw in model.masked_weights:
        mask = mw.mask.numpy()
        assert np.all(mw.weight.numpy()[mask == 0] == 0.0)


def _op_counts(model, x, y, capture=None):
    """Op types of the model's train step graph, nested functions included.

    `capture`: for a model asked for dense gradients, the variant of its
    train step (with them, without, or None: the one choosing in the graph).
    """
    model.train_on_batch(x, y)  # builds the optimizer and the metrics
    model._capture = capture
    spec = (tf.TensorSpec(x.shape, tf.float32), tf.TensorSpec(y.shape, tf.int32))
    graph = tf.function(model.train_step).get_concrete_function(spec).graph
    counts = {}
    nodes = list(graph.as_graph_def().node)
    for function in graph.as_graph_def().library.function:
        nodes += list(function.node_def)
    for node in nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def test_train_step_is_the_dense_step_plus_one_masking_op_per_kernel():
    # The whole training overhead of a static mask: no W*M in the forward
    # pass, one mask read and one multiply_no_nan per prunable kernel.
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    sparse = ks.sparsify(dense, 0.5, seed=0)
    x, y = np.zeros((4, 8), "float32"), np.zeros((4,), "int32")
    for model in (dense, sparse):
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    ours, theirs = _op_counts(sparse, x, y), _op_counts(dense, x, y)
    extra = {op: ours.get(op, 0) - theirs.get(op, 0) for op in set(ours) | set(theirs)
             if op != "Placeholder" and ours.get(op, 0) != theirs.get(op, 0)}
    assert extra == {"MulNoNan": 2, "ReadVariableOp": 2}


def test_steps_that_keep_no_dense_gradient_run_the_static_step():
    # With one step per call the model traces two train steps and picks one
    # on the host: steps that keep no dense gradient pay nothing for them.
    x, y = np.zeros((4, 4), "float32"), np.zeros((4, 3), "float32")
    static, asking = _sparse_model(), _sparse_model()
    for model in (static, asking):
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    asking.request_dense_gradients(when=lambda step: step % 100 == 99)
    plain = _op_counts(asking, x, y, capture=False)
    assert plain == _op_counts(static, x, y)
    keeping = _op_counts(asking, x, y, capture=True)
    assert not {"If", "StatelessIf"} & set(keeping)
    # One buffer write per prunable weight.
    assert keeping["AssignVariableOp"] == plain["AssignVariableOp"] + 2
    traced = _op_counts(asking, x, y)  # several steps per call: one graph, a branch
    assert {"If", "StatelessIf"} & set(traced)


class _Rewind(keras.callbacks.Callback):
    """Sets the step counter back to 0 at each epoch start (as a restore would)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.iterations.assign(0)


def _asked_steps(model):
    asked = []

    def when(step):
        asked.append((step, int(model.optimizer.iterations.numpy())))
        return step % 2 == 1

    model.request_dense_gradients(when=when)
    return asked


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "CallbackList"])
def test_the_host_follows_the_step_counter_when_callbacks_move_it(as_list):
    model = _sparse_model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    asked = _asked_steps(model)
    callbacks = [_Rewind()]
    if not as_list:
        callbacks = keras.callbacks.CallbackList(callbacks, add_history=True, model=model)
    model.fit(*_data(), batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
    assert [host for host, _ in asked] == [0, 1, 2, 0, 1, 2]
    assert all(host == device for host, device in asked), asked
    model.optimizer.iterations.assign(7)  # by hand, between train_on_batch calls
    model.train_on_batch(*_data(4))
    assert asked[-1] == (7, 7)


def test_split_train_function_gives_the_traced_runs_result():
    # Two steps per call keep the traced branch; one step per call chooses on
    # the host. The same RigL run either way, bit for bit.
    x, y = _data(n=48)
    results = []
    for steps_per_execution in (1, 2):
        model = _sparse_model(sparsity=0.6)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse",
                      steps_per_execution=steps_per_execution)
        before = _masks(model)
        rigl = ks.callbacks.RigL(delta_t=4, end_step=10**6, alpha=0.5)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[rigl])
        assert any(np.any(a != b) for a, b in zip(before, _masks(model)))  # masks moved
        results.append([to_np(v) for v in model.weights])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
