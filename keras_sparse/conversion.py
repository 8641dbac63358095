"""`sparsify`, `strip` and `sparsity_report`: moving between dense and sparse."""

import keras
import numpy as np

from keras_sparse import distributions, layers, pruning, structures
from keras_sparse.layers.dense import COMPUTE_MODES
from keras_sparse.layers.registry import (
    SPARSE_CLASSES,
    flatten_layers,
    is_opt_in,
    masked_weights,
    prunable_shapes,
    prunable_weights_of,
)
from keras_sparse.model import SparseModel
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import (
    check_built_model,
    check_choice,
    check_sparsity,
)

__all__ = ["is_sparse", "sparsify", "sparsity_report", "strip"]


def is_sparse(model):
    """True if `model` is a `SparseModel` or holds any sparse layer.

    Example:

    ```python
    is_sparse(ks.sparsify(dense, 0.5))   # True
    ```
    """
    return isinstance(model, SparseModel) or any(
        isinstance(layer, layers.SparseLayer) for layer in flatten_layers(model)
    )


def _check_names(model, names, argument):
    """Every name must be a layer (or weight path) that can be made sparse."""
    shapes = prunable_shapes(model)
    all_layers = {layer.name: layer for layer in flatten_layers(model)}
    for name in names:
        if any(distributions.matches(p, [name]) for p in shapes):
            continue
        if name in all_layers:
            kind = type(all_layers[name]).__name__
            raise TypeError(
                f"`{argument}` names layer {name!r} of kind {kind}, which cannot "
                f"be made sparse; sparse kinds: "
                f"{sorted(c.__name__ for c in SPARSE_CLASSES)} or layers with "
                "get_prunable_weights()."
            )
        raise ValueError(
            f"`{argument}` names {name!r}, which is not a layer of model "
            f"{model.name!r}; prunable layers: {sorted(shapes)}."
        )


def _clone(model, convert):
    """Clones `model` (nested models too), swapping layers with `convert`.

    Returns the clone and the `(old, new)` layer pairs to copy weights over.
    Operation nodes of a Functional graph (`x + y`, `keras.ops.*` calls) are
    `keras.Operation`s, not layers: they hold no weights, so they are cloned
    but not paired.
    """
    pairs = []

    def clone_layer(layer):
        new = convert(layer)
        if new is None:
            new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.Layer):
            pairs.append((layer, new))
        return new

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    return clone, pairs


def _structure(model):
    """Inputs and outputs as the model was built (a single tensor stays one)."""
    if isinstance(model, keras.Sequential):
        return model.inputs[0], model.outputs[0]
    return model.input, model.output


def _mask_variables(layer):
    """Ids of the masks and rule state a sparse layer adds to its base."""
    if not isinstance(layer, layers.SparseLayer):
        return set()
    return {id(v) for v in layer.mask_variables()}


def _copy_weights(old, new, fold_masks=False):
    """Copies `old`'s weights into `new` in order; optionally folds masks in.

    By position, not name: layers such as MultiHeadAttention hold several
    variables called "kernel". Masks and rule state are skipped on both sides
    (a SparseWrapper's other weights are those of the layer it wraps).
    """
    sources = [w for w in old.weights if id(w) not in _mask_variables(old)]
    targets = [w for w in new.weights if id(w) not in _mask_variables(new)]
    if [tuple(w.shape) for w in sources] != [tuple(w.shape) for w in targets]:
        raise ValueError(
            f"Cannot copy the weights of layer {old.name!r} into its clone: "
            f"shapes {[tuple(w.shape) for w in sources]} vs "
            f"{[tuple(w.shape) for w in targets]}."
        )
    # Prunable weights are read through their parameter: current whatever trains them.
    parameters = ({id(p.variable): p for p in old.parameters}
                  if isinstance(old, layers.SparseLayer) else {})
    for source, target in zip(sources, targets):
        p = parameters.get(id(source))
        value = keras_compat.to_numpy(source if p is None else p.read())
        if fold_masks and p is not None:  # selection: NaN at an inactive position becomes 0
            value = np.where(keras_compat.to_numpy(p.mask) != 0, value, np.zeros_like(value))
        target.assign(value)


