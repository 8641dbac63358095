"""`report`: what an exported SavedModel stores, and its size on disk."""

import io
import json
import os
import tarfile
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_sparse.export.serving import REPORT_FILE, export_for_serving

# The stored variables of a `SparseKernelDense` layer: one kernel.
SPARSE_PARTS = ("values", "index_codes", "index_cols", "index_row_ptrs")


def report(path_or_model, sparse_format=None, min_sparsity=0.9, **export_kwargs):
    """Per-weight sparsity and parameter counts, and the SavedModel's size.

    Args:
        path_or_model: a version directory written by `export_for_serving`,
            or a `keras.Model`, which is then
            exported to a temporary directory with `sparse_format` and
            `min_sparsity` and reported on.
        sparse_format, min_sparsity, **export_kwargs: as in
            `export_for_serving` (models only).

    Returns:
        A dict with:
        - `path`: the directory (None for a model);
        - `layers`: one row per stored weight, `{layer, weight, format
          ("dense", "csr" or "auto"), shape, total, nonzero, sparsity,
          bytes}`; a sparse kernel is one row with its dense shape,
          `bytes` being what its values and positions take, plus
          `index_format` ("delta8" or "uint16") and `regimes` (the kernel
          per batch-size range); the last row, `layer="total"`, sums them;
        - `kernels`: per sparse layer, what the export recorded: the
          regimes, and with "auto" the timings (ms) of every candidate at
          each batch size and the kernel chosen;
        - `model_check`: with "auto", the assembled model timed against
          the dense one at each batch size (`timings_ms`: `{batch: {"dense",
          "auto"}}`) and the batch sizes sent back to dense where it was
          slower (`fallback`); None for other formats;
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
                                      min_sparsity=min_sparsity, **export_kwargs)
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
    record_path = os.path.join(path, REPORT_FILE)
    record = {"layers": {}}
    if os.path.exists(record_path):
        with open(record_path) as file:
            record = json.load(file)
    layers = {}
    for variable in variables:
        layer, _, weight = variable.name.split(":")[0].rpartition("/")
        layers.setdefault(layer, {})[weight] = variable.numpy()
    rows = []
    for layer, weights in layers.items():
        name = layer.rpartition("/")[2]
        info = record["layers"].get(name)
        if info is not None and "values" in weights:
            parts = [weights.pop(part) for part in SPARSE_PARTS if part in weights]
            shape = (info["input_dim"], info["units"])
            rows.append(dict(
                _row(layer, "kernel", record["sparse_format"], shape, int(np.prod(shape)),
                     np.count_nonzero(parts[0]), sum(p.nbytes for p in parts)),
                index_format=info["index_format"], regimes=info["regimes"]))
        for weight, value in weights.items():
            rows.append(_row(layer, weight, "dense", value.shape, value.size,
                             np.count_nonzero(value), value.nbytes))
    rows.append(_row("total", "", "", (), sum(r["total"] for r in rows),
                     sum(r["nonzero"] for r in rows), sum(r["bytes"] for r in rows)))
    return dict(path=path, layers=rows, kernels=record["layers"],
                model_check=record.get("model_check"), size_bytes=_size(path),
                gzip_bytes=_gzip_size(path))


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
