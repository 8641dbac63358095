"""Each dynamic-sparsity method against a NumPy reference of the drop-and-grow rules.

The callback's update (one compiled tf.function over all layers) is run on a
tiny model with hand-set weights, masks, dense gradients, counters and
optimizer slots; the reference below recomputes the masks, weights and slots
from the same inputs with NumPy only.
"""

import math

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.callbacks import drop_grow_indexed
from keras_sparse.callbacks.drop_grow import Exploration, MeanScoreRedistribution
from keras_sparse.masks import stateless_uniform
from keras_sparse.model import DENSE_GRAD
from keras_sparse.optimizer_slots import slots_for

STEP, DELTA_T, END, ALPHA = 30, 10, 100, 0.3
ROUND = 3  # updates at steps 10, 20, 30


# -- the reference ---------------------------------------------------------------


def top(scores, k):
    """Ones at the k largest scores; ties go to the lower flat index."""
    flat = scores.ravel()
    chosen = np.argsort(-flat, kind="stable")[:k]
    mask = np.zeros(flat.size, np.float32)
    mask[chosen] = 1.0
    return mask.reshape(scores.shape)


def allocate(total, weights, capacity):
    """Regrowth per layer: floored proportional quotas, capped, repeated."""
    alloc = np.zeros(len(weights), np.int64)
    while alloc.sum() < total:
        room = alloc < capacity
        shares = np.where(room, weights, 0.0)
        if shares.sum() <= 0:
            shares = room.astype(np.float64)
        quota = (total - alloc.sum()) * shares / shares.sum()
        add = np.minimum(np.floor(quota).astype(np.int64), capacity - alloc)
        if add.sum() == 0:
            add = np.zeros_like(alloc)
            add[np.argmax(np.where(room, quota, -1.0))] = 1
        alloc += add
    return alloc


def reference(weights, masks, grow_scores, fraction, redistribute=False, grow_init=0.0):
    """New masks, the masks after the drop, and new weights (the rules as documented in DynamicSparsity)."""
    kept, drops = [], []
    for w, m in zip(weights, masks):
        n_active = int(m.sum())
        n = int(fraction * n_active)
        if n_active == m.size and not redistribute:
            n = 0
        kept.append(top(np.where(m > 0, np.abs(w), -np.inf), n_active - n))
        drops.append(n)
    grows = drops
    if redistribute:
        means = [np.sum(g * m, dtype=np.float32) / np.float32(max(m.sum(), 1))
                 for g, m in zip(grow_scores, masks)]
        room = [k.size - int(k.sum()) for k in kept]
        grows = allocate(sum(drops), np.array(means), np.array(room))
    new = [k + top(np.where(k > 0, -np.inf, g), int(n)) for k, g, n in zip(kept, grow_scores, grows)]
    new_weights = [w * k + grow_init * (m - k) for w, k, m in zip(weights, kept, new)]
    return new, kept, new_weights


def cosine(step):
    return ALPHA / 2 * (1 + math.cos(math.pi * step / END))


# -- the setup --------------------------------------------------------------------


def tiny_model(optimizer):
    inputs = keras.Input((6,))
    hidden = ks.layers.SparseDense(5, name="a")(inputs)
    outputs = ks.layers.SparseDense(4, name="b")(hidden)
    model = ks.SparseModel(inputs, outputs)
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def set_state(model, callback, seed=0, densities=(0.5, 0.4)):
    """Random masks, weights with ties, gradients, slots; returns them."""
    rng = np.random.RandomState(seed)
    callback.set_model(model)
    state = dict(w=[], m=[], g=[], slots=[])
    for mw, density in zip(model.masked_weights, densities):
        shape = tuple(mw.weight.shape)
        mask = top(rng.rand(*shape), round(density * mw.size))
        w = rng.randn(*shape).astype(np.float32)
        w.flat[:3] = [0.0, 0.5, -0.5]  # exact zero (a fresh grow) and a tie
        w *= mask
        g = np.round(rng.randn(*shape) * 4) / 4  # many exact ties
        mw.mask.assign(mask)
        mw.weight.assign(w)
        if mw.layer.has_mask_state(DENSE_GRAD):  # SET reads no gradient
            mw.state(DENSE_GRAD).assign(g.astype(np.float32))
        slots = []
        for slot in slots_for(model.optimizer, mw.weight):
            value = (rng.rand(*shape).astype(np.float32) + 0.1) * mask
            slot.assign(value)
            slots.append(value)
        state["w"].append(w)
        state["m"].append(mask)
        state["g"].append(g.astype(np.float32))
        state["slots"].append(slots)
    return state


