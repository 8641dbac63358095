"""TFDS input pipelines: `(image, label)` batches, normalized and augmented."""

import dataclasses
import functools
import os
from typing import Callable, Optional

import tensorflow as tf

from keras_sparse.data import epochs, transforms
from keras_sparse.utils.argument_validation import check_int

__all__ = ["info", "load", "names"]


def _tfds():
    """`tensorflow_datasets`, imported on first use (it is slow and optional)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "keras_sparse.data needs tensorflow-datasets: "
            "pip install 'keras_sparse[data]'."
        ) from error
    return tfds


@dataclasses.dataclass(frozen=True)
class _Spec:
    stored_shape: tuple  # decoded TFDS image; None where sizes vary
    input_shape: tuple  # what the pipeline yields
    mean: tuple
    std: tuple
    train_transform: Optional[Callable]  # (image, seed) -> image
    eval_transform: Optional[Callable]  # image -> image
    small: bool  # fits in memory: cache it, shuffle all of it
    augment_by_default: bool = True  # augment=None augments "train*" splits


# Per-channel statistics of each training set on the [0, 1] scale.
_SPECS = {
    "cifar10": _Spec(
        (32, 32, 3),
        (32, 32, 3),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        transforms.pad_crop_flip,
        None,
        small=True,
    ),
    "cifar100": _Spec(
        (32, 32, 3),
        (32, 32, 3),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        transforms.pad_crop_flip,
        None,
        small=True,
    ),
    # The MNIST family is augmented only on request (augment=True): random
    # shifts of up to 2 pixels; Fashion-MNIST also flips left-right (clothes
    # are mirror-symmetric, digits are not).
    "mnist": _Spec(
        (28, 28, 1), (28, 28, 1), (0.1307,), (0.3081,),
        functools.partial(transforms.pad_crop, padding=2), None, small=True,
        augment_by_default=False,
    ),
    "fashion_mnist": _Spec(
        (28, 28, 1), (28, 28, 1), (0.2860,), (0.3530,),
        functools.partial(transforms.pad_crop_flip, padding=2), None, small=True,
        augment_by_default=False,
    ),
    "imagenet2012": _Spec(
        (None, None, 3),
        (224, 224, 3),
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        transforms.random_resized_crop_flip,
        transforms.resize_center_crop,
        small=False,
    ),
}
_SMALL_SHUFFLE_BUFFER = 60_000  # a whole MNIST/CIFAR training set
_LARGE_SHUFFLE_BUFFER = 10_000  # encoded JPEGs, ~1 GB for ImageNet


def names():
    """Returns the data set names `load` and `info` accept, sorted.

    Returns:
        A sorted list of dataset names.

    Example:
        >>> "cifar10" in names()
        True
    """
    return sorted(_SPECS)


def _spec(name):
    if name not in _SPECS:
        raise ValueError(
            f"Unknown dataset: name={name!r}. `name` must be one of {names()}."
        )
    return _SPECS[name]


def _builder(name, data_dir):
    # Read TFDS_DATA_DIR now: tfds reads it once, at import time.
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    return _tfds().builder(name, data_dir=data_dir)


def info(name, data_dir=None):
    """Describes a data set as the pipelines of `load` deliver it.

    Args:
        name: one of `names()`.
        data_dir: TFDS data directory; default: `$TFDS_DATA_DIR`, else the
            tensorflow-datasets default (`~/tensorflow_datasets`).

    Returns:
        A dict with `name`, `input_shape` (of one pipeline image),
        `num_classes` and `num_examples` (`{split: count}`, empty when the
        data set is not prepared in `data_dir`). Nothing is downloaded.

    Example:
        >>> info("cifar10")["num_classes"]
        10
    """
    spec = _spec(name)
    builder_info = _builder(name, data_dir).info
    return {
        "name": name,
        "input_shape": spec.input_shape,
        "num_classes": builder_info.features["label"].num_classes,
        "num_examples": {
            split: split_info.num_examples
            for split, split_info in builder_info.splits.items()
        },
    }


def load(
    name,
    split="train",
    batch_size=128,
    shuffle=None,
    augment=None,
    subset=None,
    seed=0,
    data_dir=None,
    download=False,
):
    """Builds a batched `tf.data.Dataset` of `(image, label)` from TFDS.

    Images are float32, normalized per channel with the training set's mean
    and standard deviation (ImageNet: the usual ImageNet constants); labels
    are int32. Augmentation: CIFAR pads 4 pixels, crops 32x32 at random and
    flips horizontally; ImageNet takes a random-resized 224x224 crop and
    flips (evaluation: shorter side resized to 256, central 224x224 crop).
    MNIST and Fashion-MNIST are augmented only with `augment=True`: zero-pad
    2 pixels and crop 28x28 at random (shifts of up to 2 pixels), plus a
    random horizontal flip for Fashion-MNIST only (clothes are mirror
    symmetric, digits are not). Shuffling and augmentation are
    stateless functions of `(seed, epoch)`, so equal arguments give equal
    batches and both change from epoch to epoch. Under `fit`, `EpochSync`
    (added by `SparseModel.fit` itself) sets the epoch to Keras' epoch, so a
    run resumed with `BackupAndRestore` sees epoch k's batches, also when
    resumed in the middle of an epoch. Iterated by hand, each pass draws a
    fresh order (interpretation: the same as reshuffling each iteration).
    MNIST and CIFAR are shuffled as a whole; ImageNet reads its files in
    one seeded order and shuffles blocks of 10,000 examples (interpretation:
    a block shuffle in place of a 10,000-example shuffle buffer).

    Args:
        name: one of `names()`: `"cifar10"`, `"cifar100"`, `"mnist"`,
            `"fashion_mnist"` or `"imagenet2012"`.
        split: a TFDS split, e.g. `"train"`, `"test"`, `"validation"` or
            `"train[:90%]"`.
        batch_size: examples per batch; the last batch may be smaller.
        shuffle: whether to shuffle examples (and files) each epoch;
            `None` shuffles splits whose name starts with `"train"`.
        augment: `None` augments splits whose name starts with `"train"`
            (CIFAR, ImageNet; never the MNIST family); `True`/`False` force
            it on or off.
        subset: if set, only the first `subset` examples of the split (in
            file order) are used, e.g. for reduced CPU runs.
        seed: seed of the shuffle and the augmentation.
        data_dir: TFDS data directory; default: `$TFDS_DATA_DIR`, else the
            tensorflow-datasets default (`~/tensorflow_datasets`).
        download: let tensorflow-datasets download and prepare a missing
            data set; by default a missing one raises `FileNotFoundError`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, prefetched.

    Raises:
        ValueError: an unknown `name`, a bad `batch_size` or `subset`, or
            `augment=True` for a data set without augmentation.
        FileNotFoundError: the data set is not prepared in the data directory
            and `download` is False; the message gives the `tfds build` command.
        ImportError: tensorflow-datasets is not installed.

    Example:
        >>> ds = load("cifar10", "test", batch_size=256, subset=1000)
        >>> images, labels = next(iter(ds))  # (256, 32, 32, 3), (256,)
    """
    spec = _spec(name)
    check_int(batch_size, "batch_size", minimum=1)
    if subset is not None:
        check_int(subset, "subset", minimum=1, allowed=" or None")
    if shuffle is None:
        shuffle = split.startswith("train")
    if augment is None:
        augment = (bool(spec.train_transform) and spec.augment_by_default
                   and split.startswith("train"))
    elif augment and spec.train_transform is None:
        raise ValueError(
            f"augment={augment!r}: {name!r} has no augmentation; pass "
            f"augment=None or False."
        )

    builder = _builder(name, data_dir)
    if download:
        builder.download_and_prepare()
    # `subset` means the first examples, so files are read in order then.
    shuffle_files = shuffle and subset is None
    tfds = _tfds()
    try:
        ds = builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=shuffle_files,
            # Images stay encoded until after the shuffle and cache: smaller.
            decoders={"image": tfds.decode.SkipDecoding()},
            # One file order per seed, read again on every pass: a resumed
            # process reads the files in the order the first one did.
            read_config=tfds.ReadConfig(
                shuffle_seed=seed,
                shuffle_reshuffle_each_iteration=False,
                try_autocache=False,
            ),
        )
    except AssertionError as error:  # how tfds reports a missing data set
        raise FileNotFoundError(
            f"Dataset {name!r} is not prepared in {builder.data_dir_root} and "
            f"download=False. Prepare it with `tfds build {name} --data_dir "
            f"{builder.data_dir_root}`, pass download=True, or point the "
            f"TFDS_DATA_DIR environment variable (or data_dir=) at a directory "
            f"holding a prepared copy ({name}/<version>/)."
        ) from error

    if subset is not None:
        ds = ds.take(subset)
    if spec.small:
        ds = ds.cache()
    channels = spec.stored_shape[-1]

    def preprocess(encoded, label, image_seed=None):
        image = tf.io.decode_image(
            encoded, channels=channels, expand_animations=False
        )
        image = tf.ensure_shape(image, spec.stored_shape)
        if augment:
            image = spec.train_transform(image, image_seed)
        elif spec.eval_transform is not None:
            image = spec.eval_transform(image)
        image = transforms.normalize(image, spec.mean, spec.std)
        image = tf.ensure_shape(image, spec.input_shape)
        return image, tf.cast(label, tf.int32)

    if not (shuffle or augment):
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    # Each pass is a function of (seed, epoch): the epoch comes from
    # EpochSync (Keras' epoch, exact after a resume) or, undriven, from a
    # fresh per-pass draw. Read when an iterator starts, inside flat_map.
    num_examples = int(ds.cardinality())
    position = epochs.EpochPosition(-(-num_examples // batch_size), batch_size)
    buffer = _SMALL_SHUFFLE_BUFFER if spec.small else _LARGE_SHUFFLE_BUFFER

    def one_epoch(random_key):
        key = tf.stack([tf.constant(seed, tf.int64), position.epoch_key(random_key)])
        examples = ds
        if shuffle:
            examples = epochs.stateless_shuffle(examples, key, buffer)
        # One [2] augmentation seed per example: (key, position in epoch).
        examples = examples.enumerate().map(
            lambda i, example: (tf.random.experimental.stateless_fold_in(key, i), example)
        )
        return examples.skip(position.examples_to_skip())

    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    ds = epochs.known_length(passes.flat_map(one_epoch), num_examples)
    ds = ds.map(
        lambda image_seed, example: preprocess(*example, image_seed=image_seed),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ds.ks_epoch_position = position  # for EpochSync
    return ds
