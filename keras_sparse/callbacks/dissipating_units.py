"""Dissipating gradients on structured weights: removal in whole units.

`DissipatingGradients` prunes weight by weight; a weight holding a
structure (`ks.structures`) is pruned in its units instead:

- `Block`: a block's movement is the mean relative movement of its weights;
  blocks below `fraction` are removed, the least moved first, counted in
  whole blocks against the layer (or global) budget.
- `NM(n, m)`: a group holds exactly `n`, so there is no step between dense
  and `1 - n/m`: the first pruning epoch keeps each group's `n` most-moved
  weights (the threshold does not apply).
"""

import numpy as np
import tensorflow as tf

from keras_sparse import distributions
from keras_sparse.masks import num_inactive, topk_mask
from keras_sparse.structures import NM

__all__ = ["plan"]


def plan(callback, fill):
    """`({path: new mask}, weights removed)` for one epoch of structured pruning.

    Args:
        callback: the `DissipatingGradients` (its model, targets and options).
        fill: remove the rest of the budget by least movement, below the
            threshold or not.

    Raises:
        ValueError: a sparsity the weights cannot reach in whole units, or
            `scope="global"` over weights of different block sizes.
    """
    weights = callback.model.masked_weights
    movement = callback.movement()
    shapes = {mw.path: tuple(mw.weight.shape) for mw in weights}
    pins = distributions.pinned(shapes, callback.sparsity, callback.dense_layers)
    new_masks, removed, ranked = {}, 0, []
    for mw in weights:
        if mw.path in pins:
            continue
        active = tf.convert_to_tensor(mw.mask) > 0
        n_active = int(tf.math.count_nonzero(active))
        if isinstance(mw.structure, NM):
            target = mw.structure.count(shapes[mw.path], callback.sparsity, mw.path)
            if n_active > target:
                keep = tf.where(active, movement[mw.path], -1.0)
                new_masks[mw.path] = mw.structure.mask(keep, target)
                removed += n_active - target
            continue
        structure = mw.structure
        units = structure.units(tf.cast(active, tf.float32))[:, 0] > 0
        moved = structure.pool(movement[mw.path]) / structure.unit_size
        ranked.append(dict(mw=mw, active=units, score=tf.where(units, moved, -1.0),
                           n=int(tf.math.count_nonzero(units)),
                           slow=int(tf.math.count_nonzero(units & (moved < callback.fraction)))))
    if not ranked:
        return new_masks, removed
    if callback.scope == "layer":
        budgets = distributions.budgets(weights, callback.sparsity, callback.distribution,
                                        dense_layers=callback.dense_layers)
        for layer in ranked:
            unit = layer["mw"].structure.unit_size
            room = max(layer["n"] - budgets[layer["mw"]] // unit, 0)
            r = room if fill else min(room, layer["slow"])
            layer["keep"] = layer["n"] - r
            removed += r * unit
    else:
        unit_sizes = {layer["mw"].structure.unit_size for layer in ranked}
        if len(unit_sizes) > 1:
            raise ValueError(
                "DissipatingGradients: `scope`='global' ranks blocks of one size; the "
                f"weights hold {sorted(repr(l['mw'].structure) for l in ranked)}. Use "
                "scope='layer'.")
        unit = unit_sizes.pop()
        total = sum(mw.size for mw in weights)
        # Zeros the other weights hold after this epoch count towards the target.
        zeros = sum(mw.size - int(np.count_nonzero(np.asarray(new_masks[mw.path])))
                    if mw.path in new_masks else
                    mw.size - int(tf.math.count_nonzero(tf.convert_to_tensor(mw.mask)))
                    for mw in weights)
        room = max(int((num_inactive(total, callback.sparsity) - zeros) / unit + 0.5), 0)
        n_all = sum(layer["n"] for layer in ranked)
        wanted = room if fill else min(room, sum(layer["slow"] for layer in ranked))
        wanted = min(wanted, n_all)
        counts = distributions.rank([layer["score"] for layer in ranked], n_all - wanted)
        for layer, keep in zip(ranked, counts):
            layer["keep"] = keep
        removed += wanted * unit
    for layer in ranked:
        if layer["keep"] < layer["n"]:
            mw = layer["mw"]
            keep = topk_mask(layer["score"], layer["keep"])
            new_masks[mw.path] = mw.structure.expand(keep, mw.weight.shape)
    return new_masks, removed