def _structured_layers(model, structure, dense_layers):
    """Ids of the layers given `structure`; refuses those that cannot hold it.

    Layers named in `dense_layers` stay unstructured (and dense). Raises a
    ValueError naming the layer and its shape before anything is built.
    """
    names = set()
    if structure.is_unstructured:
        return names
    for layer in flatten_layers(model):
        weights = prunable_weights_of(layer)
        if not weights or any(distributions.matches(w.path, dense_layers) for w in weights):
            continue
        kind = SPARSE_CLASSES.get(type(layer), layers.SparseWrapper)
        if not kind.holds_structure:
            raise ValueError(
                f"sparsify: layer {layer.name!r} ({type(layer).__name__}, kernel shape "
                f"{tuple(weights[0].shape)}) cannot hold `structure`={structure!r}: its "
                "kernel has no [..., input, output] layout. Name it in `dense_layers`.")
        for w in weights:
            structure.check(tuple(w.shape), f"layer {layer.name!r} ({w.path})")
        names.add(id(layer))
    return names


def sparsify(model, sparsity, distribution="erk", mask_init="random", data=None,
             seed=0, dense_layers=None, custom=None, erk_power_scale=1.0,
             scale_init=False, scope="layer", compute="masked", structure=None):
    """Converts a Keras model into a `SparseModel`, keeping its weights.

    Every `Dense`, `Conv1D/2D/3D`, `DepthwiseConv2D`, `SeparableConv2D`
    (pointwise kernel) and `EinsumDense` becomes its sparse variant, in
    nested models and `keras.applications` backbones too; a layer defining
    `get_prunable_weights()` is wrapped in `SparseWrapper`. Biases and
    normalization weights stay dense.

    Each layer gets exactly `round(s_l * n_l)` inactive weights, halves
    rounded up (rigl and Synaptic-Flow take the floor: at most one weight
    per layer differs).

    Args:
        model: a built Sequential or Functional `keras.Model` (not sparse).
        sparsity: global fraction of prunable weights set to zero, in [0, 1).
        distribution: per-layer split, "erk" (default), "er" or "uniform"
            (any case).
        mask_init: "random", "magnitude", or a `ks.pruning` method name
            ("snip", "grasp", "synflow") which then needs `data`.
        data: a `tf.data.Dataset` of `(x, y)` or an `(x, y)` tuple, for
            data-driven `mask_init`.
        seed: seed of the random mask (stateless, per layer).
        dense_layers: layer names kept dense (default: none, at every
            sparsity; a paper's "first layer dense" is `dense_layers=[name]`).
        custom: `{layer name: sparsity}` fixed per layer.
        erk_power_scale: exponent of the ERK score.
        scale_init: once the masks are set, scale each kernel by
            `1/sqrt(density)` (its layer's actual density) so the sparse
            layer keeps the dense layer's output variance.
        scope: "layer" (budgets from `distribution`) or "global" (one
            ranking across layers).
        compute: "masked" (default) or "sparse": passed to every
            `SparseDense` (training computes with the active weights only;
            see `ks.layers.SparseDense`). Other layer kinds always compute
            masked.
        structure: the mask structure of every sparse layer but those in
            `dense_layers` (`ks.structures.get`: None for unstructured,
            `NM(n, m)`, `Block((r, c))`, `"2:4"`); stored on the layers and
            kept by every mask rule. With N:M, `sparsity` must be `1 - n/m`
            (or 0.0) and `distribution` does not apply; budgets count whole
            blocks (see `ks.distributions.budgets`). `DepthwiseConv2D`,
            `EinsumDense` and opt-in layers cannot hold one: name them in
            `dense_layers`.

    Returns:
        A new `ks.SparseModel`; `model` is left unchanged.

    Raises:
        TypeError: `model` is not a Keras model, or a name in `custom` or
            `dense_layers` is a layer that cannot be made sparse.
        ValueError: a bad `sparsity`, `distribution`, `mask_init`,
            `scope` or `compute`, an unknown layer name, a model without
            inputs, one that is already sparse, has nothing to make sparse,
            a budget that cannot be met, a `structure` a layer cannot hold
            or a sparsity not reachable in its whole units (naming the
            layer and its shape).

    Example:

    ```python
    dense = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300),
                              keras.layers.Dense(10)])
    model = ks.sparsify(dense, 0.9, distribution="erk")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    ```
    """
    check_sparsity(sparsity)
    check_choice(compute, "compute", COMPUTE_MODES)
    distribution = distributions.check_distribution(distribution)
    method = pruning.get(mask_init)
    check_built_model(model, "sparsify")
    if is_sparse(model):
        raise ValueError(
            f"sparsify: model {model.name!r} is already sparse; use "
            "model.set_masks(...) or ks.pruning to change its masks."
        )
    _check_names(model, list(custom or {}), "custom")
    _check_names(model, list(dense_layers or []), "dense_layers")
    pruning.check_scope(scope)
    if not prunable_shapes(model):
        raise ValueError(f"sparsify: model {model.name!r} has no layer that can be made sparse.")
    structure = structures.get(structure)
    structured = _structured_layers(model, structure, list(dense_layers or []))

    # The per-layer targets are solved once, by the mask method below.
    def convert(layer):
        if type(layer) in SPARSE_CLASSES:
            config = layer.get_config()
            if SPARSE_CLASSES[type(layer)] is layers.SparseDense:
                config["compute"] = compute
            if id(layer) in structured:
                config["structure"] = structures.serialize(structure)
            return SPARSE_CLASSES[type(layer)].from_config(config)
        if is_opt_in(layer):
            inner = layer.__class__.from_config(layer.get_config())
            # Built here, as `load_model` does, so weight paths stay the same.
            inner.build_from_config(layer.get_build_config())
            return layers.SparseWrapper(inner, name=f"sparse_{layer.name}")
        return None

    clone, pairs = _clone(model, convert)
    for old, new in pairs:
        _copy_weights(old, new)
    sparse = SparseModel(*_structure(clone), name=model.name)
    method(sparse, sparsity, distribution=distribution, scope=scope, data=data,
           seed=seed, dense_layers=dense_layers, custom=custom,
           erk_power_scale=erk_power_scale)
    if scale_init:
        # After the masks are chosen, so each layer's real density is known
        # (also with scope="global").
        for mw in masked_weights(sparse):
            density = float(np.mean(keras_compat.to_numpy(mw.mask)))
            if density > 0:
                mw.weight.assign(mw.weight * (1.0 / np.sqrt(density)))
    return sparse


