"""The data, models and optimizer every benchmark shares.

Both sides of a comparison get the same arrays, the same initial weights and
the same optimizer settings from here.
"""

import os

import keras
import numpy as np
import tensorflow as tf

import keras_sparse as ks
from keras_sparse import data as ks_data
from keras_sparse import applications as ks_applications

# model (a `ks.applications` name) -> its TFDS data set.
MODELS = {
    "lenet_300_100": "fashion_mnist",
    "resnet20": "cifar10",
}
SHAPES = {"fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
NUM_CLASSES = 10
# Plain SGD with momentum: identical in Keras 3 and tf_keras.
OPTIMIZER = dict(learning_rate=0.02, momentum=0.9)


def arrays(name, examples, split="train"):
    """The first `examples` of a TFDS split as numpy arrays, normalized.

    Reads `$TFDS_DATA_DIR` through `ks.data.load` (never downloads); when the
    data set is not prepared there, returns standard-normal images of the
    same shape with random labels.

    Returns:
        `(x, y, source)`; `source` says which data was used, for the JSON.

    Example:

    ```python
    x, y, source = arrays("fashion_mnist", 1024)
    ```
    """
    if name not in SHAPES:
        raise ValueError(f"`name` must be one of {sorted(SHAPES)}; got {name!r}.")
    try:
        ds = ks_data.load(name, split, batch_size=examples, shuffle=False, augment=False, subset=examples)
        x, y = next(iter(ds))
        source = f"tfds {name} {split}[:{examples}] from {os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')}"
        return x.numpy(), y.numpy(), source
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((examples, *SHAPES[name]), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, examples).astype(np.int32)
        return x, y, f"synthetic {name}-shaped {examples} examples (TFDS copy not found)"


def batches(x, y, batch_size):
    """Endless full batches of in-memory arrays (no input-pipeline cost)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def build(model_name):
    """A fresh dense Keras model from `ks.applications` (random init, seeded)."""
    keras.utils.set_random_seed(0)
    return ks_applications.get(model_name)


def compile_model(model):
    """Compiles with the shared optimizer, loss and metric."""
    model.compile(
        optimizer=keras.optimizers.SGD(**OPTIMIZER),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def dense_and_sparse(model_name, sparsity=0.9, distribution="erk"):
    """A compiled dense model and its compiled sparse copy (same weights)."""
    dense = build(model_name)
    sparse = ks.sparsify(dense, sparsity, distribution=distribution, seed=0)
    return compile_model(dense), compile_model(sparse)


def stepper(model, dataset, steps):
    """A callable running `steps` train steps of `model` (no fit loop).

    Calls Keras' own compiled `train_function` on an iterator, exactly what
    `fit` runs per step, without callbacks; it returns after the last step's
    loss is on the host, so asynchronous devices are timed completely.
    """
    if isinstance(model, ks.SparseModel):
        model.apply_masks()  # what `fit` does first
    model.make_train_function()
    iterator = iter(dataset)

    def run():
        for _ in range(steps):
            logs = model.train_function(iterator)
        float(logs["loss"])

    return run
