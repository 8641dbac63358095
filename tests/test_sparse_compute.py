"""`SparseDense(compute="sparse")`: the true-sparse training path equals the
masked one (outputs, gradients, fits, mask rules, files) to float rounding,
and keeps the sparse invariants."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.layers import sparse_matmul
from keras_sparse.layers.raw_reads import raw_reads
from keras_sparse.optimizer_slots import slots_for

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 12)).astype("float32")
Y = (X[:, 0] > 0).astype("int32") + (X[:, 1] > 0.5).astype("int32")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
to_np = keras.ops.convert_to_numpy


def mlp(compute, sparsity=0.7, seed=0):
    """12-24-16-3 MLP, uniform random masks (the same for both computes)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,))
    x = ks.layers.SparseDense(24, activation="relu", compute=compute, name="h1")(inputs)
    x = ks.layers.SparseDense(16, activation="tanh", compute=compute, name="h2")(x)
    model = ks.SparseModel(inputs, ks.layers.SparseDense(3, compute=compute, name="out")(x))
    ks.pruning.random(model, sparsity, distribution="uniform", seed=seed)
    return model


def pair(sparsity=0.7, optimizer=None, weight_gradient="dense"):
    """A masked and a sparse-compute copy of `mlp` (weight gradient as given)."""
    models = [mlp(compute, sparsity) for compute in ("masked", "sparse")]
    for mw in models[1].masked_weights:
        mw.layer._weight_gradient = weight_gradient  # as SparseDense(weight_gradient=...)
    for model in models:
        if optimizer is not None:
            model.compile(optimizer(), LOSS)
    return models


WEIGHT_GRADIENTS = pytest.mark.parametrize("weight_gradient", ["dense", "active"])


def assert_close(a, b, rtol=1e-5, what=""):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.max(np.abs(b))), 1e-12)
    assert float(np.max(np.abs(a - b))) <= rtol * scale, what


def kernel_slots(model, mw):
    """The optimizer slots of `mw`'s kernel, kernel-shaped.

    A layer training a vector of values (`value_storage`) has its slots
    over those values: they are scattered to their kernel positions, after
    checking the vector's padding is 0 in values and slots.
    """
    storage = getattr(mw.layer, "value_storage", None)
    if storage is None:
        return [to_np(s) for s in slots_for(model.optimizer, mw.weight, model.trainable_variables)]
    positions, count = storage.active()
    positions, count = positions.numpy(), int(count)
    np.testing.assert_array_equal(positions, np.argwhere(to_np(mw.mask) > 0), err_msg=mw.path)
    values = to_np(storage.values)
    np.testing.assert_array_equal(values[count:], 0.0, err_msg=mw.path)
    model.sync_weights()
    np.testing.assert_array_equal(values[:count], to_np(mw.weight)[tuple(positions.T)],
                                  err_msg=mw.path)
    found = []
    for slot in slots_for(model.optimizer, storage.values, model.trainable_variables):
        slot = to_np(slot)
        np.testing.assert_array_equal(slot[count:], 0.0, err_msg=mw.path)
        dense = np.zeros(mw.weight.shape, slot.dtype)
        dense[tuple(positions.T)] = slot[:count]
        found.append(dense)
    return found


def assert_invariants(model, reference=None):
    """Inactive weights and every optimizer slot there are exactly 0 (and
    the slots equal those of `reference`, the masked twin, if given)."""
    for i, mw in enumerate(model.masked_weights):
        inactive = to_np(mw.mask) == 0
        np.testing.assert_array_equal(to_np(mw.weight)[inactive], 0.0, err_msg=mw.path)
        slots = kernel_slots(model, mw)
        assert slots, mw.path
        for slot in slots:
            np.testing.assert_array_equal(slot[inactive], 0.0, err_msg=mw.path)
        if reference is not None:
            for got, want in zip(slots, kernel_slots(reference, reference.masked_weights[i])):
                assert_close(got, want, rtol=1e-4, what=f"{mw.path} slots")


