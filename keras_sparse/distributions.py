"""How a global sparsity is split across layers (RigL `sparse_utils`).

- `uniform`: every prunable layer gets the global sparsity `s`.
- `er` (Erdős–Rényi): raw score `(n_in + n_out) / (n_in * n_out)`.
- `erk` (Erdős–Rényi–Kernel): raw score `sum(shape) / prod(shape)` over the
  full kernel shape (`** erk_power_scale`).

For `er`/`erk`, `eps` is solved so that `sum_l eps * raw_l * N_l = (1 - s) *
sum_l N_l`; a layer with `eps * raw_l > 1` becomes dense and `eps` is solved
again over the rest.

No layer is kept dense unless named in `dense_layers`, at every sparsity
(recipes that follow a paper's "first layer dense" name it). Names in
`dense_layers` and `custom` that match no prunable weight are an error.

Per-layer counts: a layer of `n` weights with target `s_l` gets exactly
`round(s_l * n)` inactive weights, halves rounded up. rigl and Synaptic-Flow
take the floor, so a layer here can hold one inactive weight more than there
(never more than one per layer).

`budgets` turns a sparsity into these counts for the weights of a sparse
model, per layer or with one global ranking (`scope="global"`); every mask
rule that prunes to a sparsity asks it.

Structured weights (`ks.structures`) count in whole units. A `Block` weight
of `B` blocks keeps `B - round(s_l * B)` blocks. An `NM(n, m)` weight's
sparsity is fixed at `1 - n/m`: the requested sparsity must be that (or 0.0,
masks all ones), `distribution` does not apply (every layer is split as
"uniform" when the model holds an N:M weight), and a `custom` value must be
`1 - n/m` or 0. A sparsity not reachable in whole units is a ValueError
naming the weight and its shape.
"""

import numpy as np
import tensorflow as tf

from keras_sparse.layers.registry import masked_weights, prunable_shapes
from keras_sparse.masks import num_inactive, topk_masks_global
from keras_sparse.structures import Unstructured
from keras_sparse.utils.argument_validation import check_choice, check_sparsity

__all__ = [
    "DISTRIBUTIONS",
    "SCOPES",
    "budgets",
    "check_distribution",
    "check_scope",
    "check_names",
    "count",
    "layer_sparsities",
    "matches",
    "pinned",
    "rank",
    "raw_score",
    "solve",
]

DISTRIBUTIONS = ("uniform", "er", "erk")
SCOPES = ("layer", "global")


def check_distribution(distribution):
    """Returns `distribution`, lower-cased, if it names one of `DISTRIBUTIONS`.

    Names are case-insensitive: "ERK" and "erk" are the same.

    Args:
        distribution: "uniform", "er" or "erk" (any case).

    Returns:
        `distribution`, lower-cased.

    Raises:
        ValueError: any other value.

    Example:

    >>> check_distribution("ERK")
    'erk'
    """
    if isinstance(distribution, str):
        distribution = distribution.lower()
    return check_choice(distribution, "distribution", DISTRIBUTIONS)


def check_scope(scope):
    """Returns `scope` if it is one of `SCOPES`.

    Args:
        scope: "layer" (per-layer budgets) or "global" (one ranking).

    Returns:
        `scope`, unchanged.

    Raises:
        ValueError: any other value.

    Example:

    >>> check_scope("global")
    'global'
    """
    return check_choice(scope, "scope", SCOPES)


def check_names(paths, names, argument, who=""):
    """Returns `names` as a list if each matches a prunable weight path.

    Args:
        paths: the prunable weight paths of the model, or `None` to check
            only that `names` is a list of names (before a model is known).
        names: layer names or weight paths (see `matches`); `None` is none.
        argument: the argument's name, for the message (`"dense_layers"`).
        who: the caller, prefixed to the message (`"GradualMagnitudePruning"`).

    Raises:
        TypeError: `names` is a single string (not a list of names).
        ValueError: a name matches no path.

    Example:

    >>> check_names(["net/fc1/kernel"], ["fc1"], "dense_layers")
    ['fc1']
    """
    prefix = f"{who}: " if who else ""
    if names is None:
        return []
    if isinstance(names, str):
        raise TypeError(
            f"{prefix}`{argument}` must be a list of layer names; got the string {names!r} "
            f"(write [{names!r}])."
        )
    names = list(names)
    if paths is None:
        return names
    paths = list(paths)
    for name in names:
        if not any(matches(p, [name]) for p in paths):
            raise ValueError(
                f"{prefix}`{argument}` names {name!r}, which matches no prunable weight of "
                f"the model (give a layer name or weight path); prunable weights: "
                f"{paths}."
            )
    return names