def check(model, state, new, kept, new_weights):
    for i, mw in enumerate(model.masked_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mw.mask), new[i], err_msg=mw.path)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mw.weight), new_weights[i], rtol=0, atol=0)
        slots = slots_for(model.optimizer, mw.weight)
        assert slots, "the optimizer must have slots for this test"
        for slot, before in zip(slots, state["slots"][i]):
            # Kept connections keep their slots; dropped and grown are reset.
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(slot), before * kept[i])


def callback(kind, **kwargs):
    common = dict(delta_t=DELTA_T, end_step=END, alpha=ALPHA, drop_schedule="cosine", **kwargs)
    return {
        "rigl": lambda: ks.callbacks.RigL(**common),
        "set": lambda: ks.callbacks.SET(seed=7, **common),
        "snfs": lambda: ks.callbacks.SNFS(**common),
        "dstee": lambda: ks.callbacks.DSTEE(c=0.5, eps=1.0, **common),
    }[kind]()


# -- the tests --------------------------------------------------------------------


@pytest.fixture(params=["dense", "indexed"])
def round_path(request, monkeypatch):
    """Runs a test with the dense round, then with the indexed round forced
    on these tiny layers (it otherwise starts at `MIN_SIZE` weights)."""
    if request.param == "indexed":
        monkeypatch.setattr(drop_grow_indexed, "MIN_SIZE", 0)
    return request.param


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("kind", ["rigl", "set", "snfs", "dstee"])
def test_update_matches_reference(kind, optimizer, round_path):
    opt = keras.optimizers.SGD(0.1, momentum=0.9) if optimizer == "sgd_momentum" else keras.optimizers.Adam()
    model = tiny_model(opt)
    cb = callback(kind)
    state = set_state(model, cb, seed=len(kind))
    if kind == "snfs":  # layer b's momentum is much larger: it gets more regrowth
        state["g"][1] *= 8
        model.masked_weights[1].state(DENSE_GRAD).assign(state["g"][1])
    grow_scores = [np.abs(g) for g in state["g"]]
    if kind == "set":
        grow_scores = [
            keras.ops.convert_to_numpy(stateless_uniform(m.shape, 7, STEP, i))
            for i, m in enumerate(state["m"])
        ]
    if kind == "dstee":
        counts = []
        for mw in model.masked_weights:
            n = np.random.RandomState(1).randint(0, ROUND, size=mw.weight.shape).astype(np.float32)
            mw.state(Exploration.COUNT).assign(n)
            counts.append(n)
        grow_scores = [
            np.abs(g) + np.float32(0.5) * np.sqrt(np.float32(math.log(ROUND)) / (n + m + np.float32(1.0)))
            for g, n, m in zip(state["g"], counts, state["m"])
        ]
    new, kept, new_weights = reference(state["w"], state["m"], grow_scores, cosine(STEP),
                                       redistribute=kind == "snfs")
    stats = cb.update_masks(STEP)
    check(model, state, new, kept, new_weights)
    for i, mw in enumerate(model.masked_weights):
        assert stats[mw.path]["dropped"] == state["m"][i].sum() - kept[i].sum()
        assert stats[mw.path]["changed"] == int(((new[i] > 0) & (state["m"][i] == 0)).sum())
    if kind != "snfs":  # per-layer sparsity is unchanged
        for i in range(2):
            assert new[i].sum() == state["m"][i].sum()
    else:  # SNFS moves regrowth between layers; the total stays
        assert sum(n.sum() for n in new) == sum(m.sum() for m in state["m"])
        assert stats["b/kernel"]["grown"] > stats["b/kernel"]["dropped"]
    if kind == "dstee":  # the counters advanced by the mask of the round
        for mw, n, m in zip(model.masked_weights, counts, state["m"]):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(mw.state(Exploration.COUNT)), n + m)