def step_gradients(model, x, y, when=None, raw=True):
    """Loss and gradients of one train-step forward pass (raw kernels), or
    of a plain training call (`raw=False`)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        if raw:
            with raw_reads(model.masked_weights, when):
                loss = LOSS(y, model(x, training=True))
        else:
            loss = LOSS(y, model(x, training=True))
    kernels = [mw.weight for mw in model.masked_weights]
    return loss, tape.gradient(loss, [x] + kernels)


# -- the layer ----------------------------------------------------------------


def test_bad_compute_is_refused_naming_argument_value_and_choices():
    for bad in ("foo", None, 1):
        with pytest.raises(ValueError, match=r"`compute`.*'masked', 'sparse'.*got") as info:
            ks.layers.SparseDense(4, compute=bad)
        assert repr(bad) in str(info.value)
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`compute`.*'foo'"):
        ks.sparsify(dense, 0.5, compute="foo")
    with pytest.raises(ValueError, match=r"`weight_gradient`.*'sampled'"):
        ks.layers.SparseDense(4, compute="sparse", weight_gradient="sampled")
    for bad in (0, -3, 1.5):
        with pytest.raises((ValueError, TypeError), match="value_capacity"):
            ks.layers.SparseDense(4, compute="sparse", value_capacity=bad)
    assert ks.layers.SparseDense(4, compute="sparse").get_config()["weight_gradient"] == "auto"
    layer = ks.layers.SparseDense(4, compute="sparse", weight_gradient="active", value_capacity=7)
    again = ks.layers.SparseDense.from_config(layer.get_config())
    assert (again._weight_gradient, again.value_capacity) == ("active", 7)


def test_kernel_products_equal_dense_ones():
    mask = (RNG.random((40, 30)) > 0.9).astype("float32")
    kernel = tf.constant(RNG.standard_normal((40, 30)).astype("float32") * mask)
    x = tf.constant(RNG.standard_normal((7, 40)).astype("float32"))
    dy = tf.constant(RNG.standard_normal((7, 30)).astype("float32"))
    positions = sparse_matmul.active_positions(mask)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        y = sparse_matmul.sparse_matmul(x, kernel, positions)
        y_dense = sparse_matmul.sparse_matmul(x, kernel, positions, weight_gradient="dense")
    assert_close(y, x @ kernel, what="forward")
    dx, dw = tape.gradient(y, [x, kernel], output_gradients=dy)
    assert_close(dx, dy @ tf.transpose(kernel), what="input gradient")
    full = tf.transpose(x) @ dy
    assert_close(dw, full * mask, what="weight gradient at active positions")
    np.testing.assert_array_equal(to_np(dw)[mask == 0], 0.0)  # exactly, not rounded
    assert_close(tape.gradient(y_dense, kernel, output_gradients=dy), full, what="dense")
    # The same products from a layout sorted once (what the layers cache).
    lay = sparse_matmul.layout(positions, 40)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = sparse_matmul.sparse_matmul(x, kernel, lay)
    assert_close(y, x @ kernel, what="forward from a layout")
    dx, dw = tape.gradient(y, [x, kernel], output_gradients=dy)
    assert_close(dx, dy @ tf.transpose(kernel), what="input gradient from a layout")
    assert_close(dw, full * mask, what="weight gradient from a layout")


@WEIGHT_GRADIENTS
def test_forward_loss_and_gradients_equal_the_masked_path(weight_gradient):
    masked, sparse = pair(weight_gradient=weight_gradient)
    for a, b in zip(masked.weights, sparse.weights):
        np.testing.assert_array_equal(to_np(a), to_np(b))
    assert [type(mw.layer) for mw in sparse.masked_weights] == [ks.layers.SparseDense] * 3
    assert all(mw.layer.get_config()["compute"] == "sparse" for mw in sparse.masked_weights)
    assert_close(sparse(X, training=True), masked(X, training=True), what="outputs")
    loss_m, (dx_m, *dw_m) = step_gradients(masked, X[:16], Y[:16])
    loss_s, (dx_s, *dw_s) = step_gradients(sparse, X[:16], Y[:16])
    assert_close(loss_s, loss_m, what="loss")
    assert_close(dx_s, dx_m, what="input gradient")
    for mw, got, want in zip(sparse.masked_weights, dw_s, dw_m):
        mask = to_np(mw.mask)
        assert mw.layer.masks_own_gradients == (weight_gradient == "active")
        if weight_gradient == "dense":  # dL/d(W*M) everywhere, as the masked path's
            assert_close(got, want, what=mw.path)
        else:  # only at active positions, exactly 0 elsewhere
            assert_close(to_np(got) * mask, to_np(want) * mask, what=mw.path)
            np.testing.assert_array_equal(to_np(got)[mask == 0], 0.0)
    # On a step that keeps dense gradients, the kernel's gradient is dL/d(W*M)
    # everywhere, as the masked path's.
    for when in (tf.constant(True), tf.Variable(True)):
        _, (_, *dense) = step_gradients(sparse, X[:16], Y[:16], when=when)
        for mw, got, want in zip(sparse.masked_weights, dense, dw_m):
            assert_close(got, want, what="dense gradient")
            assert np.count_nonzero(to_np(got)[to_np(mw.mask) == 0])
    # Outside the train step the kernel's gradient is masked, as that of W * M.
    _, (dx_m, *dw_m) = step_gradients(masked, X[:16], Y[:16], raw=False)
    _, (dx_s, *dw_s) = step_gradients(sparse, X[:16], Y[:16], raw=False)
    assert_close(dx_s, dx_m, what="input gradient, plain call")
    for mw, got, want in zip(sparse.masked_weights, dw_s, dw_m):
        assert_close(got, want, what=f"{mw.path}, plain call")
        np.testing.assert_array_equal(to_np(got)[to_np(mw.mask) == 0], 0.0)


def test_inputs_of_higher_rank_and_inference():
    layer = ks.layers.SparseDense(5, sparsity=0.6, seed=3, compute="sparse")
    twin = ks.layers.SparseDense(5, sparsity=0.6, seed=3)
    x = RNG.standard_normal((2, 3, 7)).astype("float32")
    layer(x), twin(x)
    twin.set_weights(layer.get_weights())
    for training in (True, False):
        assert_close(layer(x, training=training), twin(x, training=training))
    assert layer(x, training=True).shape == (2, 3, 5)
    assert layer.supports_jit is False and twin.supports_jit is True

    @tf.function(jit_compile=False)
    def call(x):
        return layer(x, training=True)

    assert_close(call(tf.constant(x)), twin(x))


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    lambda: keras.optimizers.Adam(0.02),
], ids=["sgd_momentum", "adam"])
@WEIGHT_GRADIENTS
def test_fit_gives_the_masked_weights_and_keeps_the_invariants(optimizer, weight_gradient):
    masked, sparse = pair(optimizer=optimizer, weight_gradient=weight_gradient)
    before = [to_np(mw.weight) for mw in sparse.masked_weights]
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(masked.weights, sparse.weights):
        assert_close(to_np(b), to_np(a), rtol=1e-5, what=a.path)
    for mw, old in zip(sparse.masked_weights, before):
        assert not np.allclose(to_np(mw.weight), old)  # it trained
    assert_invariants(sparse, masked)


@WEIGHT_GRADIENTS
def test_a_plain_keras_model_keeps_inactive_weights_at_zero(weight_gradient):
    # No SparseModel train step: the layer's own gradient keeps them at 0.
    keras.utils.set_random_seed(0)
    layers = [ks.layers.SparseDense(16, activation="relu", sparsity=0.8, seed=1,
                                    compute=compute) for compute in ("masked", "sparse")]
    models = []
    for layer in layers:
        layer._weight_gradient = weight_gradient
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((12,)), layer, keras.layers.Dense(3)])
        model.compile(keras.optimizers.Adam(0.02), LOSS)
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(*(model.weights for model in models)):
        assert_close(to_np(b), to_np(a), what=a.path)
    kernel, mask = to_np(layers[1].get_prunable_weights()[0]), to_np(layers[1].kernel_mask)
    assert (mask == 0).sum() == round(0.8 * mask.size)
    np.testing.assert_array_equal(kernel[mask == 0], 0.0)


def _permuted(masks, fraction=1.0):
    """Each mask's ones moved to random positions; `fraction` of them kept."""
    found = {}
    for path, mask in masks.items():
        ones = int(mask.sum() * fraction)
        flat = np.zeros(mask.size, "float32")
        flat[RNG.permutation(mask.size)[:ones]] = 1.0
        found[path] = flat.reshape(mask.shape)
    return found


