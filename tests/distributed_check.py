"""Run by test_distributed.py in its own process: MirroredStrategy on 2 CPUs.

Trains the same sparse model on two replicas and on one device, and prints a
JSON summary (replica agreement, differences to the single-device run).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import keras_sparse as ks  # noqa: E402

CAPTURED_STEP = 2


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="tanh")(inputs)
    model = ks.sparsify(keras.Model(inputs, keras.layers.Dense(3)(x)), 0.5, seed=3)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    model.request_dense_gradients(when=lambda step: tf.equal(step, CAPTURED_STEP))
    return model


def train(model, x, y):
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0)  # 4 steps
    # A mask change between fits, as a mask rule makes it.
    model.set_masks([np.roll(mw.mask.numpy(), 1, axis=0) for mw in model.masked_weights])
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0)


def replicas_equal(variable):
    values = [v.numpy() for v in variable.value.values]
    return len(values) == 2 and all(np.array_equal(values[0], v) for v in values[1:])


def main():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    train(mirrored, x, y)
    single = build()
    train(single, x, y)
    weights = list(zip(mirrored.masked_weights, single.masked_weights))
    summary = {
        "replicas": strategy.num_replicas_in_sync,
        "masks_identical_on_replicas": all(replicas_equal(a.mask) for a, _ in weights),
        "weights_identical_on_replicas": all(replicas_equal(a.weight) for a, _ in weights),
        "masks_equal_single": all(np.array_equal(a.mask.numpy(), b.mask.numpy())
                                  for a, b in weights),
        "inactive_exactly_zero": all(
            np.all(a.weight.numpy()[a.mask.numpy() == 0] == 0) for a, _ in weights),
        "max_weight_diff": max(float(np.abs(a.weight.numpy() - b.weight.numpy()).max())
                               for a, b in weights),
        "max_dense_gradient_diff": max(
            float(np.abs(g.numpy() - h.numpy()).max())
            for g, h in zip(mirrored.dense_gradients(), single.dense_gradients())),
        "dense_gradient_scale": max(float(np.abs(h.numpy()).max())
                                    for h in single.dense_gradients()),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
