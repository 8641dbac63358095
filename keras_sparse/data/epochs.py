"""Epoch-indexed input streams: exact resume of shuffled, augmented data.

A `load` training pipeline draws its shuffle order and its augmentation
randomness from `(seed, epoch)`, with stateless ops, so epoch `k` is the
same batches in every process. `EpochSync`, a Keras callback, tells the
pipeline which epoch Keras is running and, when a run resumes in the middle
of an epoch (`BackupAndRestore(save_freq=<int>)`), how many of that epoch's
batches were already trained, so they are not trained twice.
`SparseModel.fit` adds it by itself; with a plain `keras.Model`, pass it.
"""

import warnings

import keras
import tensorflow as tf

from keras_sparse.utils.keras_compat import restored_epoch

_RAN_OUT = "Your input ran out of data"  # what Keras warns when an epoch ends early


class EpochPosition:
    """Where a pipeline is: Keras epoch, batches to skip, and who says so.

    Variables read by the pipeline each time an iterator starts (at the
    first batch of an epoch), written by `EpochSync`. Undriven (no
    callback), each pass draws a fresh epoch key, as plain iteration of a
    `reshuffle_each_iteration` pipeline would.
    """

    def __init__(self, batches_per_epoch, batch_size):
        self.batches_per_epoch = int(batches_per_epoch)
        self.batch_size = int(batch_size)
        with tf.init_scope(), tf.device("/cpu:0"):
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
            self.skip = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_skip")
            self.driven = tf.Variable(False, trainable=False, name="data_driven")

    def epoch_key(self, random_key):
        """The epoch number when driven by `EpochSync`, else `random_key`."""
        return tf.where(self.driven, self.epoch, random_key)

    def with_sync(self, dataset, callbacks):
        """`callbacks` plus `EpochSync(dataset)` unless listed (for `fit`)."""
        return with_epoch_sync(dataset, callbacks)

    def examples_to_skip(self):
        return tf.where(self.driven, self.skip * self.batch_size, tf.constant(0, tf.int64))


def stateless_shuffle(examples, key, buffer):
    """Shuffles `examples` in windows of `buffer`, in an order fixed by `key`.

    `Dataset.shuffle` takes its seed from TensorFlow's global seed as well
    and refuses a tensor seed once a global seed is set, so the epoch cannot
    choose its order. Here each window of `buffer` consecutive examples is
    permuted by `stateless_shuffle` with seed `(key, window index)`.
    Interpretation: when the data set fits in one window (MNIST, CIFAR) this
    is a uniform shuffle of the whole set; for larger ones (ImageNet) a
    block shuffle, after the seeded shuffle of the files.
    """

    def permute(index, window):
        size = tf.shape(tf.nest.flatten(window)[0])[0]
        seed = tf.random.experimental.stateless_fold_in(key, index)
        order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=seed)
        return tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda t: tf.gather(t, order), window)
        )

    return examples.batch(buffer).enumerate().flat_map(permute)


def known_length(examples, length):
    """`examples` (any length up to `length`) with cardinality `length`.

    Keras reads the cardinality once per `fit` for its step count; an epoch
    that ends early (a resumed one) must still report the full length, or
    Keras shortens every later epoch to it. A stream that reports infinite
    length but stops when `examples` stops (`choose_from_datasets` with
    `stop_on_empty_dataset`, beside an endless filler never chosen), zipped
    with `range(length)`, reports `length` and ends with `examples`.
    """
    filler = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), examples.element_spec)
    ).repeat()
    always_first = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    stream = tf.data.Dataset.choose_from_datasets(
        [examples, filler], always_first, stop_on_empty_dataset=True
    )
    return tf.data.Dataset.zip(tf.data.Dataset.range(length), stream).map(lambda _, x: x)