def matches(path, names):
    """True if a weight path belongs to one of the layer names (or paths).

    A name matches the full path, a leading part of it, or any layer on it:
    "dense" matches "sequential/dense/kernel" (a nested model's layer) and
    "sequential" matches every weight of that nested model.

    Args:
        path: a weight path.
        names: layer names or weight paths.

    Returns:
        A bool.

    Example:

    >>> matches("sequential/dense/kernel", ["dense"])
    True
    """
    layers = path.split("/")[:-1]
    return any(n == path or n in layers or path.startswith(n + "/") for n in names)


def raw_score(shape, distribution, erk_power_scale=1.0):
    """The unnormalised density score of one weight shape (see module doc).

    Args:
        shape: the weight's shape.
        distribution: "er" or "erk".
        erk_power_scale: exponent of the ERK score.

    Returns:
        A float.

    Example:

    >>> raw_score((10, 20), "er")
    0.15
    """
    if distribution == "erk":
        return (np.sum(shape) / np.prod(shape)) ** erk_power_scale
    n_in, n_out = shape[-2], shape[-1]  # er: fan-in and fan-out only
    return (n_in + n_out) / (n_in * n_out)


def pinned(paths, sparsity, dense_layers=None, custom=None):
    """`{path: sparsity}` fixed by `dense_layers` (0.0) and `custom`.

    `dense_layers=None` pins nothing, at every sparsity; `custom` wins over
    `dense_layers`.

    Args:
        paths: the weight paths, in model order.
        sparsity: the global target.
        dense_layers: names kept dense, or None.
        custom: `{name: sparsity}`, or None.

    Returns:
        `{path: sparsity}` for the pinned paths only.

    Raises:
        TypeError: `dense_layers` is a string, or `custom` is not a dict.
        ValueError: a name matches no path, or a `custom` value is not a
            sparsity.

    Example:

    >>> pinned(["a/kernel", "b/kernel"], 0.9, dense_layers=["a"])
    {'a/kernel': 0.0}
    """
    paths = list(paths)
    dense_layers = check_names(paths, dense_layers, "dense_layers")
    if custom is not None and not isinstance(custom, dict):
        raise TypeError(
            f"`custom` must be a dict {{layer name: sparsity}}; got {custom!r}."
        )
    check_names(paths, list(custom or {}), "custom")
    result = {p: 0.0 for p in paths if matches(p, dense_layers)}
    for name, value in (custom or {}).items():
        value = check_sparsity(value, f"custom[{name!r}]")
        result.update({p: value for p in paths if matches(p, [name])})
    return result


def solve(shapes, sparsity, distribution="erk", dense_layers=None, custom=None,
          erk_power_scale=1.0):
    """Per-weight sparsities from `{path: shape}` (ordered as in the model).

    Args:
        shapes: `{weight path: shape}` of the prunable weights.
        sparsity: global target in [0, 1).
        distribution: "uniform", "er" or "erk" (see the module doc).
        dense_layers: layer names (or weight paths) kept dense. Default:
            none, at every sparsity.
        custom: `{layer name or path: sparsity}` fixed per layer.
        erk_power_scale: exponent on the ERK raw score (1.0).

    Returns:
        `{path: sparsity}` in the order of `shapes`.

    Raises:
        TypeError: a bad type of `sparsity`, `dense_layers` or `custom`.
        ValueError: a bad `sparsity` or `distribution`, a name matching no
            weight, or (for "er"/"erk") layers pinned by `dense_layers` and
            `custom` that alone keep more active weights than `sparsity`
            allows; the message names them.

    `eps` is solved so that the active count equals `(1 - s) * N` over all
    prunable weights; any layer with `eps * raw > 1` becomes dense and `eps`
    is solved again. interpretation: unlike RigL's code, layers in `custom`
    count towards the total, so the global sparsity stays exact.

    Returns:
        `{path: sparsity}` in the order of `shapes`.

    Raises:
        ValueError: a bad `sparsity` or `distribution`, or dense and custom
            layers that already exceed the budget.

    Example:

    >>> solve({"a/kernel": (10, 10), "b/kernel": (10, 10)}, 0.5, "uniform")
    {'a/kernel': 0.5, 'b/kernel': 0.5}
    """
    sparsity = check_sparsity(sparsity)
    distribution = check_distribution(distribution)
    paths = list(shapes)
    result = pinned(paths, sparsity, dense_layers, custom)
    if distribution == "uniform":
        return {p: result.get(p, sparsity) for p in paths}

    sizes = {p: float(np.prod(shapes[p])) for p in paths}
    _check_budget(sizes, result, sparsity, distribution, custom)
    free = [p for p in paths if p not in result]
    while free:
        fixed_active = sum(sizes[p] * (1.0 - result[p]) for p in result)
        # Never negative: the pins fit the budget (checked above), and a
        # layer turned dense below holds fewer weights than eps gave it.
        rhs = max((1.0 - sparsity) * sum(sizes.values()) - fixed_active, 0.0)
        raw = {p: raw_score(shapes[p], distribution, erk_power_scale) for p in free}
        eps = rhs / sum(raw[p] * sizes[p] for p in free)
        too_dense = [p for p in free if eps * raw[p] > 1.0]
        if not too_dense:
            result.update({p: 1.0 - eps * raw[p] for p in free})
            break
        result.update({p: 0.0 for p in too_dense})
        free = [p for p in free if p not in too_dense]
    return {p: result[p] for p in paths}


