"""CSR kernels for serving: the `CSRDense` layer and `to_csr(model)`.

A kernel `W` (`input_dim x units`) is stored as the CSR matrix of `W^T`, one
row per output unit: `row_ptrs` (int32, `units + 1`), `col_indices` (int32,
one per nonzero), `values` and `dense_shape` (int64 `[units, input_dim]`).
`y = x @ W` is computed as `(W^T @ x^T)^T`, the sparse operand first and
untransposed: the layout both TensorFlow sparse kernels are fastest with.

Kernel choice, measured for a 4096x4096 kernel at 98% on 2 shared CPU
cores (`benchmarks/export_latency.py` reruns it: "kernel" rows):

- `SparseMatrixMatMul` (`csr_product`) is 1.7-5x faster than the dense
  matmul from batch 8 up, but no faster at batch 1-4, where its per-call
  conversion and row sharding dominate;
- `tf.sparse.sparse_dense_matmul` (`coo_product`) is 1.5-3.5x faster than
  dense at batch 1-8 and no faster from batch 16 (its CPU kernel does not
  vectorise over the batch); at batch 8 the two sparse kernels are close.

So `csr_matmul` dispatches on the batch size: up to `SMALL_BATCH` rows the
COO kernel, above it the CSR kernels. Both need the `(row, column)` pairs,
and TensorFlow has no op taking CSR components directly; expanding them at
every call cost as much as the dense product at batch 1. `COOIndices`
expands them once, when the SavedModel is loaded, so the files keep the
compact CSR form (8 bytes per nonzero plus 4 per row).
"""

import uuid

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_sparse.utils import keras_compat

# Largest batch served by the COO kernel (the measured crossover).
SMALL_BATCH = 8


def csr_components(kernel):
    """`(row_ptrs, col_indices, values)` of `kernel^T` as numpy arrays.

    Args:
        kernel: a 2-D array `input_dim x units`.

    Example:

    ```python
    row_ptrs, cols, values = csr_components(np.eye(3, dtype="float32"))
    ```
    """
    transposed = np.asarray(kernel).T
    rows, cols = np.nonzero(transposed)  # row-major, the canonical CSR order
    counts = np.bincount(rows, minlength=transposed.shape[0])
    row_ptrs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return row_ptrs, cols.astype(np.int32), transposed[rows, cols]


def coo_indices(row_ptrs, col_indices):
    """`[nnz, 2]` int64 `(row, column)` indices from CSR components.

    Example:

    ```python
    indices = coo_indices(row_ptrs, col_indices)
    ```
    """
    # RaggedTensorToSparse turns row splits into (row, position) pairs in one
    # kernel; only the row ids are kept.
    rows = tf.raw_ops.RaggedTensorToSparse(
        rt_nested_splits=[row_ptrs], rt_dense_values=col_indices
    ).sparse_indices[:, 0]
    return tf.stack([rows, tf.cast(col_indices, tf.int64)], axis=1)


class COOIndices(tf.saved_model.experimental.TrackableResource):
    """The COO indices of a CSR kernel, expanded once per load, not per call.

    A resource, like a lookup table: its variable is not checkpointed, so
    the SavedModel stores only the CSR components, and every loader (TF
    Serving's session, `tf.saved_model.load`) runs `_initialize` after
    restoring the variables. It is initialized on creation too, from the
    variables' current values.

    Args:
        row_ptrs, col_indices: the int32 CSR variables it is computed from.

    Example:

    ```python
    indices = COOIndices(layer.row_ptrs, layer.col_indices).read()
    ```
    """

    def __init__(self, row_ptrs, col_indices):
        super().__init__()
        self._row_ptrs, self._col_indices = row_ptrs, col_indices
        self._shape = [int(col_indices.shape[0]), 2]
        # Unique per export: a name shared by two loaded models would let one
        # overwrite the other's indices (copies of one export agree anyway).
        self._shared_name = f"csr_coo_indices_{uuid.uuid4().hex}"
        self._initialize()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.int64, shape=self._shape,
                                      shared_name=self._shared_name)

    def _initialize(self):
        value = coo_indices(tf.convert_to_tensor(self._row_ptrs),
                            tf.convert_to_tensor(self._col_indices))
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=value)

    def read(self):
        value = tf.raw_ops.ReadVariableOp(resource=self.resource_handle, dtype=tf.int64)
        value.set_shape(self._shape)  # the raw read has no static shape
        return value


def coo_product(x, indices, values, dense_shape):
    """`W^T @ x^T` with `tf.sparse.sparse_dense_matmul` (the COO kernel)."""
    matrix = tf.SparseTensor(indices, values, dense_shape)
    return tf.sparse.sparse_dense_matmul(matrix, x, adjoint_b=True)


def csr_product(x, indices, values, dense_shape):
    """`W^T @ x^T` with `SparseMatrixMatMul` (the CSR kernel)."""
    matrix = tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=indices, values=values, dense_shape=dense_shape
    )
    return tf.raw_ops.SparseMatrixMatMul(a=matrix, b=tf.transpose(x))