@pytest.mark.parametrize("fraction", [1.0, 0.6], ids=["same_count", "fewer"])
def test_mask_change_relays_the_values_and_their_slots(fraction):
    # SGD momentum: kept connections keep their momentum, grown ones restart.
    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    storage = sparse.get_layer("h1").value_storage
    capacity = storage.capacity
    assert capacity == int(masked.get_masks()["h1/kernel"].sum())
    first = storage.active()[0].numpy()
    new = _permuted(masked.get_masks(), fraction)
    for model in (masked, sparse):
        model.set_masks(new, grow_init=0.01)
    positions, count = storage.active()
    np.testing.assert_array_equal(positions.numpy(), np.argwhere(new["h1/kernel"] > 0))
    assert int(count) <= capacity and (positions.shape != first.shape
                                       or (positions.numpy() != first).any())
    assert_invariants(sparse, masked)  # values, padding and remapped slots
    assert_close(sparse(X, training=True), masked(X, training=True), what="after set_masks")
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(masked.weights, sparse.weights):
        assert_close(to_np(b), to_np(a), what=a.path)
    assert_invariants(sparse, masked)


def test_a_mask_denser_than_the_values_vector_is_refused_and_changes_nothing():
    _, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    sparse.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    before = [to_np(v) for v in sparse.variables]
    denser = {path: np.ones_like(mask) for path, mask in sparse.get_masks().items()}
    with pytest.raises(ValueError, match="h1.*at most"):
        sparse.set_masks(denser)
    for old, variable in zip(before, sparse.variables):
        np.testing.assert_array_equal(to_np(variable), old, err_msg=variable.path)


