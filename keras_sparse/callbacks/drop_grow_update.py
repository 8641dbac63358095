"""`DropGrowUpdate`: one compiled drop-and-grow update of every prunable weight."""

import functools
import math
import time
import warnings

import tensorflow as tf

from keras_sparse.callbacks import drop_grow, drop_grow_indexed
from keras_sparse.callbacks.drop_schedules import drop_count
from keras_sparse.masks import largest_mask, lowest_mask
from keras_sparse.structures import NM, Block

__all__ = ["ITOP", "DropGrowUpdate", "drop_count"]

ITOP = "itop"  # per-weight state: 1 where the weight was ever active


class DropGrowUpdate:
    """Drops the lowest-scored active weights and grows as many, in each layer.

    Per layer, `n = drop_count(fraction, n_active)` active weights with the
    lowest `drop` score go, and the `n` highest-`grow`-scored positions
    among those inactive after the drop come (a redistribution may move
    regrowth between layers). Each weight's new mask goes to its
    `assign_mask` with `keep=` the mask after the drop, so a weight dropped
    and regrown restarts from `grow_init`. A layer whose scores hold NaN or
    Inf keeps its mask. The running union of active weights (ITOP) is per-weight
    state. All layers are computed in one compiled `tf.function`, in
    cross-replica context, so replicas agree by construction. Large
    unstructured layers (without redistribution) take the same round on
    indices (`drop_grow_indexed`), with the same result bit for bit.

    Structured weights (`parameter.structure`) keep their structure:

    - `Block((r, c))`: the same round on whole blocks. A block's drop and
      grow scores are the sums of its weights' scores; `floor(f * active
      blocks)` blocks with the lowest drop score go and as many inactive
      blocks with the highest grow score come (a redistribution moves
      blocks between layers; every weight must then hold the same block).
    - `NM(n, m)`: the layer drops its `floor(f * n_active)` lowest-scored
      active weights as without structure, then every N:M group regrows,
      from its own positions inactive after the drop, exactly as many as
      it lost (the highest grow scores of the group), so each group holds
      `n` again. This is the reading of SRigL (Lasby et al. 2023, "Dynamic
      Sparse Training with Structured Sparsity"), which drops by magnitude
      across the layer and regrows within each neuron what it lost to keep
      a constant fan-in; here the unit is the N:M group. SR-STE (Zhou et
      al. 2021, "Learning N:M Fine-grained Structured Sparse Neural Networks
      From Scratch") instead recomputes each group's top-n by magnitude at
      every step from dense weights; it is not a drop-and-grow round and is
      not what this implements. A redistribution does not apply (every
      layer's count is fixed) and is skipped with a warning.

    Args:
        drop, grow: `drop_grow.Rule`s.
        redistribution: None or a redistribution such as
            `drop_grow.MeanScoreRedistribution`.
        grow_init: value of grown weights (a float).
        seed: seed of the rules' stateless RNG.

    Example:

    ```python
    update = DropGrowUpdate(Magnitude(), Gradient(), None, 0.0, seed=0)
    update.build(model)
    out = update(model, step=100, fraction=0.3, rounds=1, gradients=True)
    ```
    """

    def __init__(self, drop, grow, redistribution, grow_init, seed):
        self.drop, self.grow, self.redistribution = drop, grow, redistribution
        self.grow_init, self.seed = grow_init, seed
        self._fn, self._key, self._capacities = None, None, {}
        self._union_fn = self._union_key = None
        self._redistribute = redistribution

    def build(self, model):
        """Adds the per-weight state of the union and of the rules (strategy scope)."""
        layers = {id(mw.layer): mw.layer for mw in model.masked_weights}.values()
        for layer in layers:
            layer.add_mask_state(ITOP)
        self.drop.build(model)
        self.grow.build(model)
        self._check_structures(model.masked_weights)
        self._fn = self._key = None  # retrace: the state was just added
        self._union_fn = self._union_key = None

    def _check_structures(self, weights):
        """Refuses a redistribution it cannot do in whole units."""
        self._redistribute = self.redistribution
        if self.redistribution is None:
            return
        if any(isinstance(mw.structure, NM) for mw in weights):
            warnings.warn("DynamicSparsity: the model holds N:M weights, whose counts are "
                          "fixed; the redistribution is skipped.", stacklevel=3)
            self._redistribute = None
            return
        held = {mw.structure for mw in weights}
        if len(held) > 1 and any(isinstance(s, Block) for s in held):
            raise ValueError(
                f"DynamicSparsity: a redistribution moves whole blocks between layers, so every "
                f"prunable weight must hold the same block; the model's hold "
                f"{sorted(map(repr, held))}. Use redistribution=None.")

    def union(self, model):
        """Adds the current masks to the union; returns `(ever, active)` counts."""
        weights = model.masked_weights
        key = (id(model), tuple(id(mw.mask) for mw in weights))
        if self._union_key != key:
            self._union_fn = tf.function(functools.partial(_add_to_union, weights))
            self._union_key = key
        with model.distribute_strategy.scope():
            ever, active = self._union_fn()
        return float(ever), float(active)

    def __call__(self, model, step, fraction, rounds, gradients):
        """Runs the update; returns `({stat: per-layer numpy vector}, ms)`.

        Stats: `dropped`, `grown`, `regrown` (grown positions that had been
        active before), `changed`, `active`, `ever`, `finite`. Growth reads
        the dense gradients the parameters kept last (with `gradients`).
        """
        with model.distribute_strategy.scope():
            update = self._function(model, gradients)
            start = time.perf_counter()
            out = update(tf.constant(step, tf.int64), tf.constant(fraction, tf.float64),
                         tf.constant(rounds, tf.float64))
        out = {k: v.numpy() for k, v in out.items()}  # small per-layer vectors
        return out, 1000.0 * (time.perf_counter() - start)

    def _function(self, model, gradients):
        # Retrace when optimizer slots appear (the update must reset them)
        # or a layer starts or stops training a values vector.
        optimizer = getattr(model, "optimizer", None)
        weights = model.masked_weights
        key = (id(model), id(optimizer), len(getattr(optimizer, "variables", [])), gradients,
               tuple(p.storage is None for p in weights))
        if self._key != key:
            specs = [tf.TensorSpec([], tf.int64)] + [tf.TensorSpec([], tf.float64)] * 2
            self._capacities = {p.path: self._capacity(p) for p in weights}

            def compute(step, fraction, rounds):
                return self._compute(model, gradients, step, fraction, rounds)

            # Traced here, so a caller timing the update times the update, not tracing.
            self._fn = tf.function(compute).get_concrete_function(*specs)
            self._key = key
        return self._fn

    def _capacity(self, weight):
        """The index capacity of the indexed round for `weight`, or None (dense round)."""
        if self._redistribute is not None:  # layers trade counts: the dense round
            return None
        return drop_grow_indexed.capacity(weight)

    def _compute(self, model, gradients, step, fraction, rounds):
        # What the update takes from the model: its parameters and optimizer.
        # Everything else is asked of each parameter.
        weights, optimizer = model.masked_weights, model.optimizer

        def updates(index, mw):
            gradient = mw.dense_gradient() if gradients else None
            return functools.partial(self._updates, index, mw, gradient, step, rounds)

        if self._redistribute is None:  # layers are independent
            stats = [self._round(optimizer, p, updates(i, p), fraction)
                     for i, p in enumerate(weights)]
        else:
            layers = [self._drop(p, *updates(i, p)(), fraction) for i, p in enumerate(weights)]
            stats = [self._grow(optimizer, layer, count)
                     for layer, count in zip(layers, self._grow_counts(layers))]
        return {k: tf.stack([s[k] for s in stats]) for k in stats[0]}

    def _updates(self, index, mw, gradient, step, rounds, mask=None):
        """What the drop and the grow rule see of one weight (graph code)."""
        if mask is None:
            mask = tf.cast(tf.convert_to_tensor(mw.mask), tf.float32)
        if gradient is not None:
            gradient = tf.cast(gradient, tf.float32)
        common = dict(weight=mw, index=index, mask=mask, gradient=gradient, step=step,
                      round=rounds)
        return (drop_grow.LayerUpdate(**common, seed=-(self.seed + 1)),
                drop_grow.LayerUpdate(**common, seed=self.seed))

    def _round(self, optimizer, mw, updates, fraction):
        """One weight's round, on indices where that is faster (same result)."""
        def dense():  # reads the mask itself: a mask read held here would be copied
            layer = self._drop(mw, *updates(), fraction)
            return self._grow(optimizer, layer, layer["n_drop"])

        capacity = self._capacities.get(mw.path)
        if capacity is None:
            return dense()
        return drop_grow_indexed.indexed_round(
            mw, self.drop, self.grow, lambda mask: updates(mask=mask), fraction,
            self.grow_init, optimizer, mw.state(ITOP), capacity, dense)

    def _drop(self, mw, drop_up, grow_up, fraction):
        """Scores one weight and keeps its top active weights (graph code)."""
        mask = drop_up.mask
        drop_score = tf.cast(self.drop.score(drop_up), tf.float32)
        grow_score = tf.cast(self.grow.score(grow_up), tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(drop_score)) & tf.reduce_all(
            tf.math.is_finite(grow_score))
        active = mask > 0
        structure = mw.structure
        if isinstance(structure, Block):  # the same round on whole blocks
            mask_units = structure.units(mask)[:, 0]
            active, drop_score = mask_units > 0, structure.pool(drop_score)
        size = int(active.shape.num_elements())
        n_active = tf.reduce_sum(tf.cast(active, tf.int64))
        n_drop = drop_count(fraction, n_active)
        # Without redistribution a fully dense weight could only regrow what
        # it dropped, resetting it: leave it alone.
        movable = finite if self._redistribute else finite & (n_active < size)
        n_drop = tf.where(movable, n_drop, tf.zeros_like(n_drop))
        dropped = lowest_mask(tf.where(active, drop_score, math.inf), tf.cast(n_drop, tf.int32))
        if isinstance(structure, Block):
            dropped = structure.expand(dropped, mask.shape)
        kept = mask - dropped
        return dict(mw=mw, drop_up=drop_up, grow_up=grow_up, mask=mask, kept=kept,
                    grow_score=tf.where(finite, grow_score, 0.0), finite=finite,
                    n_drop=n_drop, room=size - n_active + n_drop)

    def _grow_counts(self, layers):
        """Connections each layer grows: what it dropped, or redistributed."""
        dropped = [layer["n_drop"] for layer in layers]
        if self._redistribute is None:
            return dropped
        shares = [self.redistribution.layer_weight(layer["grow_up"], layer["grow_score"])
                  for layer in layers]
        room = [tf.where(layer["finite"], layer["room"], tf.constant(0, tf.int64))
                for layer in layers]
        return tf.unstack(self._redistribute.allocate(
            tf.add_n(dropped), tf.stack(shares), tf.stack(room)))

    def _grow(self, optimizer, layer, count):
        """Grows `count` positions, applies the mask, advances rule state."""
        mw, mask, finite = layer["mw"], layer["mask"], layer["finite"]
        structure, unit = mw.structure, 1
        pool = tf.where(layer["kept"] > 0, -math.inf, layer["grow_score"])
        if isinstance(structure, NM):  # each group regrows what it lost
            lost = structure.n - structure.group_counts(layer["kept"])
            grown = structure.top_in_groups(pool, lost)
        elif isinstance(structure, Block):
            unit = structure.unit_size
            free = structure.units(layer["kept"])[:, 0] <= 0
            pooled = tf.where(free, structure.pool(layer["grow_score"]), -math.inf)
            grown = structure.expand(largest_mask(pooled, tf.cast(count, tf.int32)), mask.shape)
        else:
            grown = largest_mask(pool, tf.cast(count, tf.int32))
        kept = tf.where(finite, layer["kept"], mask)
        new = tf.where(finite, layer["kept"] + grown, mask)
        # `keep`: a weight dropped and regrown restarts from grow_init.
        mw.assign_mask(new, keep=kept, grow_init=self.grow_init, optimizer=optimizer)
        union = mw.state(ITOP)
        before = tf.convert_to_tensor(union)
        union.assign(tf.maximum(before, tf.cast(new, union.dtype)))
        regrown = tf.reduce_sum(tf.where(finite, grown, 0.0) * tf.cast(before, grown.dtype))
        self.drop.update_state(layer["drop_up"], new)
        self.grow.update_state(layer["grow_up"], new)
        return dict(
            dropped=layer["n_drop"] * unit,
            grown=tf.cast(count, tf.int64) * unit,
            regrown=tf.cast(regrown, tf.int64),
            changed=tf.cast(tf.reduce_sum(new * (1.0 - mask)), tf.int64),
            active=tf.cast(tf.reduce_sum(new), tf.int64),
            ever=tf.cast(tf.reduce_sum(tf.convert_to_tensor(union)), tf.int64),
            finite=finite,
        )


def _add_to_union(weights):
    """Adds each weight's mask to its ever-active union (graph code); returns
    the `(ever, active)` counts summed over `weights`."""
    ever, active = [], []
    for mw in weights:
        union = mw.state(ITOP)
        before = tf.convert_to_tensor(union)
        mask = tf.cast(tf.convert_to_tensor(mw.mask), before.dtype)

        def add(union=union, before=before, mask=mask):
            new = tf.maximum(before, mask)
            union.assign(new)
            return new

        # Every round adds what it grows to the union, so it usually holds
        # the mask already: then the pass only reads.
        after = tf.cond(tf.reduce_any(mask > before), add, lambda before=before: before)
        # Summed across weights in float64: float32 counts stop being exact past 2**24.
        ever.append(tf.cast(tf.reduce_sum(tf.cast(after, tf.float32)), tf.float64))
        active.append(tf.cast(tf.reduce_sum(tf.cast(mask, tf.float32)), tf.float64))
    return tf.add_n(ever), tf.add_n(active)
