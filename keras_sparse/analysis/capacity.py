"""Same-capacity sparse vs dense pairs (SC-SDC, Tessera et al. 2021)."""

import math
import numbers

import keras
import numpy as np

from keras_sparse.conversion import is_sparse, sparsify
from keras_sparse.layers.registry import prunable_shapes
from keras_sparse.masks import stateless_uniform, topk_mask

MATCHES = ("layer", "total")


def _check_width(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number; got {name}={value!r}.")
    return value


def _build(build, width, seed):
    keras.utils.set_random_seed(seed)  # weights of every family member reproducible
    model = build(width)
    if not isinstance(model, keras.Model):
        raise TypeError(f"`build({width!r})` must return a keras.Model; got "
                        f"{type(model).__name__}.")
    if is_sparse(model):
        raise TypeError(f"`build({width!r})` must return a plain (dense) Keras model; "
                        f"got the sparse model {model.name!r}.")
    return model


def _sizes(model):
    return [math.prod(shape) for shape in prunable_shapes(model).values()]


def active_counts(dense_sizes, sparse_sizes, match="layer"):
    """Active weights per prunable layer of the wide model, as integers.

    Args:
        dense_sizes: weights per prunable layer of the dense (narrow) model.
        sparse_sizes: weights per prunable layer of the wide model, same order.
        match: "layer": each wide layer keeps exactly as many weights as the
            dense layer at its position has (for an MLP of widths `w_d` and
            `w_s` that is density `w_d/w_s` in the first and last layers and
            `(w_d/w_s)**2` in hidden ones); "total": one density
            `sum(dense) / sum(wide)` for every layer, rounded by largest
            remainder so only the total is exact.

    Returns:
        A list of ints summing to `sum(dense_sizes)`.

    Example:

    >>> active_counts([784 * 100, 100 * 10], [784 * 400, 400 * 10], "layer")
    [78400, 1000]
    """
    if match not in MATCHES:
        raise ValueError(f"`match` must be one of {MATCHES}; got match={match!r}.")
    if match == "layer":
        return list(dense_sizes)
    total = sum(dense_sizes)
    exact = [total * n / sum(sparse_sizes) for n in sparse_sizes]
    counts = [min(math.floor(e), n) for e, n in zip(exact, sparse_sizes)]
    # Largest remainder first (ties: earlier layer), never past a layer's size.
    order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    short = total - sum(counts)
    while short > 0:
        for i in order:
            if short and counts[i] < sparse_sizes[i]:
                counts[i] += 1
                short -= 1
    return counts


def same_capacity(build, dense_width, sparse_width, match="layer", seed=0, scale_init=False):
    """A dense network and a wider sparse one with exactly as many active weights.

    The same-capacity comparison of Tessera et al. (2021): `build(width)`
    gives one member of a model family (an MLP whose hidden widths, or a CNN
    whose channel counts, scale with `width`). The dense network is
    `build(dense_width)`; the sparse one is `build(sparse_width)` converted
    to a `ks.SparseModel` with random masks (exactly the counted number of
    ones per layer, placed uniformly by a stateless RNG keyed by `seed`),
    so that its active prunable weights number exactly the dense network's
    prunable weights. Both keep the family's own initializers (the same
    scheme; inactive weights are then 0). Biases and normalization weights
    are not counted, as everywhere in keras_sparse.

    Args:
        build: `build(width) -> keras.Model`, a plain Sequential or
            Functional model; every width must give the same prunable layers
            in the same order, wider ones no smaller.
        dense_width: width of the dense network.
        sparse_width: width of the sparse network, `>= dense_width`.
        match: "layer" (default): each sparse layer has exactly as many
            active weights as the dense layer at its position (density
            `w_d/w_s` for an MLP's first and last layers, `(w_d/w_s)**2`
            for hidden ones); "total": only the total is matched, one
            density for every layer (largest-remainder rounding).
        seed: seeds the masks, and the weights of both builds through
            `keras.utils.set_random_seed(seed)` (called before each build).
        scale_init: multiply each sparse kernel by `1/sqrt(density)` (off
            by default: the same initializer scheme as the dense network).

    Returns:
        `(dense_model, sparse_model)`: a plain Keras model and a
        `ks.SparseModel`, neither compiled.

    Raises:
        ValueError: `sparse_width < dense_width`, an unknown `match`, or a
            `build` whose members do not scale with the width (different
            prunable layers, a smaller wide layer, or no growth at all).
        TypeError: `build` not callable or not returning a plain Keras model.

    Example:

    ```python
    build = lambda w: ks.applications.mlp((w, w), input_shape=(28, 28, 1), num_classes=10)
    dense, sparse = ks.analysis.same_capacity(build, 100, 400)
    # 784*100 + 100*100 + 100*10 active weights in each
    ```
    """
    if not callable(build):
        raise TypeError(f"`build` must be callable as build(width); got {build!r}.")
    _check_width(dense_width, "dense_width")
    _check_width(sparse_width, "sparse_width")
    if sparse_width < dense_width:
        raise ValueError(
            f"`sparse_width` must be >= `dense_width` (the sparse network is the wider "
            f"one); got sparse_width={sparse_width!r} < dense_width={dense_width!r}.")
    if match not in MATCHES:
        raise ValueError(f"`match` must be one of {MATCHES}; got match={match!r}.")

    dense = _build(build, dense_width, seed)
    wide = _build(build, sparse_width, seed)
    dense_sizes, wide_sizes = _sizes(dense), _sizes(wide)
    if not dense_sizes:
        raise ValueError("`build` gives a model with no prunable layer (Dense, Conv, ...).")
    if len(dense_sizes) != len(wide_sizes):
        raise ValueError(
            f"`build` does not scale with `width`: build({dense_width!r}) has "
            f"{len(dense_sizes)} prunable weights, build({sparse_width!r}) has "
            f"{len(wide_sizes)}; every width must give the same layers.")
    smaller = [i for i, (d, s) in enumerate(zip(dense_sizes, wide_sizes)) if s < d]
    if smaller or (sparse_width > dense_width and sum(wide_sizes) == sum(dense_sizes)):
        raise ValueError(
            f"`build` does not scale with `width`: prunable sizes {dense_sizes} at "
            f"width {dense_width!r} vs {wide_sizes} at width {sparse_width!r}; a wider "
            "member must have more weights (use `width` for the hidden units or channels).")

    counts = active_counts(dense_sizes, wide_sizes, match)
    sparse = sparsify(wide, 0.0, distribution="uniform", seed=seed)  # all ones for now
    weights = sparse.masked_weights
    masks = [
        topk_mask(stateless_uniform(mw.weight.shape, seed, 0, i), k)
        for i, (mw, k) in enumerate(zip(weights, counts))
    ]
    sparse.set_masks(masks)
    if scale_init:
        for mw, k in zip(weights, counts):
            mw.weight.assign(mw.weight * np.float32(1.0 / math.sqrt(k / mw.size)))
    return dense, sparse