def test_values_are_trained_only_under_sparse_model_fit_on_one_replica():
    # A plain keras.Model trains the kernel (the vector needs SparseModel's
    # train step); a SparseModel trains the vector, with slots of its size.
    masked, sparse = pair(optimizer=lambda: keras.optimizers.Adam(0.01))
    assert all(mw.layer.value_storage is None for mw in sparse.masked_weights)
    sparse.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for mw in sparse.masked_weights:
        storage = mw.layer.value_storage
        assert storage.capacity == int(to_np(mw.mask).sum())
        assert not mw.weight.trainable and storage.values.trainable
        assert all(w is not storage.values for w in mw.layer.weights)  # as with "masked"
        slots = slots_for(sparse.optimizer, storage.values, sparse.trainable_variables)
        assert [tuple(s.shape) for s in slots] == [(storage.capacity,)] * 2  # Adam m, v
        assert not slots_for(sparse.optimizer, mw.weight, sparse.trainable_variables)
    assert len(sparse.get_weights()) == len(masked.get_weights())


RIGL = lambda: ks.callbacks.RigL(delta_t=2, end_step=10, seed=1)  # noqa: E731


@pytest.mark.parametrize("rule,weight_gradient", [
    (RIGL, "dense"),
    (RIGL, "active"),
    (lambda: ks.callbacks.DSTEE(delta_t=2, end_step=10, c=1e-3, seed=1), "active"),
    (lambda: ks.callbacks.SET(delta_t=2, end_step=10, seed=1), "active"),
], ids=["rigl", "rigl-active", "dstee-active", "set-active"])
def test_mask_rules_give_the_masks_of_the_masked_path(rule, weight_gradient):
    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                          weight_gradient=weight_gradient)
    start = masked.get_masks()
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[rule()])
    masks_m, masks_s = masked.get_masks(), sparse.get_masks()
    assert any((masks_m[p] != start[p]).any() for p in start)  # the rule changed them
    for path in start:
        np.testing.assert_array_equal(masks_s[path], masks_m[path], err_msg=path)
    for a, b in zip(masked.weights, sparse.weights):
        assert_close(to_np(b), to_np(a), rtol=1e-4, what=a.path)
    assert_invariants(sparse, masked)
    assert_close(sparse(X, training=True), masked(X, training=True), rtol=1e-4)


