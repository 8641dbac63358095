"""The indexed drop-and-grow round equals the dense round bit for bit.

`DropGrowUpdate` runs large unstructured layers on indices (drop over the
active values, grow by a sampled threshold and an exact top-k, in-place
edits). Each case here sets the same state in two models, updates one with
the dense round and one with the indexed round, and compares every mask,
weight, optimizer slot, ever-active union, DST-EE counter and statistic.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.callbacks import drop_grow_indexed
from keras_sparse.callbacks.drop_grow import Exploration
from keras_sparse.callbacks.drop_grow_update import ITOP
from keras_sparse.layers import inplace
from keras_sparse.model import DENSE_GRAD
from keras_sparse.optimizer_slots import slots_for

STEP, DELTA_T, END = 30, 10, 100


def build(optimizer):
    inputs = keras.Input((300,))
    hidden = ks.layers.SparseDense(256, name="a")(inputs)  # 76,800 weights each; the
    outputs = ks.layers.SparseDense(300, name="b")(hidden)  # tests set MIN_SIZE below
    model = ks.SparseModel(inputs, outputs)
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def optimizer(name):
    return {"sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
            "adam": keras.optimizers.Adam,
            "adagrad": keras.optimizers.Adagrad}[name]()


def set_state(model, callback, seed, density=0.1, gradient="ties", union="covers"):
    """Masks, weights with ties, gradients, slots, union and counters, from `seed`."""
    rng = np.random.RandomState(seed)
    callback.set_model(model)
    for index, mw in enumerate(model.masked_weights):
        shape = tuple(mw.weight.shape)
        mask = np.zeros(mw.size, np.float32)
        mask[rng.permutation(mw.size)[:int(density * mw.size)]] = 1.0
        mask = mask.reshape(shape)
        w = (np.round(rng.randn(*shape) * 8) / 8).astype(np.float32)  # many equal magnitudes
        w.flat[:4] = [0.0, 0.5, -0.5, 0.0]
        if gradient == "ties":
            g = np.round(rng.randn(*shape) * 4) / 4
        elif gradient == "sparse":  # fewer nonzero than the round grows: ties at 0
            g = np.where(rng.rand(*shape) < 0.002, rng.randn(*shape), 0.0)
        elif gradient == "nan" and index == 1:
            g = rng.randn(*shape)
            g.flat[12345] = np.nan
        else:
            g = rng.randn(*shape)
        mw.mask.assign(mask)
        mw.weight.assign(np.where(mask > 0, w, 0.0).astype(np.float32))
        if mw.layer.has_mask_state(DENSE_GRAD):
            mw.state(DENSE_GRAD).assign(g.astype(np.float32))
        for slot in slots_for(model.optimizer, mw.weight):
            fresh = np.asarray(slot.numpy()).flat[0]  # Adagrad starts above 0
            slot.assign(np.where(mask > 0, rng.rand(*shape) + 0.1, fresh).astype(np.float32))
        ever = (rng.rand(*shape) < 0.05).astype(np.float32)
        if union == "covers":  # as the callback keeps it: every active weight is in it
            ever = np.maximum(mask, ever)
        mw.state(ITOP).assign(ever)
        if mw.layer.has_mask_state(Exploration.COUNT):
            mw.state(Exploration.COUNT).assign(rng.randint(0, 3, shape).astype(np.float32))


def snapshot(model):
    out = {}
    for mw in model.masked_weights:
        out[mw.path + ":mask"] = mw.mask.numpy()
        out[mw.path + ":weight"] = mw.weight.numpy()
        for name, state in mw.states.items():
            out[f"{mw.path}:{name}"] = state.numpy()
        for slot in slots_for(model.optimizer, mw.weight):
            out[f"{mw.path}:{slot.name}"] = slot.numpy()
    return out


def run(kind, path, monkeypatch, seed=0, opt="sgd", steps=(STEP,), **state):
    """Sets the state, runs the updates with `path` ("dense" or "indexed")."""
    model = build(optimizer(opt))
    cb = kind()
    set_state(model, cb, seed, **state)
    calls = []
    original = drop_grow_indexed.indexed_round

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(drop_grow_indexed, "MIN_SIZE", 10**12 if path == "dense" else 1 << 16)
    monkeypatch.setattr(drop_grow_indexed, "indexed_round", counted)
    stats = [cb.update_masks(step) for step in steps]
    monkeypatch.undo()
    assert bool(calls) == (path == "indexed")
    return snapshot(model), stats


def assert_same(dense, indexed):
    (a, stats_a), (b, stats_b) = dense, indexed
    assert a.keys() == b.keys()
    for key in a:
        # Bit for bit: the float patterns, so -0.0 and 0.0 differ too.
        assert np.array_equal(a[key].view(np.uint32), b[key].view(np.uint32)), key
    assert stats_a == stats_b


METHODS = {
    "rigl": lambda: ks.callbacks.RigL(delta_t=DELTA_T, end_step=END),
    "rigl_grow_init": lambda: ks.callbacks.RigL(delta_t=DELTA_T, end_step=END, grow_init=0.25),
    "set": lambda: ks.callbacks.SET(delta_t=DELTA_T, end_step=END, seed=7),
    "dstee": lambda: ks.callbacks.DSTEE(delta_t=DELTA_T, end_step=END, c=0.5, eps=1.0),
    "dstee_small_eps": lambda: ks.callbacks.DSTEE(delta_t=DELTA_T, end_step=END, c=1e-3,
                                                  eps=1e-8),
}


@pytest.mark.parametrize("method,opt", [("rigl", "sgd"), ("rigl", "adam"), ("rigl", "adagrad")]
                         + [(method, "sgd") for method in sorted(METHODS) if method != "rigl"])
def test_indexed_round_equals_dense_round(method, opt, monkeypatch):
    kind = METHODS[method]
    steps = (10, 20, 30)  # three rounds: later ones start from the indexed round's output
    dense = run(kind, "dense", monkeypatch, opt=opt, steps=steps)
    indexed = run(kind, "indexed", monkeypatch, opt=opt, steps=steps)
    assert_same(dense, indexed)
    assert dense[1][0]["a/kernel"]["changed"] > 0  # the masks did move


@pytest.mark.parametrize("gradient,density", [("sparse", 0.02), ("sparse", 0.5),
                                               ("normal", 0.02), ("normal", 0.5)])
def test_indexed_round_with_ties_at_zero_and_densities(gradient, density, monkeypatch):
    # "sparse": fewer positions have a gradient than the round grows, so the
    # threshold ties with most of the layer and every position is ranked.
    dense = run(METHODS["rigl"], "dense", monkeypatch, seed=3, density=density,
                gradient=gradient)
    indexed = run(METHODS["rigl"], "indexed", monkeypatch, seed=3, density=density,
                  gradient=gradient)
    assert_same(dense, indexed)


@pytest.mark.parametrize("density", [0.02, 0.3])
def test_indexed_round_adds_kept_weights_missing_from_the_union(density, monkeypatch):
    # A union set by hand, without the active weights: the round writes them.
    dense = run(METHODS["rigl"], "dense", monkeypatch, seed=4, density=density, union="partial")
    indexed = run(METHODS["rigl"], "indexed", monkeypatch, seed=4, density=density,
                  union="partial")
    assert_same(dense, indexed)
    final = indexed[0]
    for path in ("a/kernel", "b/kernel"):
        assert np.all(final[f"{path}:{ITOP}"][final[f"{path}:mask"] > 0] == 1.0)


def test_indexed_round_skips_a_layer_with_nan_scores(monkeypatch):
    with pytest.warns(UserWarning, match="b/kernel"):
        dense = run(METHODS["rigl"], "dense", monkeypatch, seed=5, gradient="nan")
    with pytest.warns(UserWarning, match="b/kernel"):
        indexed = run(METHODS["rigl"], "indexed", monkeypatch, seed=5, gradient="nan")
    assert_same(dense, indexed)
    assert indexed[1][0]["b/kernel"]["changed"] == 0
    assert indexed[1][0]["a/kernel"]["changed"] > 0


def test_mask_denser_than_the_traced_capacity_takes_the_dense_round(monkeypatch):
    def denser(kind_path):
        model = build(optimizer("sgd"))
        cb = METHODS["rigl"]()
        set_state(model, cb, 9, density=0.01)
        monkeypatch.setattr(drop_grow_indexed, "MIN_SIZE", 10**12 if kind_path == "dense" else 0)
        cb.update_masks(10)  # traced with ~768 active: capacity 1024
        for mw in model.masked_weights:  # now 40% active, past the capacity
            mask = (np.random.RandomState(1).rand(*mw.weight.shape) < 0.4).astype(np.float32)
            mw.mask.assign(mask)
            mw.weight.assign(mw.weight.numpy() * mask)
            for slot in slots_for(model.optimizer, mw.weight):
                slot.assign(slot.numpy() * mask)
        stats = cb.update_masks(20)
        monkeypatch.undo()
        return snapshot(model), [stats]

    assert_same(denser("dense"), denser("indexed"))


def test_set_entries_keeps_each_variables_shape():
    # One compiled function serves every variable: each keeps its own shape.
    for shape in [(3, 4), (4, 3), (2, 2), (12,)]:
        variable = tf.Variable(tf.zeros(shape))
        inplace.set_entries([(variable, [(tf.constant([0, 3], tf.int64), 1.0)])], 1024)
        assert tuple(variable.shape) == shape
        np.testing.assert_array_equal(variable.numpy().ravel()[:4], [1.0, 0.0, 0.0, 1.0])


def test_set_entries_pads_and_applies_edits_in_order():
    variable = tf.Variable(tf.zeros([3, 4]))
    first = tf.constant([1, 5, 7], tf.int64)
    second = tf.constant([5], tf.int64)
    other = tf.Variable(tf.ones([2, 2]))
    inplace.set_entries([(variable, [(first, 2.0), (second, 3.0)]), (other, [(second, 0.0)])],
                        inplace.capacity_for(3))
    expected = np.zeros(12, np.float32)
    expected[[1, 7]] = 2.0
    expected[5] = 3.0
    np.testing.assert_array_equal(variable.numpy().ravel(), expected)
    np.testing.assert_array_equal(other.numpy(), np.ones([2, 2]))  # index 5 is past its end
    # Each variable is edited by its own launch: one named twice, in graph
    # code, still takes its edits in order.
    edits = [(variable, [(second, 4.0)]), (other, [(first[:1], 5.0)]),
             (variable, [(second, 6.0, "add")])]
    twice = tf.function(lambda: inplace.set_entries(edits, inplace.capacity_for(3)))
    twice()
    assert variable.numpy().ravel()[5] == 10.0 and other.numpy().ravel()[1] == 5.0
    assert inplace.capacity_for(0) == 1024 and inplace.capacity_for(1024) == 2048


@pytest.mark.parametrize("count,capacity", [(0, 1024), (5, 1024), (1024, 1024), (1500, 1024),
                                            (1500, 4096), (3500, 4096), (5000, 4096)])
def test_get_entries_equals_tf_gather_within_and_beyond_its_capacity(count, capacity):
    # Up to the capacity the compiled gather reads; beyond it TensorFlow's.
    values = tf.Variable(np.random.default_rng(0).standard_normal((40, 50)).astype(np.float32))
    positions = tf.constant(np.random.default_rng(1).integers(0, 2000, count), tf.int64)
    expected = tf.gather(tf.reshape(values, [-1]), positions).numpy()

    @tf.function
    def read(positions):
        return inplace.get_entries(values, positions, capacity)

    got = read(positions).numpy()
    assert got.shape == (count,)
    np.testing.assert_array_equal(got, expected)
    graph = read.get_concrete_function(tf.TensorSpec([None], tf.int64)).graph.as_graph_def()
    assert any(f.signature.name.startswith("__inference__get") for f in graph.library.function)


def test_get_entries_reads_the_smallest_bound_holding_the_positions():
    # XLA's gather visits every padded index, so fewer positions pad to less.
    bounds = inplace.read_bounds(4096)
    assert bounds == [1024, 2048, 3072, 4096]
    chosen = [int(inplace._branch(tf.constant(count), bounds))
              for count in (0, 1024, 1025, 3072, 3073, 4096, 4097)]
    assert chosen == [0, 0, 1, 2, 3, 3, 4]  # 4: beyond the capacity, TensorFlow's gather
    assert inplace.read_bounds(1024) == [1024]
    assert inplace.read_bounds(600) == [600] and inplace.read_bounds(0) == [0]  # never above


@pytest.mark.parametrize("count", [0, 1, 70_000, 131_072, 200_000])
def test_reads_in_halves_equal_one_read(count, monkeypatch):
    # A long read traced inside `reads_in_halves` is two compiled launches.
    monkeypatch.setattr(inplace, "HALVES_MIN", 1 << 16)
    values = tf.Variable(np.random.default_rng(2).standard_normal(300_000).astype(np.float32))
    positions = tf.constant(np.sort(np.random.default_rng(3).integers(0, 300_000, count)), tf.int64)
    capacity = inplace.capacity_for(200_000)

    @tf.function
    def read(positions):
        with inplace.reads_in_halves():
            return inplace.get_entries(values, positions, capacity)

    np.testing.assert_array_equal(read(positions).numpy(), tf.gather(values, positions).numpy())
    traced = read.get_concrete_function(tf.TensorSpec([None], tf.int64)).graph
    # Per bound of 64k positions or more, two launches of the compiled gather.
    calls = [n for f in traced.as_graph_def().library.function for n in f.node_def
             if n.op in ("StatefulPartitionedCall", "PartitionedCall")
             and n.attr["f"].func.name.startswith("__inference__get")]
    halved = [b for b in inplace.read_bounds(capacity) if b >= inplace.HALVES_MIN]
    assert len(calls) == len(inplace.read_bounds(capacity)) + len(halved)
    assert not inplace._halves[-1]  # the context is left
