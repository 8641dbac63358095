"""A new drop-and-grow method written from public parts only (issue 20): the
clock says when, each parameter reads its weight and changes its mask, which
keeps the weight and the optimizer slots consistent."""

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.optimizer_slots import slots_for

to_np = keras.ops.convert_to_numpy


class RowSET(ks.callbacks.MaskCallback):
    """Drops each row's smallest |w|, regrows as many at random in that row."""

    def __init__(self, delta_t=4, fraction=0.3, seed=0):
        super().__init__()
        self.clock = ks.callbacks.UpdateClock(delta_t)
        self.fraction, self.rng = fraction, np.random.default_rng(seed)

    def on_train_begin(self, logs=None):
        self.clock.start(self.params)

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.epoch_begin(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.batch_begin(batch, self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.clock.batch_end(batch, self.model) is None:
            return
        for p in self.model.masked_weights:
            kept, w = to_np(p.mask).copy(), np.abs(to_np(p.read()))
            new = kept.copy()
            for i, row in enumerate(kept):
                active = np.flatnonzero(row)
                drop = active[np.argsort(w[i, active])[:int(self.fraction * len(active))]]
                row[drop] = new[i, drop] = 0
                new[i, self.rng.choice(np.flatnonzero(row == 0), len(drop), replace=False)] = 1
            p.assign_mask(new, keep=kept, optimizer=self.model.optimizer)


class Masks(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.seen = getattr(self, "seen", []) + [self.model.get_masks()]


@pytest.mark.parametrize("compute", ["masked", "sparse"])
def test_a_toy_method_from_public_parts_trains(compute):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model = ks.sparsify(dense, 0.6, distribution="uniform", seed=0, compute=compute)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = model.get_masks()
    record = Masks()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                        callbacks=[RowSET(delta_t=4, fraction=0.5), record])
    assert history.history["loss"][-1] < history.history["loss"][0]
    changes = [any((a[k] != b[k]).any() for k in a) for a, b in zip(record.seen, record.seen[1:])]
    # seen[i] is after step i + 1: the masks change at steps 4, 8, ..., 36 only.
    assert [i + 2 for i, changed in enumerate(changes) if changed] == list(range(4, 37, 4))
    first = model.masked_weights[0]  # 12 x 16: its rows have room to move
    assert (to_np(first.mask) != start[first.path]).any()
    for p in model.masked_weights:
        mask, before = to_np(p.mask), start[p.path]
        np.testing.assert_array_equal(mask.sum(axis=1), before.sum(axis=1))  # per row
        np.testing.assert_array_equal(to_np(p.read())[mask == 0], 0.0)
        if compute == "masked":
            for slot in slots_for(model.optimizer, p.variable):
                np.testing.assert_array_equal(to_np(slot)[mask == 0], 0.0)