def test_dense_gradients_are_captured_on_requested_steps_only():
    # Active-only weight gradients, so the dense ones come from the capture.
    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.5),
                          weight_gradient="active")
    for model in (masked, sparse):
        model.request_dense_gradients(when=lambda step: tf.equal(step, 2))
        model.fit(X[:32], Y[:32], batch_size=8, epochs=1, shuffle=False, verbose=0)
    for mw, got, want in zip(sparse.masked_weights, sparse.dense_gradients(),
                             masked.dense_gradients()):
        assert np.count_nonzero(to_np(want)[to_np(mw.mask) == 0])  # dense indeed
        assert_close(got, want, what=mw.path)
    for a, b in zip(masked.weights, sparse.weights):
        assert_close(to_np(b), to_np(a), what=a.path)
    assert_invariants(sparse, masked)


def test_keras_file_round_trip_keeps_compute_and_training_continues(tmp_path):
    _, sparse = pair(optimizer=lambda: keras.optimizers.Adam(0.02))
    sparse.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "model.keras")
    sparse.save(path)
    loaded = keras.models.load_model(path)
    assert [mw.layer.compute for mw in loaded.masked_weights] == ["sparse"] * 3
    assert_close(loaded(X, training=True), sparse(X, training=True))
    for model in (sparse, loaded):
        model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(sparse.weights, loaded.weights):
        assert_close(to_np(b), to_np(a), what=a.path)
    assert_invariants(loaded)
    # strip gives plain Dense layers computing the same outputs.
    plain = ks.strip(loaded)
    assert {type(layer) for layer in plain.layers[1:]} == {keras.layers.Dense}
    assert "compute" not in plain.layers[1].get_config()
    assert_close(plain(X), loaded(X))


def test_sparsify_passes_compute_to_dense_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(3, 3)(inputs)
    x = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    model = ks.sparsify(keras.Model(inputs, x), 0.5, compute="sparse")
    computes = {type(mw.layer).__name__: getattr(mw.layer, "compute", None)
                for mw in model.masked_weights}
    assert computes == {"SparseConv2D": None, "SparseDense": "sparse"}
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(RNG.standard_normal((8, 6, 6, 1)), RNG.standard_normal((8, 4)), verbose=0)
    for mw in model.masked_weights:
        np.testing.assert_array_equal(to_np(mw.weight)[to_np(mw.mask) == 0], 0.0)


def test_mixed_float16_trains_and_matches_the_masked_path():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9))
        out = sparse(X, training=True)
        assert out.dtype == tf.float16
        assert_close(tf.cast(out, tf.float32), tf.cast(masked(X, training=True), tf.float32),
                     rtol=1e-2)
        for model in (masked, sparse):
            model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        for a, b in zip(masked.weights, sparse.weights):
            assert_close(to_np(b), to_np(a), rtol=1e-2, what=a.path)
        assert_invariants(sparse)
    finally:
        keras.config.set_dtype_policy(previous)


DISTRIBUTED = '''
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras
import keras_sparse as ks
X = np.random.RandomState(0).randn(64, 12).astype("float32")
Y = (X[:, 0] > 0).astype("int32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
weights = {}
for compute in ("masked", "sparse"):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12,))
        h = ks.layers.SparseDense(16, activation="relu", compute=compute)(inputs)
        model = ks.SparseModel(inputs, ks.layers.SparseDense(2, compute=compute)(h))
        ks.pruning.random(model, 0.7, distribution="uniform", seed=0)
        for mw in model.masked_weights:
            mw.layer._weight_gradient = "active"
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[ks.callbacks.RigL(delta_t=2, end_step=6, seed=1)])
    weights[compute] = [v.numpy() for v in model.weights]
print(max(float(np.max(np.abs(a - b))) for a, b in zip(*weights.values())))
'''