def csr_matmul(x, indices, values, dense_shape):
    """`x @ W` for a 2-D `x`, the faster kernel for its batch size.

    Args:
        x: `[batch, input_dim]`.
        indices: `[nnz, 2]` int64 `(row, column)` of `W^T`, row-major.
        values: the nonzeros of `W^T` in that order.
        dense_shape: `[units, input_dim]`.

    Example:

    ```python
    y = csr_matmul(x, coo_indices(row_ptrs, cols), values, [units, input_dim])
    ```
    """
    product = tf.cond(tf.shape(x)[0] <= SMALL_BATCH,
                      lambda: coo_product(x, indices, values, dense_shape),
                      lambda: csr_product(x, indices, values, dense_shape))
    return tf.transpose(product)


def _matmul_kernel(layer):
    """`W` (`input_dim x units`) if `layer` computes `x @ W` on its last axis."""
    if getattr(layer, "quantization_mode", None) is not None:
        return None
    if type(layer) is keras.layers.Dense:
        return layer.kernel
    if type(layer) is not keras.layers.EinsumDense or len(layer.kernel.shape) != 2:
        return None
    inputs, _, output = layer.equation.replace(" ", "").partition("->")
    lhs, _, rhs = inputs.partition(",")
    batch, contracted = lhs[:-1], lhs[-1:]
    letters = batch.replace("...", "")
    if len(set(letters)) != len(letters) or contracted in letters or len(set(rhs)) != 2 \
            or contracted not in rhs:
        return None
    units = rhs.replace(contracted, "")
    if units in lhs or output != batch + units:
        return None
    # "bc" holds the kernel input_dim x units, "cb" units x input_dim.
    return layer.kernel if rhs[0] == contracted else ops.transpose(layer.kernel)


class CSRDense(keras.layers.Layer):
    """`activation(x @ W + bias)` with `W` stored in CSR (int32 indices).

    Stands in for a `Dense` layer, or an `EinsumDense` whose equation is a
    matmul over the last input axis, in exported models; build it with
    `from_layer`, which also sets up its `COOIndices`. Leading axes of the
    input are flattened around the product; the bias keeps the replaced
    layer's shape, so it broadcasts as before. Inference only.

    Args:
        units: output size.
        input_dim: size of the contracted (last) input axis.
        nnz: number of stored nonzeros.
        activation: activation applied last.
        bias_shape: shape of the bias, or None for no bias.

    Example:

    ```python
    layer = CSRDense.from_layer(dense_layer, min_sparsity=0.9)  # or None
    ```
    """

    def __init__(self, units, input_dim, nnz, activation=None, bias_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.input_dim, self.nnz = int(units), int(input_dim), int(nnz)
        self.activation = keras.activations.get(activation)
        self.bias_shape = None if bias_shape is None else tuple(bias_shape)

    def build(self, input_shape=None):
        # No autocast: the sparse kernels have no float16 variant, so values
        # and bias are read in the variable dtype (see `call`).
        def weight(name, shape, dtype=None):
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros",
                                   trainable=False, autocast=False)

        self.row_ptrs = weight("row_ptrs", (self.units + 1,), "int32")
        self.col_indices = weight("col_indices", (self.nnz,), "int32")
        self.values = weight("values", (self.nnz,))
        self.dense_shape = weight("dense_shape", (2,), "int64")
        self.bias = None if self.bias_shape is None else weight("bias", self.bias_shape)

    @classmethod
    def from_layer(cls, layer, min_sparsity):
        """A built `CSRDense` holding `layer`'s weights, or None.

        None when `layer` is not a plain `Dense`/matmul `EinsumDense` or its
        kernel has fewer than `min_sparsity` zeros (fraction).
        """
        kernel = _matmul_kernel(layer)
        if kernel is None:
            return None
        kernel = keras_compat.to_numpy(kernel)
        if 1.0 - np.count_nonzero(kernel) / kernel.size < min_sparsity:
            return None
        row_ptrs, col_indices, values = csr_components(kernel)
        bias = getattr(layer, "bias", None)
        csr = cls(units=kernel.shape[1], input_dim=kernel.shape[0], nnz=values.size,
                  activation=layer.activation,
                  bias_shape=None if bias is None else tuple(bias.shape),
                  dtype=layer.dtype_policy, name=layer.name)
        csr.build()
        csr.row_ptrs.assign(row_ptrs)
        csr.col_indices.assign(col_indices)
        csr.values.assign(values)
        csr.dense_shape.assign(np.array(kernel.shape[::-1], np.int64))
        if bias is not None:
            csr.bias.assign(keras_compat.to_numpy(bias))
        csr.indices = COOIndices(csr.row_ptrs, csr.col_indices)
        return csr

    def call(self, inputs):
        x = tf.reshape(tf.cast(inputs, self.values.dtype), [-1, self.input_dim])
        y = csr_matmul(x, self.indices.read(), self.values.value, self.dense_shape.value)
        y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
        if self.bias is not None:
            y = y + self.bias.value
        return tf.cast(self.activation(y), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "input_dim": self.input_dim,
                "nnz": self.nnz, "activation": keras.activations.serialize(self.activation),
                "bias_shape": self.bias_shape}


def to_csr(model, min_sparsity=0.9):
    """Clone of a plain Functional `model` with eligible layers as `CSRDense`.

    Other layers are shared with `model`, not copied.

    Example:

    ```python
    served = to_csr(ks.strip(sparse_model), min_sparsity=0.9)
    ```
    """

    def convert(layer):
        csr = CSRDense.from_layer(layer, min_sparsity)
        return layer if csr is None else csr

    return keras.models.clone_model(model, clone_function=convert, recursive=True)