def strip(model):
    """Returns a plain Keras model with every mask folded into its kernel.

    Sparse layers become their Keras base class (`SparseDense` -> `Dense`),
    `SparseWrapper` gives back the wrapped layer; outputs are unchanged. The
    result needs no keras_sparse to load.

    A subclassed model (its `call` is your code, which creates sparse
    layers) keeps its class: the result is a new instance, re-created from
    `get_config()` and built with the input shape `model` was built with,
    whose kernels hold `kernel * mask` and whose masks are all ones, so
    outputs are unchanged and no weight is masked any more. To serve it
    without keras_sparse, use `ks.export.export_for_serving`, which writes
    no mask.

    Args:
        model: a built Sequential, Functional or subclassed model (sparse
            or not).

    Returns:
        A new `keras.Model`; `model` is left unchanged.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: a Sequential/Functional model without defined inputs,
            an unbuilt subclassed model, or one that cannot be re-created
            from its config.

    Example:

    ```python
    plain = ks.strip(sparse_model)
    plain.save("model.keras")
    ```
    """
    if isinstance(model, keras.Model) and _is_subclassed(model):
        return _strip_subclassed(model)
    check_built_model(model, "strip")
    sparse_to_base = {v: k for k, v in SPARSE_CLASSES.items()}

    def convert(layer):
        if isinstance(layer, layers.SparseWrapper):
            return layer.layer.__class__.from_config(layer.layer.get_config())
        if type(layer) in sparse_to_base:
            return sparse_to_base[type(layer)].from_config(layer.base_config())
        return None

    clone, pairs = _clone(model, convert)
    for old, new in pairs:
        _copy_weights(old, new, fold_masks=True)
    return keras.Model(*_structure(clone), name=model.name)


