"""The tfmot side of `gradual_vs_tfmot`: `prune_low_magnitude` under tf_keras.

Runs only in its own process with `TF_USE_LEGACY_KERAS=1` (importing
tensorflow_model_optimization switches the whole process to tf_keras), and
never imports keras_sparse. It trains LeNet-300-100 exactly like the
keras_sparse worker: same arrays, initial weights, batches, optimizer and
schedule, all read from the work directory the parent wrote.
"""

import json
import os
from pathlib import Path

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise RuntimeError("benchmarks.tfmot_worker must run with TF_USE_LEGACY_KERAS=1.")

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from benchmarks import harness

_state = {}


def _lenet(input_shape, num_classes):
    # Layer for layer the ks.applications.lenet_300_100 graph (Dense, then activation).
    return tf_keras.Sequential([
        tf_keras.Input(input_shape),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(300),
        tf_keras.layers.Activation("relu"),
        tf_keras.layers.Dense(100),
        tf_keras.layers.Activation("relu"),
        tf_keras.layers.Dense(num_classes),
    ])


def setup(workdir, prune=True):
    """Builds the model; `prune=False` gives the plain tf_keras reference."""
    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    arrays = np.load(workdir / "data.npz")
    model = _lenet(arrays["x_train"].shape[1:], config["num_classes"])
    weights = np.load(workdir / "initial_weights.npz")
    model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=config["initial_sparsity"], final_sparsity=config["final_sparsity"],
        begin_step=config["begin_step"], end_step=config["end_step"], frequency=config["frequency"],
    )
    if prune:
        model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    model.compile(
        optimizer=tf_keras.optimizers.SGD(**config["optimizer"]),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()] if prune else []
    _state.update(config=config, arrays=arrays, model=model, callbacks=callbacks)
    return {"framework": f"tfmot {tfmot.__version__}, tf_keras {tf_keras.__version__}"}


def train():
    config, arrays, model = _state["config"], _state["arrays"], _state["model"]
    dataset = (
        tf.data.Dataset.from_tensor_slices((arrays["x_train"], arrays["y_train"]))
        .repeat()
        .batch(config["batch_size"], drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    pacer = harness.paced(tf_keras.callbacks.Callback, config["block_steps"])()
    model.fit(dataset, epochs=1, steps_per_epoch=config["total_steps"], verbose=0,
              callbacks=_state["callbacks"] + [pacer])
    return {"seconds": pacer.last_seconds, "step": config["total_steps"]}


def evaluate():
    arrays, model = _state["arrays"], _state["model"]
    _, accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=1000, verbose=0)
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    kernels = [layer.kernel.numpy() for layer in stripped.layers if hasattr(layer, "kernel")]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    return {"accuracy": float(accuracy), "sparsity": zeros / sum(k.size for k in kernels)}


if __name__ == "__main__":
    harness.serve({"setup": setup, "train": train, "evaluate": evaluate})