def _check_budget(sizes, pins, sparsity, distribution, custom):
    """Raises a ValueError naming the pinned layers if they overrun the budget."""
    total = sum(sizes.values())
    budget = (1.0 - sparsity) * total
    held = {p: sizes[p] * (1.0 - s) for p, s in pins.items()}
    if sum(held.values()) <= budget * (1.0 + 1e-12):
        return
    def why(path):  # `custom` wins over `dense_layers`
        if any(matches(path, [name]) for name in custom or {}):
            return f"`custom` sparsity {pins[path]}"
        return "kept dense by `dense_layers`"

    detail = "; ".join(
        f"{p}: {int(round(held[p]))} active of {int(sizes[p])} ({why(p)})" for p in pins
    )
    raise ValueError(
        f"`sparsity`={sparsity} cannot be reached with distribution="
        f"{distribution!r}: it allows {int(round(budget))} active weights of "
        f"{int(total)}, but the pinned layers alone keep "
        f"{int(round(sum(held.values())))} active ({detail}). Pin fewer layers "
        "(`dense_layers`), give them a higher `custom` sparsity, or lower "
        "`sparsity`."
    )


def layer_sparsities(model, sparsity, distribution="erk", dense_layers=None,
                     custom=None, erk_power_scale=1.0):
    """Per-weight target sparsities of a (sparse or plain) Keras model.

    Args:
        model: a Keras model, plain or sparse.
        sparsity: the global target, in [0, 1).
        distribution, dense_layers, custom, erk_power_scale: as in `solve`.

    Returns:
        `{weight path: sparsity}` for every weight `ks.sparsify` would
        mask, with the rules of `solve`.

    Example:

    ```python
    ks.distributions.layer_sparsities(model, 0.9, "erk")
    # {"dense/kernel": 0.62, "dense_1/kernel": 0.93, ...}
    ```
    """
    return solve(prunable_shapes(model), sparsity, distribution, dense_layers,
                 custom, erk_power_scale)


