"""Sparse Keras layers: each prunable weight is multiplied by a mask."""

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
from keras_sparse.layers.wrapper import SparseWrapper