def test_two_replicas_give_the_masked_results(run_python):
    # MirroredStrategy over 2 logical CPUs, RigL updating the masks.
    assert float(run_python(DISTRIBUTED).split()[-1]) < 1e-5


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_the_values_like_an_uninterrupted_run(tmp_path):
    # RigL moves masks (values relaid, slots remapped); the backup holds the
    # kernel, mask and slots, from which the values are laid out again.
    def run(callbacks):
        _, model = pair(optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9))
        try:
            model.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                      callbacks=[ks.callbacks.RigL(delta_t=3, end_step=28, seed=1)] + callbacks)
        except RuntimeError:
            pass
        return model

    uninterrupted = run([])
    backup = str(tmp_path / "backup")
    run([keras.callbacks.BackupAndRestore(backup), _Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(backup)])
    assert int(resumed.optimizer.iterations) == int(uninterrupted.optimizer.iterations) == 32
    masks_u, masks_r = uninterrupted.get_masks(), resumed.get_masks()
    for path in masks_u:
        np.testing.assert_array_equal(masks_r[path], masks_u[path], err_msg=path)
    for a, b in zip(uninterrupted.weights, resumed.weights):
        assert_close(to_np(b), to_np(a), rtol=1e-5, what=a.path)
    assert_invariants(resumed, uninterrupted)


def test_callbacks_read_current_kernels_at_epoch_end_and_after_sync_weights():
    class Record(keras.callbacks.Callback):
        def __init__(self, sync):
            super().__init__()
            self.sync, self.kernels = sync, []

        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                if self.sync:
                    self.model.sync_weights()
                self.kernels.append(to_np(self.model.masked_weights[0].weight))

        def on_epoch_end(self, epoch, logs=None):
            self.kernels.append(to_np(self.model.masked_weights[0].weight))

    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    records = [Record(sync=model is sparse) for model in (masked, sparse)]
    for model, record in zip((masked, sparse), records):
        model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    assert len(records[1].kernels) == 4
    for got, want in zip(records[1].kernels, records[0].kernels):
        assert_close(got, want)


def test_snfs_redistribution_is_refused_for_layers_training_a_fixed_count():
    _, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9))
    masks = sparse.get_masks()
    with pytest.raises(ValueError, match="redistribution.*h1"):
        sparse.fit(X, Y, batch_size=8, epochs=1, verbose=0,
                   callbacks=[ks.callbacks.SNFS(delta_t=2)])
    for path, mask in sparse.get_masks().items():
        np.testing.assert_array_equal(mask, masks[path])


def test_set_weights_mid_training_overrides_the_trained_values():
    class SetAt(keras.callbacks.Callback):
        def __init__(self, weights):
            super().__init__()
            self.weights_ = weights

        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.set_weights(self.weights_)

    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    start = masked.get_weights()
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                  callbacks=[SetAt(start)])
    for a, b in zip(masked.weights, sparse.weights):
        assert_close(to_np(b), to_np(a), what=a.path)
    assert_invariants(sparse, masked)


def test_assign_mask_keep_restarts_a_weight_dropped_and_regrown_in_one_call():
    # What a drop-and-grow update does in one call: `keep` is the mask after
    # the drop; a position dropped and regrown restarts with fresh slots.
    masked, sparse = pair(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.9))
    for model in (masked, sparse):
        model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    mask = masked.get_masks()["h1/kernel"]
    position = tuple(np.argwhere(mask > 0)[0])
    keep = mask.copy()
    keep[position] = 0.0
    for model in (masked, sparse):
        mw = model.masked_weights[0]
        before = to_np(mw.weight)
        assert kernel_slots(model, mw)[0][position] != 0.0  # momentum has built up
        model.assign_mask(mw, tf.constant(mask), grow_init=0.5, keep=tf.constant(keep))
        model.sync_weights()
        after = to_np(mw.weight)
        assert after[position] == 0.5
        np.testing.assert_array_equal(after[keep > 0], before[keep > 0])
        slots = kernel_slots(model, mw)
        assert all(slot[position] == 0.0 for slot in slots)
        assert all(np.count_nonzero(slot[keep > 0]) > 0 for slot in slots)
    assert_invariants(sparse, masked)