class EpochSync(keras.callbacks.Callback):
    """Keeps a `ks.data.load` training pipeline on Keras' epoch.

    At each epoch start it sets the pipeline's epoch to Keras' epoch index,
    so the shuffle order and augmentation are those of that epoch, also in
    a process resumed by `BackupAndRestore` or by `fit(initial_epoch=k)`.
    When the fit resumes inside an epoch (a backup saved with an integer
    `save_freq`), Keras replays that epoch from its first step; this
    callback makes the pipeline skip the batches already trained, found
    from the model's step counter: `optimizer.iterations - epoch * steps`.
    The resumed epoch then ends early (Keras' "ran out of data" warning is
    silenced for it), and the run continues exactly as if never stopped.

    Interpretation: the step counter locates the position only when the
    interrupted fit started at step 0 with this pipeline (the model's first
    fit); otherwise the resumed epoch starts from its first batch, with a
    warning. `steps_per_epoch` other than the pipeline's length leaves the
    pipeline undriven (each pass a fresh order), with a warning.

    `SparseModel.fit` adds this callback by itself, first in the list, when
    `x` comes from `ks.data.load`; pass it yourself, first, to a plain
    `keras.Model`. (Keras 3.15 counts the call that finds a shortened epoch's
    data exhausted as one more `optimizer.iterations`; this callback takes
    it back at that epoch's end, before callbacks listed after it.)

    Args:
        dataset: a training pipeline returned by `ks.data.load` (shuffled or
            augmented).

    Raises:
        TypeError: if `dataset` is not such a pipeline.

    Example:

    ```python
    train = ks.data.load("cifar10", "train", batch_size=128)
    model.fit(train, epochs=10, callbacks=[
        keras.callbacks.BackupAndRestore("backup", save_freq=100),
        ks.data.EpochSync(train)])
    ```
    """

    def __init__(self, dataset):
        super().__init__()
        position = getattr(dataset, "ks_epoch_position", None)
        if not isinstance(position, EpochPosition):
            raise TypeError(
                "EpochSync: `dataset` must be a shuffled or augmented training "
                f"pipeline returned by ks.data.load; got {type(dataset).__name__} "
                "without one (transformations such as .map() or .take() return a "
                "new dataset without it)."
            )
        self.position = position
        self._first = False
        self._end_step = None
        self._quiet = None

    def on_train_begin(self, logs=None):
        steps = (self.params or {}).get("steps")
        self._first = True
        if steps is not None and steps != self.position.batches_per_epoch:
            warnings.warn(
                f"EpochSync: fit runs {steps} steps per epoch but the pipeline has "
                f"{self.position.batches_per_epoch} batches; the data order cannot "
                "follow Keras' epochs and exact resume is off. Leave steps_per_epoch "
                "unset.", stacklevel=2)
            self.position.driven.assign(False)
            return
        self.position.driven.assign(True)

    def on_epoch_begin(self, epoch, logs=None):
        if not bool(self.position.driven.numpy()):
            return
        skip = self._skip(epoch) if self._first else 0
        self._first = False
        self.position.epoch.assign(epoch)
        self.position.skip.assign(skip)
        self._end_step = None
        if skip:
            self._end_step = (int(self.model.optimizer.iterations.numpy())
                              + self.position.batches_per_epoch - skip)
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            warnings.filterwarnings("ignore", message=_RAN_OUT)

    def _skip(self, epoch):
        """Batches of `epoch` already trained before this fit resumed."""
        resumed = epoch > 0 or restored_epoch(self.model) is not None
        if not resumed or self.model.optimizer is None:
            return 0
        steps = self.position.batches_per_epoch
        done = int(self.model.optimizer.iterations.numpy()) - epoch * steps
        if 0 <= done <= steps:
            return done
        warnings.warn(
            f"EpochSync: resuming at epoch {epoch}, but the step counter "
            f"({done + epoch * steps}) is not within that epoch's {steps} steps, "
            "so the interrupted fit did not start at step 0 with this pipeline; "
            f"epoch {epoch} starts from its first batch.", stacklevel=2)
        return 0

    def on_epoch_end(self, epoch, logs=None):
        # Keras 3.15's TensorFlow trainer counts the call that finds the data
        # exhausted as a step (optimizer.iterations + 1, no update): undo it,
        # first among the callbacks, so step-driven schedules stay exact.
        if self._end_step is not None:
            iterations = self.model.optimizer.iterations
            if int(iterations.numpy()) == self._end_step + 1:
                iterations.assign(self._end_step)
            self._end_step = None
        if self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def on_train_end(self, logs=None):
        if self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None
        self.position.driven.assign(False)


def with_epoch_sync(dataset, callbacks):
    """`callbacks` plus an `EpochSync(dataset)` if `dataset` needs one.

    For `SparseModel.fit`: a `ks.data.load` training pipeline given as `x`
    follows Keras' epochs without the user listing the callback.
    """
    position = getattr(dataset, "ks_epoch_position", None)
    if not isinstance(position, EpochPosition) or isinstance(
        callbacks, keras.callbacks.CallbackList
    ):
        return callbacks
    callbacks = list(callbacks or [])
    if not any(isinstance(c, EpochSync) and c.position is position for c in callbacks):
        callbacks.insert(0, EpochSync(dataset))  # first: see on_epoch_end
    return callbacks
