"""One worker of test_multiworker.py: MultiWorkerMirroredStrategy on loopback.

Run as `python multiworker_check.py OUT_DIR RULE...` with TF_CONFIG set (one
process per worker). Trains a tiny sparse model for each mask rule on
synthetic data sharded across the workers, and writes
OUT_DIR/worker{index}.npz with, per rule, the initial and final masks, the
final weights, the number of mask updates, and the sum of this worker's first
local batch (evidence that the workers read different data); also the first
rule trained without a strategy in this process alone, under "single-".
"""

import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Before any other TensorFlow call: the collective runtime starts here.
strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

import keras_sparse as ks  # noqa: E402

GLOBAL_BATCH = 16
STEPS_PER_EPOCH = 6
EPOCHS = 2


def dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)  # each worker keeps its share
    return data.with_options(options)


def callback(rule):
    if rule == "rigl":
        return ks.callbacks.RigL(delta_t=2)
    if rule == "set":
        return ks.callbacks.SET(delta_t=2, seed=3)
    return ks.callbacks.Static()


def train(rule, distributed=True):
    keras.utils.set_random_seed(0)  # the same initial model on every worker
    with strategy.scope() if distributed else contextlib.nullcontext():
        inputs = keras.Input((8,))
        hidden = ks.layers.SparseDense(16, activation="relu")(inputs)
        model = ks.SparseModel(inputs, ks.layers.SparseDense(2)(hidden))
        ks.pruning.random(model, 0.7, distribution="uniform", seed=1)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    initial = model.get_masks()
    history = model.fit(dataset(), epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
                        verbose=0, callbacks=[callback(rule)])
    # By position: layer names differ between the models of one process.
    out = {f"{rule}:initial:{i}": mask for i, mask in enumerate(initial.values())}
    out.update({f"{rule}:final:{i}": mask for i, mask in enumerate(model.get_masks().values())})
    out.update({f"{rule}:weight:{i}": mw.weight.numpy()
                for i, mw in enumerate(model.masked_weights)})
    out[f"{rule}:updates"] = np.array(sum(history.history.get("dst/updates", [0])))
    out[f"{rule}:loss"] = np.array(history.history["loss"])
    out[f"{rule}:evaluate"] = np.array(model.evaluate(dataset(), steps=2, verbose=0))
    return out


def first_local_batch_sum():
    batches = iter(strategy.experimental_distribute_dataset(dataset()))
    x, _ = next(batches)
    return float(sum(np.sum(v.numpy()) for v in strategy.experimental_local_results(x)))


def main(out_dir, rules):
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    arrays = {"first_batch_sum": np.array(first_local_batch_sum()),
              "replicas": np.array(strategy.num_replicas_in_sync)}
    for rule in rules:
        arrays.update(train(rule))
    # The same training in this process alone, on the global batches.
    arrays.update({f"single-{k}": v for k, v in train(rules[0], distributed=False).items()})
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **arrays)
    print("DONE", index)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
