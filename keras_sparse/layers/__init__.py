"""Sparse Keras layers: each prunable weight is multiplied by a mask.

`ks.layers.registry` says which Keras layers have a sparse variant and finds
the masked weights of a model.
"""

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
from keras_sparse.layers.registry import (
    SPARSE_CLASSES,
    MaskedWeight,
    flatten_layers,
    masked_weights,
    prunable_shapes,
    prunable_weights_of,
)
from keras_sparse.layers.wrapper import SparseWrapper

__all__ = [
    "SPARSE_CLASSES",
    "MaskedWeight",
    "SparseConv1D",
    "SparseConv2D",
    "SparseConv3D",
    "SparseDense",
    "SparseDepthwiseConv2D",
    "SparseEinsumDense",
    "SparseLayer",
    "SparseParameter",
    "SparseSeparableConv2D",
    "SparseWrapper",
    "flatten_layers",
    "masked_weights",
    "prunable_shapes",
    "prunable_weights_of",
]
