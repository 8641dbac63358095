"""`sparse_format="csr"`: TensorFlow's COO kernel up to batch 8, CSR above.

Kept for exports that want TensorFlow's own sparse kernels with a fixed,
measured dispatch and no export-time timing: `sparse_format="auto"` times
these and other kernels per layer instead. The layer is a
`SparseKernelDense` (compact positions, about one byte per nonzero).
"""

from keras_sparse.export.sparse_dense import CSR_REGIMES, SMALL_BATCH, to_sparse


def to_csr(model, min_sparsity=0.9, index_format=None):
    """Clone of a plain Functional `model`: eligible layers use the COO/CSR kernels.

    Returns:
        `(clone, {layer name: report})`.

    Example:

    ```python
    served, reports = to_csr(ks.strip(sparse_model), min_sparsity=0.9)
    ```
    """
    return to_sparse(model, min_sparsity,
                     lambda layer, kernel: (list(CSR_REGIMES), dict(chosen={}, timings_ms={})),
                     index_format)


__all__ = ["SMALL_BATCH", "to_csr"]
