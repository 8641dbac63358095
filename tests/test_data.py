import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_sparse import data

# CI sets TFDS_DATA_DIR=../shared/tfds (relative to the repo root); fall back
# to the same place computed from this file.
TFDS_DIR = str(
    Path(os.environ["TFDS_DATA_DIR"]).resolve()
    if os.environ.get("TFDS_DATA_DIR")
    else Path(__file__).resolve().parents[2] / "shared" / "tfds"
)


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _check_batch(images, labels, shape, num_classes):
    assert images.shape == shape
    assert images.dtype == np.float32
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < num_classes
    assert np.isfinite(images).all()


@pytest.mark.parametrize(
    "name,shape", [("cifar10", (32, 32, 3)), ("fashion_mnist", (28, 28, 1))]
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_batches_are_normalized(name, shape, split):
    ds = data.load(
        name,
        split,
        batch_size=400,
        subset=400,
        augment=False,
        data_dir=TFDS_DIR,
    )
    [(images, labels)] = _batches(ds)
    _check_batch(images, labels, (400, *shape), 10)
    assert len(np.unique(labels)) == 10
    mean = images.mean(axis=(0, 1, 2))
    std = images.std(axis=(0, 1, 2))
    np.testing.assert_allclose(mean, 0.0, atol=0.1)
    np.testing.assert_allclose(std, 1.0, atol=0.1)


def test_reads_tfds_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", TFDS_DIR)
    ds = data.load("fashion_mnist", batch_size=8, subset=8)
    [(images, labels)] = _batches(ds)
    _check_batch(images, labels, (8, 28, 28, 1), 10)


def test_fashion_mnist_augments_only_on_request():
    load = dict(batch_size=64, subset=64, shuffle=False, data_dir=TFDS_DIR)
    [(plain, _)] = _batches(data.load("fashion_mnist", "train", **load))
    [(default, _)] = _batches(data.load("fashion_mnist", "train", **load))
    [(shifted, labels)] = _batches(data.load("fashion_mnist", "train", augment=True, **load))
    [(again, _)] = _batches(data.load("fashion_mnist", "train", augment=True, **load))
    np.testing.assert_array_equal(default, plain)  # augment=None: off for the MNIST family
    np.testing.assert_array_equal(shifted, again)  # seeded
    _check_batch(shifted, labels, (64, 28, 28, 1), 10)
    assert sum(not np.array_equal(a, p) for a, p in zip(shifted, plain)) > 32
    # A shift of at most 2 pixels and a flip: the centre 24x24 of each
    # augmented image appears in its original, maybe mirrored.
    for a, p in zip(shifted[:8, 2:-2, 2:-2, 0], plain[:8, :, :, 0]):
        found = any(np.allclose(a, img[i:i + 24, j:j + 24])
                    for img in (p, p[:, ::-1]) for i in range(5) for j in range(5))
        assert found


def test_subset_takes_the_first_examples_in_batches():
    ds = data.load(
        "cifar10",
        "train",
        batch_size=128,
        subset=300,
        shuffle=False,
        data_dir=TFDS_DIR,
    )
    batches = _batches(ds)
    assert [len(y) for _, y in batches] == [128, 128, 44]
    first = tfds.load(
        "cifar10", split="train[:300]", as_supervised=True, data_dir=TFDS_DIR
    )
    expected = np.array([int(y) for _, y in first])
    labels = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(labels, expected)


def _cifar(**kwargs):
    ds = data.load(
        "cifar10",
        batch_size=64,
        subset=64,
        shuffle=False,
        data_dir=TFDS_DIR,
        **kwargs,
    )
    [(images, _)] = _batches(ds)
    return images


def test_cifar_augmentation_changes_images_not_shapes():
    plain = _cifar(split="train", augment=False)
    augmented = _cifar(split="train", augment=True)
    assert augmented.shape == plain.shape == (64, 32, 32, 3)
    changed = [not np.array_equal(a, p) for a, p in zip(augmented, plain)]
    assert sum(changed) > 48
    # Default: augment the train split only.
    assert not np.array_equal(_cifar(split="train"), plain)
    np.testing.assert_array_equal(
        _cifar(split="test"), _cifar(split="test", augment=False)
    )


def test_augmentation_keeps_pixels_of_the_original():
    # A pad-4 crop or flip moves pixels: the central 24x24 of the augmented
    # image appears in the padded, possibly flipped, original.
    plain = _cifar(split="train", augment=False)[:8]
    augmented = _cifar(split="train", augment=True)[:8]
    for a, p in zip(augmented, plain):
        found = False
        for image in (p, p[:, ::-1]):
            padded = np.pad(
                image, ((4, 4), (4, 4), (0, 0)), constant_values=np.nan
            )
            for dy in range(9):
                for dx in range(9):
                    window = padded[dy + 4 : dy + 28, dx + 4 : dx + 28]
                    found |= np.allclose(window, a[4:28, 4:28], atol=1e-5)
        assert found


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
    def load(seed):
        return data.load(
            "cifar10", batch_size=32, subset=64, seed=seed, data_dir=TFDS_DIR
        )

    first = _batches(load(0))
    np.testing.assert_array_equal(first[0][0], _batches(load(0))[0][0])
    assert not np.array_equal(first[0][1], _batches(load(1))[0][1])
    ds = load(0)
    epoch1 = np.concatenate([y for _, y in _batches(ds)])
    epoch2 = np.concatenate([y for _, y in _batches(ds)])
    assert not np.array_equal(epoch1, epoch2)
    assert sorted(epoch1) == sorted(epoch2)


def test_augmentation_is_seeded_and_varies_by_epoch():
    def load(seed):
        return data.load(
            "cifar10",
            batch_size=16,
            subset=16,
            shuffle=False,
            augment=True,
            seed=seed,
            data_dir=TFDS_DIR,
        )

    ds = load(0)
    [(epoch1, _)] = _batches(ds)
    [(epoch2, _)] = _batches(ds)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(_batches(load(0))[0][0], epoch1)
    assert not np.array_equal(_batches(load(1))[0][0], epoch1)


def test_info_of_prepared_dataset():
    assert data.info("cifar10", data_dir=TFDS_DIR) == {
        "name": "cifar10",
        "input_shape": (32, 32, 3),
        "num_classes": 10,
        "num_examples": {"train": 50_000, "test": 10_000},
    }


@pytest.mark.parametrize(
    "name,split,shape,num_classes",
    [
        ("cifar100", "train", (32, 32, 3), 100),
        ("cifar100", "test", (32, 32, 3), 100),
        ("mnist", "train", (28, 28, 1), 10),
        ("imagenet2012", "train", (224, 224, 3), 1000),
        ("imagenet2012", "validation", (224, 224, 3), 1000),
    ],
)
def test_mock_datasets_through_the_pipeline(name, split, shape, num_classes):
    with tfds.testing.mock_data(num_examples=5):
        batches = _batches(data.load(name, split, batch_size=4))
        assert data.info(name)["num_classes"] == num_classes
    assert [len(y) for _, y in batches] == [4, 1]
    _check_batch(*batches[0], (4, *shape), num_classes)
    assert data.info(name)["input_shape"] == shape


def test_missing_dataset_error_names_dataset_directory_and_env(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.load("cifar100", data_dir=str(tmp_path))
    message = str(error.value)
    assert "'cifar100'" in message
    assert str(tmp_path) in message
    assert "TFDS_DATA_DIR" in message
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


def test_missing_dataset_error_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'mnist'") as error:
        data.load("mnist")
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="svhn"), "name='svhn'"),
        (dict(name="cifar10", batch_size=0), "`batch_size` must be an integer >= 1; got 0"),
        (dict(name="cifar10", subset=-1), "`subset` must be an integer >= 1 or None; got -1"),
    ],
)
def test_bad_arguments_raise_before_reading(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        data.load(data_dir=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []
