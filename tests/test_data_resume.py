"""`ks.data.load` pipelines are functions of (seed, epoch): exact resume.

A run killed with SIGKILL and resumed with `BackupAndRestore` in a fresh
process ends with the masks and weights of an uninterrupted run, also when
the backup was taken in the middle of an epoch.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse import data

ROOT = Path(__file__).resolve().parent.parent
TFDS_DIR = str(
    Path(os.environ["TFDS_DATA_DIR"]).resolve()
    if os.environ.get("TFDS_DATA_DIR")
    else ROOT.parent / "shared" / "tfds"
)

# 512 examples in batches of 64: 8 steps per epoch, 3 epochs, RigL every 3
# steps, a backup every 4 steps.
TRAIN = textwrap.dedent("""
    import os, signal, sys
    import keras, numpy as np
    import keras_sparse as ks

    backup, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    model = ks.sparsify(dense, 0.8, seed=1)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = ks.data.load("fashion_mnist", "train", batch_size=64, subset=512, seed=3)

    class Kill(keras.callbacks.Callback):  # dies like `kill -9`: no cleanup
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(train, epochs=3, verbose=0, callbacks=[
        ks.callbacks.RigL(delta_t=3, end_step=20, seed=4),
        keras.callbacks.BackupAndRestore(backup, save_freq=4), Kill()])
    np.savez(out, steps=int(model.optimizer.iterations.numpy()),
             **{v.path: keras.ops.convert_to_numpy(v) for v in model.weights})
""")


def _train(tmp_path, name, kill_at, backup="backup"):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
               TFDS_DATA_DIR=TFDS_DIR)
    out = tmp_path / f"{name}.npz"
    result = subprocess.run(
        [sys.executable, "-c", TRAIN, str(tmp_path / backup), str(out), str(kill_at)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    return result, out


def test_sigkill_and_resume_on_load_pipeline_equals_uninterrupted_run(tmp_path):
    reference, reference_out = _train(tmp_path, "reference", kill_at=-1, backup="ref")
    assert reference.returncode == 0, reference.stderr[-3000:]
    # Killed at step 14; the backup at step 12 is in epoch 1, 4 of its 8
    # batches done: Keras replays epoch 1 from its start, the pipeline skips 4.
    killed, _ = _train(tmp_path, "killed", kill_at=14)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed, resumed_out = _train(tmp_path, "resumed", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ran out of data" not in resumed.stderr

    expected, actual = np.load(reference_out), np.load(resumed_out)
    assert int(expected["steps"]) == int(actual["steps"]) == 24
    assert sorted(expected.files) == sorted(actual.files)
    masks = [k for k in expected.files if k.endswith("_mask")]
    assert masks
    for key in expected.files:  # weights, masks, rule state, optimizer-free
        np.testing.assert_array_equal(expected[key], actual[key], err_msg=key)


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _drive(ds, epoch, skip=0):
    position = ds.ks_epoch_position
    position.driven.assign(True)
    position.epoch.assign(epoch)
    position.skip.assign(skip)


def test_epoch_k_is_the_same_in_every_pipeline_and_skips_trained_batches():
    def load():
        return data.load("cifar10", "train", batch_size=16, subset=64, seed=2,
                         data_dir=TFDS_DIR)  # shuffled and augmented

    first, second = load(), load()
    assert int(first.cardinality()) == 4
    _drive(first, epoch=3)
    _ = _batches(first)  # a pass does not move a driven pipeline
    epoch3 = _batches(first)
    _drive(second, epoch=3)
    for (x1, y1), (x2, y2) in zip(epoch3, _batches(second)):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    _drive(second, epoch=2)
    epoch2 = _batches(second)
    assert not np.array_equal(epoch2[0][1], epoch3[0][1])  # another order
    # Resumed after 1 of epoch 3's batches: the other 3, unchanged.
    _drive(second, epoch=3, skip=1)
    rest = _batches(second)
    assert len(rest) == 3 and int(second.cardinality()) == 4
    for (x1, y1), (x2, y2) in zip(epoch3[1:], rest):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_augmentation_depends_on_the_epoch():
    ds = data.load("cifar10", "train", batch_size=8, subset=8, shuffle=False,
                   seed=2, data_dir=TFDS_DIR)
    _drive(ds, epoch=0)
    [(epoch0, labels0)] = _batches(ds)
    _drive(ds, epoch=1)
    [(epoch1, labels1)] = _batches(ds)
    np.testing.assert_array_equal(labels0, labels1)  # not shuffled
    assert not np.array_equal(epoch0, epoch1)
    _drive(ds, epoch=0)
    np.testing.assert_array_equal(_batches(ds)[0][0], epoch0)


def test_epoch_sync_refuses_other_datasets():
    evaluation = data.load("fashion_mnist", "test", batch_size=8, subset=8, data_dir=TFDS_DIR)
    with pytest.raises(TypeError, match="EpochSync: `dataset` must be"):
        ks.data.EpochSync(evaluation)