def budgets(model, sparsity, distribution="erk", scope="layer", scores=None, fixed=None,
            dense_layers=None, custom=None, erk_power_scale=1.0):
    """How many weights of each prunable parameter stay active at `sparsity`.

    With `scope="layer"` a parameter of `n` weights keeps `n - round(s_l * n)`,
    `s_l` its sparsity from `distribution` (see `solve`). With
    `scope="global"` the parameters pinned by `dense_layers`/`custom` keep
    their own exact count and the others are ranked together by `scores`
    (`distribution` unused), so that the model holds `round(s * N)` zeros
    over its `N` prunable weights.

    Args:
        model: a sparse model, or a list of its parameters
            (`model.masked_weights`).
        sparsity: the global target, in [0, 1).
        distribution, dense_layers, custom, erk_power_scale: as in `solve`.
        scope: "layer" or "global".
        scores: `{path: tensor}`, the ranking of `scope="global"` (highest
            kept); unused with "layer".
        fixed: `{path: active count}` of parameters that keep their count
            (left out of the global ranking, counted in its total).

    Returns:
        `{parameter: active count}` in model order.

    Raises:
        TypeError: a bad type of `sparsity`, `dense_layers` or `custom`.
        ValueError: a bad `sparsity`, `distribution` or `scope`, a name
            matching no weight, a budget the pinned layers exceed, or
            `scope="global"` without `scores`.

    Example:

    ```python
    counts = ks.distributions.budgets(model, 0.9, "erk")
    {mw.path: n for mw, n in counts.items()}     # {"dense/kernel": 23520, ...}
    ```
    """
    check_scope(scope)
    parameters = list(model) if isinstance(model, (list, tuple)) else masked_weights(model)
    shapes = {p.path: tuple(p.weight.shape) for p in parameters}
    structured = [p for p in parameters if not _structure(p).is_unstructured]
    if any(_structure(p).fixed_sparsity is not None for p in structured):
        distribution = "uniform"  # N:M fixes each layer's sparsity
    targets = solve(shapes, sparsity, distribution, dense_layers, custom, erk_power_scale)
    fixed = dict(fixed or {})
    if scope == "layer":
        if structured:
            return {p: fixed[p.path] if p.path in fixed else count(p, targets[p.path])
                    for p in parameters}
        return {p: fixed.get(p.path, p.size - num_inactive(p.size, targets[p.path]))
                for p in parameters}
    if scores is None:
        raise ValueError("budgets: `scope`='global' ranks by `scores`; pass them "
                         "({path: tensor} for every prunable weight).")
    pins = pinned(list(shapes), sparsity, dense_layers, custom)
    if structured:
        return _global_structured(parameters, sparsity, scores, pins, fixed)
    counts = {p: fixed[p.path] if p.path in fixed else p.size - num_inactive(p.size, pins[p.path])
              for p in parameters if p.path in fixed or p.path in pins}
    ranked = [p for p in parameters if p not in counts]
    if ranked:
        zeros = num_inactive(sum(p.size for p in parameters), sparsity)
        zeros -= sum(p.size - n for p, n in counts.items())
        size = sum(p.size for p in ranked)
        ranks = rank([scores[p.path] for p in ranked], min(max(size - zeros, 0), size))
        counts.update(zip(ranked, ranks))
    return {p: counts[p] for p in parameters}


def _structure(parameter):
    return getattr(parameter, "structure", None) or Unstructured()


def count(parameter, sparsity):
    """Active weights of one parameter at `sparsity`, in whole units of its structure.

    Raises:
        ValueError: `sparsity` not reachable in whole units (names the weight).

    Example:

    ```python
    count(model.masked_weights[0], 0.5)     # 117600 for a 784 x 300 kernel
    ```
    """
    structure = _structure(parameter)
    if structure.is_unstructured:
        return parameter.size - num_inactive(parameter.size, sparsity)
    return structure.count(tuple(parameter.weight.shape), sparsity, parameter.path)


def _global_structured(parameters, sparsity, scores, pins, fixed):
    """`scope="global"` with structured weights: one ranking of whole blocks.

    N:M weights keep their fixed count; the others must share one structure
    (all unstructured or one `Block`), ranked by pooled block scores.
    """
    counts = {}
    for p in parameters:
        if p.path in fixed:
            counts[p] = fixed[p.path]
        elif p.path in pins:
            counts[p] = count(p, pins[p.path])
        elif _structure(p).fixed_sparsity is not None:
            counts[p] = count(p, sparsity)
    ranked = [p for p in parameters if p not in counts]
    if not ranked:
        return {p: counts[p] for p in parameters}
    kinds = {_structure(p) for p in ranked}
    if len(kinds) > 1:
        raise ValueError(
            f"budgets: `scope`='global' ranks weights of one structure together; the ranked "
            f"weights hold {sorted(map(repr, kinds))}. Use scope='layer'.")
    structure = kinds.pop()
    unit = structure.unit_size
    zeros = num_inactive(sum(p.size for p in parameters), sparsity)
    zeros -= sum(p.size - n for p, n in counts.items())
    units = sum(p.size for p in ranked) // unit
    keep = min(max(units - int(zeros / unit + 0.5), 0), units)
    pooled = [structure.pool(scores[p.path]) for p in ranked]
    counts.update({p: n * unit for p, n in zip(ranked, rank(pooled, keep))})
    return {p: counts[p] for p in parameters}


def rank(scores, num_active):
    """One ranking over several tensors: how many of each are among the top.

    The tensors are ranked together as if concatenated (ties to the earlier
    tensor, then the lower index), and each gets the number of its entries
    among the `num_active` largest. `topk_mask(scores[i], counts[i])` is then
    exactly its part of that ranking.

    Args:
        scores: a list of float tensors (any shapes).
        num_active: total number kept, `<= sum of sizes`.

    Returns:
        A list of ints, one per tensor.

    Example:

    >>> rank([tf.constant([0.5, 0.1]), tf.constant([0.9])], 2)
    [1, 1]
    """
    return [int(tf.math.count_nonzero(m)) for m in topk_masks_global(scores, num_active)]
