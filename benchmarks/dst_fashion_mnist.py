"""RigL, SET and DST-EE (and a static mask) on Fashion-MNIST, LeNet-300-100 at 98%.

`python -m benchmarks.dst_fashion_mnist [--epochs 5] [--subset N] [--delta-t 100]
[--methods ...]`
trains each method from the same initial weights and mask and prints one
JSON line per method: loss per epoch, test accuracy, sparsity, ITOP rate and
mean update time. Needs the prepared TFDS data in `$TFDS_DATA_DIR`.
"""

import argparse
import json
import time

import keras

import keras_sparse as ks

# SET on RigL's schedule (the RigL paper's SET baseline), so only rules differ.
METHODS = {
    "static": lambda delta_t: ks.callbacks.Static(),
    "rigl": lambda delta_t: ks.callbacks.RigL(delta_t=delta_t),
    "set": lambda delta_t: ks.callbacks.SET(delta_t=delta_t, drop_schedule="cosine"),
    "dstee": lambda delta_t: ks.callbacks.DSTEE(delta_t=delta_t, c=1e-4),
}


def run(method, epochs, subset=None, delta_t=100, batch_size=128, sparsity=0.98, seed=0):
    """Trains one method; returns its numbers as a dict."""
    keras.utils.set_random_seed(seed)
    train = ks.data.load("fashion_mnist", "train", batch_size=batch_size, subset=subset, seed=seed)
    test = ks.data.load("fashion_mnist", "test", batch_size=1000)
    model = ks.sparsify(ks.applications.lenet_300_100(), sparsity, distribution="erk", seed=seed)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(train, epochs=epochs, verbose=0, shuffle=False,  # load() shuffles
                        callbacks=[METHODS[method](delta_t)])
    seconds = time.perf_counter() - start
    _, test_accuracy = model.evaluate(test, verbose=0)
    logs = history.history
    updates = logs.get("dst/updates", [])
    return dict(
        method=method,
        loss=[round(v, 4) for v in logs["loss"]],
        train_accuracy=[round(v, 4) for v in logs["accuracy"]],
        test_accuracy=round(float(test_accuracy), 4),
        sparsity=round(ks.sparsity_report(model)[-1]["sparsity"], 5),
        itop=[round(v, 4) for v in logs.get("dst/itop", [])],
        updates=sum(updates),
        update_ms=round(sum(u * ms for u, ms in zip(updates, logs.get("dst/update_ms", [])))
                        / max(sum(updates), 1), 2),
        seconds=round(seconds, 1),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--subset", type=int, default=None, help="first N training examples")
    parser.add_argument("--delta-t", type=int, default=100, help="steps between mask updates")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args(argv)
    for method in args.methods:
        print(json.dumps(run(method, args.epochs, args.subset, args.delta_t)), flush=True)


if __name__ == "__main__":
    main()
