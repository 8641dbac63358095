"""Gradual magnitude pruning gives tfmot's masks, at tfmot's steps.

tfmot runs in its own process under tf_keras (importing it sets
TF_USE_LEGACY_KERAS=1); this process never imports it. Both sides start
from the same weights, train on the same batches with the same schedule;
the active count of every layer after every batch must be equal (both
prune at the same steps), and so must the final masks (with a structure;
unstructured, up to near-ties flipped by the two trainings' rounding).
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_sparse as ks

TFMOT_SCRIPT = """
import json, os
import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras
assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
work = os.environ["WORK"]
sched = tfmot.sparsity.keras
out = {}
for case in json.load(open(os.path.join(work, "cases.json"))):
    data = np.load(os.path.join(work, case["name"] + ".npz"))
    layers = [tf_keras.Input(tuple(case["input"]))]
    for kind, units in case["layers"]:
        if kind == "conv":
            layers.append(tf_keras.layers.Conv2D(units, 3))
        elif kind == "flatten":
            layers.append(tf_keras.layers.Flatten())
        else:
            layers.append(tf_keras.layers.Dense(units))
    model = tf_keras.Sequential(layers)
    model.set_weights([data[f"w{i}"] for i in range(case["weights"])])
    s = case["schedule"]
    if s["kind"] == "constant":
        schedule = sched.ConstantSparsity(s["sparsity"], begin_step=s["begin"], frequency=s["frequency"])
    else:
        schedule = sched.PolynomialDecay(0.0, s["sparsity"], begin_step=s["begin"], end_step=s["end"],
                                         frequency=s["frequency"])
    options = {k: tuple(v) for k, v in case["tfmot"].items()}
    model = sched.prune_low_magnitude(model, pruning_schedule=schedule, **options)
    model.compile(tf_keras.optimizers.SGD(case["lr"]),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = []

    class Counts(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            counts.append([int(layer.pruning_vars[0][1].numpy().sum())
                           for layer in model.layers if getattr(layer, "pruning_vars", None)])

    model.fit(data["x"], data["y"], batch_size=8, epochs=case["epochs"], shuffle=False,
              verbose=0, callbacks=[sched.UpdatePruningStep(), Counts()])
    out[case["name"]] = {"masks": [layer.pruning_vars[0][1].numpy().tolist()
                                   for layer in model.layers if getattr(layer, "pruning_vars", None)],
                         "counts": counts}
print(json.dumps(out))
"""

# tfmot's `sparsity_m_by_n=(z, m)` counts zeros: (2, 4) is NM(2, 4) here.
# Its N:M mask is chosen once, at its pruning step 1, which it counts in the
# forward pass of the first batch: from the initial weights. Ours prunes at
# the first scheduled step, so a schedule beginning at step 0.
CASES = [
    dict(name="nm_conv", structure=ks.structures.NM(2, 4), tfmot={"sparsity_m_by_n": (2, 4)},
         input=(6, 6, 4), layers=[["conv", 8], ["flatten", 0], ["dense", 8]],
         schedule=dict(kind="constant", sparsity=0.5, begin=0, frequency=3)),
    dict(name="nm_1_4", structure=ks.structures.NM(1, 4), tfmot={"sparsity_m_by_n": (3, 4)},
         input=(16,), layers=[["dense", 32], ["dense", 8]],
         schedule=dict(kind="constant", sparsity=0.75, begin=0, frequency=3)),
    dict(name="block", structure=ks.structures.Block((1, 4)), tfmot={"block_size": (1, 4)},
         input=(16,), layers=[["dense", 32], ["dense", 8]],
         schedule=dict(kind="poly", sparsity=0.75, begin=0, end=12, frequency=4)),
    # Unstructured, pruned every 2 steps while the weights move: the active
    # counts after every batch must agree (both prune at the same steps).
    # The two trainings (tf_keras, Keras 3) differ in the last bits, which
    # flips near-ties at the magnitude threshold: 2 of 512 positions here.
    dict(name="unstructured", structure=ks.structures.Unstructured(), tfmot={},
         input=(16,), layers=[["dense", 32], ["dense", 8]],
         schedule=dict(kind="poly", sparsity=0.8, begin=0, end=10, frequency=2),
         mismatches=0.01),
]


def _ours(case, data):
    layers = [keras.Input(case["input"])]
    for kind, units in case["layers"]:
        layers.append({"conv": lambda u: keras.layers.Conv2D(u, 3),
                       "flatten": lambda u: keras.layers.Flatten(),
                       "dense": lambda u: keras.layers.Dense(u)}[kind](units))
    dense = keras.Sequential(layers)
    dense.set_weights([data[f"w{i}"] for i in range(len(dense.weights))])
    model = ks.sparsify(dense, 0.0, structure=case["structure"])
    s = case["schedule"]
    if s["kind"] == "constant":
        schedule = ks.schedules.ConstantSparsity(s["sparsity"], begin_step=s["begin"],
                                                 frequency=s["frequency"])
    else:
        schedule = ks.schedules.PolynomialDecay(0.0, s["sparsity"], begin_step=s["begin"],
                                                end_step=s["end"], frequency=s["frequency"])
    model.compile(keras.optimizers.SGD(case["lr"]),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = []

    class Counts(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            counts.append([int(np.asarray(mw.mask).sum()) for mw in model.masked_weights])

    model.fit(data["x"], data["y"], batch_size=8, epochs=case["epochs"], shuffle=False,
              verbose=0, callbacks=[ks.callbacks.GradualMagnitudePruning(schedule), Counts()])
    return model, counts


def test_gradual_structured_masks_equal_tfmot(run_python, tmp_path):
    rng = np.random.RandomState(0)
    cases, arrays = [], {}
    for case in CASES:
        case = dict(case, lr=0.05, epochs=2)
        x = rng.rand(48, *case["input"]).astype("float32")
        arrays[case["name"]] = dict(x=x, y=(np.arange(48) % 8).astype("int64"), **_initial(case))
        np.savez(tmp_path / f"{case['name']}.npz", **arrays[case["name"]])
        cases.append({k: v for k, v in case.items() if k != "structure"}
                     | {"weights": len(_initial(case))})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    theirs = json.loads(run_python(TFMOT_SCRIPT, env={"TF_USE_LEGACY_KERAS": "1",
                                                      "WORK": os.fspath(tmp_path)})
                        .strip().splitlines()[-1])
    for case in CASES:
        model, counts = _ours(dict(case, lr=0.05, epochs=2), arrays[case["name"]])
        # Both prune at the same steps: the active count after every batch.
        assert counts == theirs[case["name"]]["counts"], case["name"]
        ours = [np.asarray(mw.mask) for mw in model.masked_weights]
        expected = [np.asarray(m, "float32") for m in theirs[case["name"]]["masks"]]
        sparsity = case["schedule"]["sparsity"]
        for mine, their, mw in zip(ours, expected, model.masked_weights):
            assert bool(case["structure"].validate(mine)), case["name"]
            # Within one weight of the target (counts are whole weights).
            assert abs(mine.mean() - (1 - sparsity)) <= 1.0 / mine.size, case["name"]
            allowed = case.get("mismatches", 0.0) * mine.size
            assert np.sum(mine != their) <= allowed, f"{case['name']} {mw.path}"
            assert mine.sum() == their.sum(), f"{case['name']} {mw.path}"


def _initial(case):
    """Fixed initial weights of the case's layers (Glorot-like, seeded)."""
    rng = np.random.RandomState(len(case["name"]))
    shape, weights = case["input"], {}
    for kind, units in case["layers"]:
        if kind == "flatten":
            shape = (int(np.prod(shape)),)
            continue
        if kind == "conv":
            kernel = (3, 3, shape[-1], units)
            shape = (shape[0] - 2, shape[1] - 2, units)
        else:
            kernel = (shape[-1], units)
            shape = (units,)
        index = len(weights)
        weights[f"w{index}"] = rng.uniform(-0.5, 0.5, kernel).astype("float32")
        weights[f"w{index + 1}"] = rng.uniform(-0.1, 0.1, (units,)).astype("float32")
    return weights
