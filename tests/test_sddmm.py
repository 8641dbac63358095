"""The sampled dense-dense product (`sddmm`) and the transposed `Layout`
equal their dense definitions, including empty rows, empty columns and a
kernel without active weights."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sparse.layers import sparse_matmul
from keras_sparse.layers.sddmm import pieces_for, sddmm

RNG = np.random.default_rng(0)


def _case(n_in, units, density, batch=5, empty_row=None, empty_col=None):
    mask = RNG.random((n_in, units)) < density
    if empty_row is not None:
        mask[empty_row] = False
    if empty_col is not None:
        mask[:, empty_col] = False
    x = RNG.standard_normal((batch, n_in)).astype("float32")
    dy = RNG.standard_normal((batch, units)).astype("float32")
    return mask, x, dy


def _want(mask, x, dy):
    """`gather(x^T @ dy)` at the mask's positions, row-major."""
    positions = sparse_matmul.active_positions(tf.constant(mask, tf.float32))
    return tf.gather_nd(tf.matmul(x, dy, transpose_a=True), positions).numpy(), positions


CASES = [
    dict(n_in=30, units=20, density=0.1),
    dict(n_in=30, units=20, density=0.5, empty_row=3, empty_col=7),
    dict(n_in=64, units=9, density=0.05, empty_row=0, empty_col=8),  # first row, last column
    dict(n_in=17, units=40, density=0.9, empty_row=16, empty_col=0),
    dict(n_in=8, units=8, density=0.0),  # no active weight at all
    dict(n_in=8, units=8, density=1.0),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("pieces", [1, 3, 7])
def test_sddmm_equals_the_gathered_dense_product(case, pieces):
    mask, x, dy = _case(**case)
    want, positions = _want(mask, x, dy)
    got = sddmm(tf.constant(x), tf.constant(dy), positions[:, 0], positions[:, 1], pieces)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_sddmm_traces_once_for_any_active_count():
    fn = tf.function(lambda x, dy, p: sddmm(x, dy, p[:, 0], p[:, 1], pieces=4),
                     input_signature=[tf.TensorSpec([None, 12]), tf.TensorSpec([None, 10]),
                                      tf.TensorSpec([None, 2], tf.int64)])
    for density in (0.0, 0.3, 1.0):
        mask, x, dy = _case(12, 10, density)
        want, positions = _want(mask, x, dy)
        np.testing.assert_allclose(fn(x, dy, positions).numpy(), want, rtol=1e-5, atol=1e-5)
    assert fn.experimental_get_tracing_count() == 1


def test_pieces_grow_with_the_kernel_and_are_capped():
    assert pieces_for(784 * 300) == 1
    assert pieces_for(784 * 4096) == 12
    assert pieces_for(4096 * 4096) == pieces_for(10**9) == 64


@pytest.mark.parametrize("case", CASES)
def test_layout_orders_the_positions_as_the_transposed_kernel(case):
    mask, _, _ = _case(**case)
    positions = sparse_matmul.active_positions(tf.constant(mask, tf.float32))
    lay = sparse_matmul.layout(positions, mask.shape[0])
    np.testing.assert_array_equal(lay.t_positions.numpy(), np.argwhere(mask.T).reshape(-1, 2))
    np.testing.assert_array_equal(
        tf.gather(tf.reverse(positions, [1]), lay.order).numpy(), lay.t_positions.numpy())


@pytest.mark.parametrize("case", CASES)
def test_products_from_a_layout_equal_the_dense_ones(case):
    mask, x, dy = _case(**case)
    kernel = RNG.standard_normal(mask.shape).astype("float32") * mask
    positions = sparse_matmul.active_positions(tf.constant(mask, tf.float32))
    lay = sparse_matmul.layout(positions, mask.shape[0])
    values = tf.constant(kernel[mask])
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch([x, values])
        y = sparse_matmul.values_matmul(x, values, lay, list(mask.shape),
                                        weight_gradient="active")
    dx, dvalues = tape.gradient(y, [x, values], output_gradients=tf.constant(dy))
    np.testing.assert_allclose(y.numpy(), x.numpy() @ kernel, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), dy @ kernel.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dvalues.numpy(), _want(mask, x.numpy(), dy)[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("density", [0.02, 0.5])
@pytest.mark.parametrize("weight_gradient", ["auto", "active", "dense"])
def test_every_weight_gradient_gives_the_masked_gradient(density, weight_gradient):
    """Both products; "auto" takes the SDDMM at 2% and the dense product at 50%."""
    mask, x, dy = _case(100, 60, density, empty_row=5, empty_col=9)
    kernel = tf.constant(RNG.standard_normal(mask.shape).astype("float32") * mask)
    positions = sparse_matmul.active_positions(tf.constant(mask, tf.float32))
    x, dy = tf.constant(x), tf.constant(dy)
    want = (tf.transpose(x) @ dy).numpy() * mask
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = sparse_matmul.sparse_matmul(x, kernel, positions, weight_gradient=weight_gradient,
                                        mask=tf.constant(mask, tf.float32))
    got = tape.gradient(y, kernel, output_gradients=dy).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[~mask], 0.0)
    values = tf.constant(kernel.numpy()[mask])
    with tf.GradientTape() as tape:
        tape.watch(values)
        y = sparse_matmul.values_matmul(x, values, positions, list(mask.shape),
                                        weight_gradient=weight_gradient)
    np.testing.assert_allclose(tape.gradient(y, values, output_gradients=dy).numpy(),
                               want[mask], rtol=1e-5, atol=1e-5)


def test_auto_takes_the_sddmm_up_to_its_density_only():
    limit = int(sparse_matmul.SDDMM_MAX_DENSITY * 4096 * 4096)
    assert sparse_matmul._sddmm_wins(limit, (4096, 4096))
    assert not sparse_matmul._sddmm_wins(limit + 1, (4096, 4096))
    assert bool(sparse_matmul._sddmm_wins(tf.constant(limit), (4096, 4096)))


def test_pieces_are_compiled_and_their_lengths_rounded_to_few_shapes():
    from keras_sparse.layers import sddmm as module

    sizes = [int(module._rounded_up(tf.constant(n))) for n in (1, 1024, 1025, 5000, 5243, 70000)]
    assert sizes == [1024, 1024, 1152, 5120, 5632, 73728]
    for n, size in zip((1025, 5000, 5243, 70000), sizes[2:]):
        assert n <= size <= n * 1.125 + 1
    fn = tf.function(lambda x, dy, p: sddmm(x, dy, p[:, 0], p[:, 1], pieces=3))
    mask, x, dy = _case(30, 20, 0.5)
    positions = sparse_matmul.active_positions(tf.constant(mask, tf.float32))
    graph = fn.get_concrete_function(x, dy, positions).graph.as_graph_def()
    assert any("_product" in f.signature.name and any(
        a == "_XlaMustCompile" and v.b for a, v in f.attr.items())
        for f in graph.library.function)
