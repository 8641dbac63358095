"""Writes the `.keras` fixture of tests/test_legacy_files.py.

Run ONCE with the code as it was before the layout change (commit 7e38d38:
`keras_sparse/models/`, `DynamicSparsity(schedule=...)`), from the repository
root: `python tests/data/make_legacy_fixture.py`. The files it writes are
committed; the test checks that today's code still loads them.
"""

import json
import os

import keras
import numpy as np

import keras_sparse as ks

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([
        keras.Input((6, 3)),
        keras.layers.Conv1D(4, 3, name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="logits"),
    ], name="legacy_mlp")
    model = ks.sparsify(dense, 0.7, distribution="erk", seed=1)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 3)).astype("float32")
    y = rng.integers(0, 3, size=64)
    rigl = ks.callbacks.RigL(delta_t=2, end_step=12, schedule="cosine", alpha=0.3, seed=3)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[rigl])
    model.save(os.path.join(HERE, "legacy_rigl_model.keras"))
    np.savez(os.path.join(HERE, "legacy_rigl_model.npz"),
             x=x[:8], y_pred=keras.ops.convert_to_numpy(model(x[:8])),
             **{v.path.replace("/", "|"): keras.ops.convert_to_numpy(v) for v in model.weights})
    drop = ks.callbacks.drop_schedules.LinearDecay()
    configs = {
        "rigl": rigl,
        "dynamic": ks.callbacks.DynamicSparsity(grow="random", schedule=drop, delta_t=5),
        "set": ks.callbacks.SET(schedule="cosine"),
        "snfs": ks.callbacks.SNFS(momentum=0.8),
        "dstee": ks.callbacks.DSTEE(c=1e-3),
        "gradual": ks.callbacks.GradualMagnitudePruning(
            ks.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10, frequency=2)),
        "static": ks.callbacks.Static(),
        "kstarts": ks.callbacks.KStarts(0.5, k=3),
        "dissipating": ks.callbacks.DissipatingGradients(0.5),
    }
    with open(os.path.join(HERE, "legacy_callbacks.json"), "w") as f:
        json.dump({k: keras.saving.serialize_keras_object(v) for k, v in configs.items()},
                  f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