def test_grow_init_and_regrown_weights_restart(round_path):
    model = tiny_model(keras.optimizers.SGD(0.1, momentum=0.9))
    cb = ks.callbacks.RigL(delta_t=DELTA_T, end_step=END, grow_init=0.25)
    state = set_state(model, cb, seed=3)
    # Give just-dropped positions the largest gradient: they come straight back.
    for mw, w, m, g in zip(model.masked_weights, state["w"], state["m"], state["g"]):
        g[:] = np.where(m > 0, 100.0 - np.abs(w), 0.0)
        mw.state(DENSE_GRAD).assign(g)
    new, kept, new_weights = reference(state["w"], state["m"], [np.abs(g) for g in state["g"]],
                                       cosine(STEP), grow_init=0.25)
    cb.update_masks(STEP)
    check(model, state, new, kept, new_weights)
    for n, m, k in zip(new, state["m"], kept):
        np.testing.assert_array_equal(n, m)  # same mask ...
        assert (k < m).any()  # ... but the regrown weights restarted at 0.25


def test_fully_dense_layer_is_left_alone(round_path):
    model = tiny_model(keras.optimizers.SGD(0.1, momentum=0.9))
    cb = ks.callbacks.RigL(delta_t=DELTA_T, end_step=END)
    state = set_state(model, cb, seed=4, densities=(1.0, 0.4))
    new, kept, new_weights = reference(state["w"], state["m"], [np.abs(g) for g in state["g"]], cosine(STEP))
    cb.update_masks(STEP)
    check(model, state, new, kept, new_weights)
    np.testing.assert_array_equal(new_weights[0], state["w"][0])


def test_dstee_with_c_zero_equals_rigl(round_path):
    results = []
    for cb in (ks.callbacks.RigL(delta_t=DELTA_T, end_step=END),
               ks.callbacks.DSTEE(c=0.0, delta_t=DELTA_T, end_step=END)):
        model = tiny_model(keras.optimizers.Adam())
        set_state(model, cb, seed=5)
        for step in (10, 20, 30):
            cb.update_masks(step)
        results.append([keras.ops.convert_to_numpy(mw.mask) for mw in model.masked_weights])
    for rigl, dstee in zip(*results):
        np.testing.assert_array_equal(rigl, dstee)


@pytest.mark.parametrize(
    "total,weights,capacity",
    [
        (7, [0.5, 0.25, 0.25], [10, 10, 10]),
        (9, [0.9, 0.1, 0.0], [2, 10, 10]),  # capped layer passes its share on
        (5, [0.0, 0.0, 0.0], [1, 3, 3]),  # no signal: equal shares
        (3, [1e-9, 1.0, 1e-9], [5, 0, 5]),  # the favourite has no room
        (13, [0.3, 0.3, 0.4], [5, 5, 3]),  # everything full
    ],
)
def test_redistribution_allocation_matches_reference(total, weights, capacity):
    got = MeanScoreRedistribution().allocate(
        np.int64(total), np.array(weights, np.float64), np.array(capacity, np.int64))
    got = keras.ops.convert_to_numpy(got)
    want = allocate(total, np.array(weights, np.float64), np.array(capacity))
    np.testing.assert_array_equal(got, want)
    assert got.sum() == total and (got <= np.array(capacity)).all()
