"""What can be made sparse, and the masked weights of a model.

The layers floor's view of a model: which Keras layer kinds have a sparse
variant (`SPARSE_CLASSES`), which weights of a layer would be masked
(`prunable_weights_of`), and, for a model that is already sparse, every
masked weight with its mask (`masked_weights`). Everything above (weight
distributions, conversion, the model, pruning and callbacks) asks here.

A user-defined layer opts in by defining `get_prunable_weights()`, which
returns the variables to mask (the contract of tfmot's `PrunableLayer`);
`ks.sparsify` then wraps it in `SparseWrapper`.
"""

import keras

from keras_sparse.layers.base import SparseLayer
from keras_sparse.layers.conv import (
    SparseConv1D,
    SparseConv2D,
    SparseConv3D,
    SparseDepthwiseConv2D,
    SparseSeparableConv2D,
)
from keras_sparse.layers.dense import SparseDense
from keras_sparse.layers.einsum_dense import SparseEinsumDense
from keras_sparse.layers.parameter import SparseParameter
from keras_sparse.utils import keras_compat

__all__ = [
    "SPARSE_CLASSES",
    "MaskedWeight",
    "flatten_layers",
    "is_opt_in",
    "masked_weights",
    "prunable_shapes",
    "prunable_weights_of",
    "without_masks",
]

# Keras layer kind -> its sparse variant. Exact types only: a user subclass
# may change `call` in ways the mask cannot follow (it can opt in instead).
SPARSE_CLASSES = {
    keras.layers.Dense: SparseDense,
    keras.layers.Conv1D: SparseConv1D,
    keras.layers.Conv2D: SparseConv2D,
    keras.layers.Conv3D: SparseConv3D,
    keras.layers.DepthwiseConv2D: SparseDepthwiseConv2D,
    keras.layers.SeparableConv2D: SparseSeparableConv2D,
    keras.layers.EinsumDense: SparseEinsumDense,
}


def is_opt_in(layer):
    """True if `layer` is a user layer that opted in with `get_prunable_weights()`.

    Models and layers that are already sparse do not count.

    Args:
        layer: any Keras layer.

    Example:

    >>> is_opt_in(keras.layers.Dense(3))
    False
    """
    return callable(getattr(layer, "get_prunable_weights", None)) and not isinstance(
        layer, (keras.Model, SparseLayer)
    )


def prunable_weights_of(layer):
    """The variables `ks.sparsify` masks (or would mask) in `layer`.

    Args:
        layer: any Keras layer.

    Returns:
        A list of variables, empty for layers with nothing to mask (biases
        and normalization weights never are) and for unbuilt sparse layers.

    Example:

    ```python
    prunable_weights_of(dense_layer)   # [<Variable path=dense/kernel ...>]
    ```
    """
    if isinstance(layer, SparseLayer):
        return layer.get_prunable_weights() if layer.built else []
    if type(layer) in SPARSE_CLASSES:
        # Keras keeps some kernels under a private attribute behind a
        # `kernel` property, others under the public name.
        found = []
        for name in SPARSE_CLASSES[type(layer)].prunable:
            raw = keras_compat.kernel_attribute(name)
            found.append(getattr(layer, raw) if hasattr(layer, raw) else getattr(layer, name))
        return found
    if is_opt_in(layer):
        return list(layer.get_prunable_weights())
    return []


def flatten_layers(model):
    """Every sublayer of `model`, depth first, in model order.

    Unlike Keras' own flattening, which visits the layers of a nested model
    in reverse, the first prunable layer found is the one nearest the input,
    which is what "keep the first layer dense" defaults rely on.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of layers (`model` itself not included).

    Example:

    ```python
    [layer.name for layer in flatten_layers(model)]
    ```
    """
    found, seen = [], set()

    def visit(layer):
        for child in keras_compat.sublayers(layer):
            if id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                visit(child)

    visit(model)
    return found


def prunable_shapes(model):
    """`{weight path: shape}` of every weight `ks.sparsify` masks or would mask.

    Works on plain and sparse models, in model order.

    Args:
        model: a Keras model.

    Returns:
        `{weight path: shape tuple}` in model order.

    Example:

    ```python
    prunable_shapes(model)   # {"dense/kernel": (784, 300), ...}
    ```
    """
    return {
        w.path: tuple(w.shape)
        for layer in flatten_layers(model)
        for w in prunable_weights_of(layer)
    }


# The name earlier versions gave the records of `masked_weights`.
MaskedWeight = SparseParameter


def masked_weights(model):
    """Every `SparseParameter` of `model`, nested models included, in order.

    Only built sparse layers count; a plain model has none.

    Args:
        model: a Keras model.

    Returns:
        A list of `SparseParameter` (`ks.layers.MaskedWeight`).

    Example:

    ```python
    for mw in masked_weights(model):
        print(mw.path, mw.size)
    ```
    """
    return [parameter for layer in flatten_layers(model)
            if isinstance(layer, SparseLayer) and layer.built
            for parameter in layer.parameters]


def without_masks(variables, model):
    """`variables` (e.g. `model.weights`) without the masks of `model`.

    Rule state such as dense-gradient buffers is kept: only the mask
    variables themselves are left out.

    Args:
        variables: a list of variables.
        model: the model whose masks are left out.

    Example:

    ```python
    snapshot = [v.numpy() for v in without_masks(model.weights, model)]
    ```
    """
    masks = {id(mw.mask) for mw in masked_weights(model)}
    return [v for v in variables if id(v) not in masks]
