"""The compute='sparse' products as they were before issue 21, for before/after rows.

Profile only: `sparse_train_step` times a model whose parameters call this
instead of `sparse_matmul.values_matmul`, in the same rounds as the current
one. Before: the CSR of `W` was built from the values every step and the
forward multiplied by it with `transpose_a=True`; the values' gradient was
read out of the dense `x^T @ dy`.
"""

import types

import tensorflow as tf

from keras_sparse.layers import sparse_matmul

__all__ = ["use_before_products"]


def _values_matmul(x, values, positions, shape):
    positions = positions.positions if isinstance(positions, sparse_matmul.Layout) else positions
    count = tf.shape(positions)[0]
    capacity = tf.shape(values)[0]

    @tf.custom_gradient
    def product(x, values):
        csr = tf.raw_ops.SparseTensorToCSRSparseMatrix(
            indices=positions, values=values[:count], dense_shape=tf.constant(shape, tf.int64))
        y = tf.raw_ops.SparseMatrixMatMul(
            a=csr, b=x, transpose_a=True, transpose_b=True, transpose_output=True)

        def grad(dy):
            dx = tf.raw_ops.SparseMatrixMatMul(a=csr, b=dy, transpose_b=True,
                                               transpose_output=True)
            dvalues = tf.gather_nd(tf.matmul(x, dy, transpose_a=True), positions)
            return dx, tf.pad(dvalues, [[0, capacity - count]])

        return y, grad

    return product(x, values)


def _sparse_matmul(parameter, x, weight_gradient):
    storage = parameter.storage
    if storage is None or not parameter.in_train_step or parameter._when is not None:
        raise NotImplementedError("the before-products cover a static values-vector step only")
    with tf.control_dependencies([storage.ensure_laid_out()]):
        positions, _ = storage.active()
    return _values_matmul(x, tf.cast(storage.values.value, x.dtype), positions, storage.shape)


def use_before_products(model):
    """Makes every compute='sparse' parameter of `model` use the old products."""
    for parameter in model.masked_weights:
        parameter.sparse_matmul = types.MethodType(_sparse_matmul, parameter)
    return model