def _is_subclassed(model):
    """True for a model defined by its own `call` (not Sequential/Functional)."""
    return not isinstance(model, (keras.Sequential, keras_compat.Functional))


def _strip_subclassed(model):
    if not model.built:
        raise ValueError(
            f"strip: subclassed model {model.name!r} is not built; call it on "
            "data (or fit it) first."
        )
    try:
        clone = keras.models.clone_model(model)
        if not clone.built:
            clone.build_from_config(model.get_build_config())
    except Exception as error:  # user code: any error means "cannot re-create"
        raise ValueError(
            f"strip: cannot re-create subclassed model {model.name!r} from its "
            f"config ({type(error).__name__}: {error}); give the class a "
            "get_config() returning its __init__ arguments."
        ) from error
    old_layers, new_layers = flatten_layers(model), flatten_layers(clone)
    if [type(a) for a in old_layers] != [type(b) for b in new_layers]:
        raise ValueError(
            f"strip: the copy of subclassed model {model.name!r} re-created from "
            "its config has other layers than the model; give the class a "
            "get_config() returning its __init__ arguments."
        )
    inside_wrappers = {id(inner) for layer in old_layers
                       if isinstance(layer, layers.SparseWrapper)
                       for inner in flatten_layers(layer)}
    for old, new in [(model, clone)] + list(zip(old_layers, new_layers)):
        if id(old) in inside_wrappers:
            continue  # copied, masks folded, with its wrapper
        if isinstance(old, layers.SparseLayer) or not keras_compat.sublayers(old):
            _copy_weights(old, new, fold_masks=True)
        else:  # a container: only the variables it holds itself
            for source, target in zip(_own_weights(old), _own_weights(new)):
                target.assign(keras_compat.to_numpy(source))
        if isinstance(new, layers.SparseLayer):
            for mask in new.get_masks():
                mask.assign(keras.ops.ones(mask.shape, mask.dtype))
    return clone


def _own_weights(layer):
    """`layer`'s variables that none of its sublayers holds."""
    inner = {id(w) for child in flatten_layers(layer) for w in child.weights}
    return [w for w in layer.weights if id(w) not in inner]


def sparsity_report(model):
    """Per prunable weight: layer, weight, shape, total, active, sparsity.

    Works on sparse and plain models. A masked weight's active entries are
    its mask's ones; a weight `ks.sparsify` would mask but that has no mask
    (a plain model, or one returned by `ks.strip`) counts its non-zero
    entries, so a stripped model reports the sparsity it was trained to. The
    last row, with `layer="total"`, sums every prunable weight.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of dicts `{layer, weight, shape, total, active, sparsity}`,
        one per prunable weight in model order, then the total.

    Raises:
        TypeError: `model` is not a Keras layer or model.

    Example:

    ```python
    for row in ks.sparsity_report(model):
        print(row["layer"], row["sparsity"])
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"sparsity_report: `model` must be a keras.Model; got {type(model).__name__}."
        )
    rows, seen = [], set()

    def add(layer, name, weight, active):
        seen.add(id(weight))
        size = int(np.prod(weight.shape))
        rows.append(dict(layer=layer.name, weight=name, shape=tuple(weight.shape),
                         total=size, active=active, sparsity=1.0 - active / size))

    masked = {id(mw.variable): mw for mw in masked_weights(model)}
    for layer in flatten_layers(model):
        if isinstance(layer, layers.SparseLayer):
            for weight in prunable_weights_of(layer):
                mw = masked[id(weight)]
                add(layer, mw.name, weight, int(np.count_nonzero(keras_compat.to_numpy(mw.mask))))
            continue
        for weight in prunable_weights_of(layer):
            if id(weight) not in seen:  # a layer inside a SparseWrapper
                add(layer, weight.path.split("/")[-1], weight,
                    int(np.count_nonzero(keras_compat.to_numpy(weight))))
    total = sum(r["total"] for r in rows)
    active = sum(r["active"] for r in rows)
    rows.append(dict(layer="total", weight="", shape=(), total=total, active=active,
                     sparsity=1.0 - active / total if total else 0.0))
    return rows

