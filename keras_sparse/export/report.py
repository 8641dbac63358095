"""`report`: what an exported SavedModel stores, and its size on disk."""

import io
import os
import tarfile
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_sparse.export.serving import export_for_serving

# The variables of a `CSRDense` layer, reported together as one kernel.
CSR_PARTS = ("row_ptrs", "col_indices", "values", "dense_shape")


def report(path_or_model, sparse_format=None, min_sparsity=0.9):
    """Per-weight sparsity and parameter counts, and the SavedModel's size.

    Args:
        path_or_model: a version directory written by `export_for_serving`,
            or a `keras.Model`, which is then
            exported to a temporary directory with `sparse_format` and
            `min_sparsity` and reported on.
        sparse_format, min_sparsity: as in `export_for_serving` (models
            only).

    Returns:
        A dict with:
        - `path`: the directory (None for a model);
        - `layers`: one row per stored weight, `{layer, weight, format
          ("dense" or "csr"), shape, total, nonzero, sparsity, bytes}`;
          a CSR kernel is one row with its dense shape, `bytes` being what
          its components take; the last row, `layer="total"`, sums them;
        - `size_bytes`: the directory's files, summed;
        - `gzip_bytes`: the directory as an in-memory `.tar.gz` (what
          shipping it compressed costs).

    Raises:
        TypeError: `path_or_model` is neither a `keras.Model` nor a path.
        ValueError: the path holds no SavedModel.

    Example:

    ```python
    info = ks.export.report("saved_models/lenet/1")
    print(info["layers"][-1]["sparsity"], info["size_bytes"], info["gzip_bytes"])
    ```
    """
    if isinstance(path_or_model, keras.Model):
        with tempfile.TemporaryDirectory() as tmp:
            path = export_for_serving(path_or_model, tmp, sparse_format=sparse_format,
                                      min_sparsity=min_sparsity)
            return {**_report(path), "path": None}
    if not isinstance(path_or_model, (str, os.PathLike)):
        raise TypeError(
            f"report: `path_or_model` must be a keras.Model or a SavedModel directory; "
            f"got {type(path_or_model).__name__}."
        )
    path = os.fspath(path_or_model)
    if not tf.saved_model.contains_saved_model(path):
        raise ValueError(f"report: `path_or_model` {path!r} is not a SavedModel directory.")
    return _report(path)


def _report(path):
    variables = getattr(tf.saved_model.load(path), "model_variables", None)
    if variables is None:
        raise ValueError(
            f"report: the SavedModel at {path!r} was not written by export_for_serving "
            "(it has no `model_variables` list)."
        )
    layers = {}
    for variable in variables:
        layer, _, weight = variable.name.split(":")[0].rpartition("/")
        layers.setdefault(layer, {})[weight] = variable.numpy()
    rows = []
    for layer, weights in layers.items():
        if all(part in weights for part in CSR_PARTS):
            parts = [weights.pop(part) for part in CSR_PARTS]
            shape = tuple(int(d) for d in parts[3][::-1])  # stored transposed
            rows.append(_row(layer, "kernel", "csr", shape, int(np.prod(shape)),
                             np.count_nonzero(parts[2]), sum(p.nbytes for p in parts)))
        for weight, value in weights.items():
            rows.append(_row(layer, weight, "dense", value.shape, value.size,
                             np.count_nonzero(value), value.nbytes))
    rows.append(_row("total", "", "", (), sum(r["total"] for r in rows),
                     sum(r["nonzero"] for r in rows), sum(r["bytes"] for r in rows)))
    return dict(path=path, layers=rows, size_bytes=_size(path), gzip_bytes=_gzip_size(path))


def _row(layer, weight, fmt, shape, total, nonzero, nbytes):
    return dict(layer=layer, weight=weight, format=fmt, shape=tuple(shape), total=int(total),
                nonzero=int(nonzero), sparsity=float(1.0 - nonzero / total) if total else 0.0,
                bytes=int(nbytes))


def _size(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _gzip_size(path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(path, arcname=os.path.basename(os.path.normpath(path)))
    return buffer.tell()
