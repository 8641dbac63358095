"""Masks and rule state survive .keras files, checkpoints and BackupAndRestore."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks

to_np = keras.ops.convert_to_numpy


@keras.saving.register_keras_serializable(package="tests")
class Twist(keras.layers.Layer):
    """User layer opting in through get_prunable_weights."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

    def call(self, x):
        return keras.ops.sin(x @ self.w)

    def get_prunable_weights(self):
        return [self.w]


class Roll(ks.callbacks.MaskCallback):
    """A toy mask rule with state: rolls each mask and counts active rounds."""

    def set_model(self, model):
        super().set_model(model)
        with model.distribute_strategy.scope():
            for mw in model.masked_weights:
                mw.layer.add_mask_state("rounds")

    def on_epoch_end(self, epoch, logs=None):
        masks = []
        for mw in self.model.masked_weights:
            mask = to_np(mw.mask)
            mw.state("rounds").assign_add(mask)
            masks.append(np.roll(mask.reshape(-1), 1).reshape(mask.shape))
        self.model.set_masks(masks)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def _model(seed=0, mask_seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    x = keras.layers.Reshape((5, 1))(inputs)
    x = keras.layers.Conv1D(4, 2, activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    x = Twist(name="twist")(x)
    model = ks.sparsify(keras.Model(inputs, keras.layers.Dense(2, name="fc")(x)), 0.5,
                        seed=mask_seed)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


def _assert_same_variables(a, b):
    """Bit-identical: weights, masks and rule state (all saved as model variables)."""
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    for u, v in zip(a.weights, b.weights):
        np.testing.assert_array_equal(to_np(u), to_np(v), err_msg=u.path)


def test_keras_file_round_trip(tmp_path):
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Roll()])
    assert any(to_np(mw.state("rounds")).sum() > 0 for mw in model.masked_weights)
    path = str(tmp_path / "sparse.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ks.SparseModel)
    assert [mw.path for mw in loaded.masked_weights] == [mw.path for mw in model.masked_weights]
    _assert_same_variables(model, loaded)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    for u, v in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(to_np(u), to_np(v))
    # Both continue identically (optimizer state came along).
    model.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    _assert_same_variables(model, loaded)


def test_checkpoint_restore(tmp_path):
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[Roll()])
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    saved = [to_np(w).copy() for w in model.weights]
    predictions = model.predict(x, verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Roll()])  # masks move on
    assert any(not np.array_equal(s, to_np(w)) for s, w in zip(saved, model.weights)
               if w.path.endswith("_mask"))
    checkpoint.restore(path).assert_existing_objects_matched()
    for old, w in zip(saved, model.weights):
        np.testing.assert_array_equal(old, to_np(w), err_msg=w.path)
    np.testing.assert_array_equal(predictions, model.predict(x, verbose=0))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert any("/kernel_mask/" in name for name in names)
    assert any("/w_rounds/" in name for name in names)


def test_backup_and_restore_resumes_like_an_uninterrupted_run(tmp_path):
    x, y = _data()
    fit = dict(batch_size=8, epochs=4, verbose=0, shuffle=False)

    reference = _model()
    reference.fit(x, y, callbacks=[Roll()], **fit)

    backup = str(tmp_path / "backup")
    interrupted = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(x, y, callbacks=[Roll(), keras.callbacks.BackupAndRestore(backup),
                                         Interrupt(epoch=1)], **fit)
    # A new process would build the model afresh: other masks, other weights.
    resumed = _model(seed=5, mask_seed=7)
    assert not all(np.array_equal(to_np(a.mask), to_np(b.mask))
                   for a, b in zip(resumed.masked_weights, reference.masked_weights))
    history = resumed.fit(x, y, callbacks=[Roll(), keras.callbacks.BackupAndRestore(backup)],
                          **fit)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    _assert_same_variables(reference, resumed)


def test_stripped_model_loads_without_keras_sparse(tmp_path, run_python):
    keras.utils.set_random_seed(0)
    plain_model = ks.sparsify(keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(2)]), 0.7)
    x = _data()[0]
    path = str(tmp_path / "plain.keras")
    ks.strip(plain_model).save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", plain_model.predict(x, verbose=0))
    out = run_python(textwrap.dedent(f"""
        import sys
        import numpy as np
        import keras
        model = keras.saving.load_model({path!r})
        got = model.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)
        diff = np.abs(got - np.load({str(tmp_path / 'y.npy')!r})).max()
        assert "keras_sparse" not in sys.modules
        print(type(model).__name__, diff)
    """))
    kind, diff = out.split()
    assert kind in ("Functional", "Model") and float(diff) <= 1e-6
    assert os.path.getsize(path) > 0


# -- arrays: exact at epoch-end backups; a mid-epoch backup replays the epoch ------

ARRAYS = textwrap.dedent("""
    import os, signal, sys
    import keras, numpy as np
    import keras_sparse as ks

    backup, out, kill_at, save_freq = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    save_freq = save_freq if save_freq == "epoch" else int(save_freq)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    dense = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model = ks.sparsify(dense, 0.7, seed=1)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Kill(keras.callbacks.Callback):  # dies like `kill -9`: no cleanup
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        ks.callbacks.RigL(delta_t=3, end_step=20, seed=4),
        keras.callbacks.BackupAndRestore(backup, save_freq=save_freq), Kill()])
    np.savez(out, steps=int(model.optimizer.iterations.numpy()),
             **{v.path: keras.ops.convert_to_numpy(v) for v in model.weights})
""")


def _arrays_run(tmp_path, name, kill_at, save_freq):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / f"{name}.npz"
    result = subprocess.run(
        [sys.executable, "-c", ARRAYS, str(tmp_path / f"backup_{save_freq}"), str(out),
         str(kill_at), str(save_freq)],
        env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=300)
    return result.returncode, out


def test_sigkill_and_resume_on_arrays_with_a_mid_epoch_backup_replays_the_epoch(tmp_path):
    # 8 steps per epoch, 3 epochs; killed at step 14 (epoch 1, batch 6).
    # Epoch-end backups resume exactly (test_backup_and_restore_... above).
    assert _arrays_run(tmp_path, "reference", -1, "epoch")[0] == 0
    reference = np.load(tmp_path / "reference.npz")
    assert int(reference["steps"]) == 24
    # A backup inside the epoch (step 12, batch 4 of epoch 1): Keras replays
    # epoch 1 from its first batch, so 4 batches are trained twice (as the
    # README says: arrays resume exactly from epoch-end backups only).
    assert _arrays_run(tmp_path, "killed_mid", 14, 4)[0] == -9
    code, out = _arrays_run(tmp_path, "resumed_mid", -1, 4)
    assert code == 0
    mid = np.load(out)
    assert int(mid["steps"]) == 24 + 4
    assert any(not np.array_equal(mid[k], reference[k]) for k in reference.files)
