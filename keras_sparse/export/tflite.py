"""`export_tflite`: a sparse model as a TFLite flatbuffer, with what was stored sparse."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_sparse.conversion import strip

__all__ = ["export_tflite"]


def export_tflite(model, path, optimize_sparsity=True, write_report=True):
    """Writes `model` to `path` as a TFLite model, its sparse kernels stored sparse.

    The model is stripped first (`ks.strip`: masks folded into the kernels)
    and converted with TensorFlow's TFLite converter. With
    `optimize_sparsity` the converter gets `tf.lite.Optimize.
    EXPERIMENTAL_SPARSITY`: it decides per constant tensor whether to store
    it in TFLite's sparse format (a tensor with enough zeros, in a layout
    its kernels read). The model is also converted without that option, to
    report the size saved.

    The file needs neither Keras nor this package: TensorFlow's
    `tf.lite.Interpreter` or LiteRT's `ai_edge_litert.interpreter.
    Interpreter` runs it.

    Args:
        model: a built Sequential or Functional `keras.Model`, sparse or not.
        path: the `.tflite` file to write (its directory is created).
        optimize_sparsity: store sparse tensors sparse (default True).
        write_report: also write the report as JSON to `path + ".json"`.

    Returns:
        The report, a dict:
        - `path`, `size_bytes` (this file), `dense_size_bytes` (the same
          model converted without the sparsity option) and `size_ratio`
          (`dense_size_bytes / size_bytes`);
        - `layers`: per kernel of the stripped model, `{layer, shape,
          sparsity, stored_sparse}`: `stored_sparse` is True when the
          flatbuffer holds a constant of the kernel's (transposed) shape
          with TFLite sparsity parameters, False when it holds it dense,
          None when no constant of that shape was found (the converter
          changed its layout).

    Raises:
        TypeError: `model` is not a `keras.Model`.

    Example:

    ```python
    info = ks.export.export_tflite(model, "model.tflite")
    print(info["size_ratio"], [r["stored_sparse"] for r in info["layers"]])
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; got {type(model).__name__}.")
    plain = strip(model)
    sparse_blob = _convert(plain, optimize_sparsity)
    dense_blob = sparse_blob if not optimize_sparsity else _convert(plain, False)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(sparse_blob)
    info = {
        "path": str(path),
        "optimize_sparsity": bool(optimize_sparsity),
        "size_bytes": len(sparse_blob),
        "dense_size_bytes": len(dense_blob),
        "size_ratio": len(dense_blob) / len(sparse_blob),
        "layers": _stored_sparse(plain, sparse_blob),
    }
    if write_report:
        with open(f"{path}.json", "w") as f:
            json.dump(info, f, indent=2)
    return info


def _convert(model, optimize_sparsity):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if optimize_sparsity:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def _tflite_shapes(kernel):
    """The shapes TFLite may store `kernel` in: as is, and outputs first."""
    shape = tuple(kernel.shape)
    if len(shape) == 2:  # FULLY_CONNECTED keeps weights as (units, inputs)
        return {shape[::-1], shape}
    if len(shape) == 4:  # CONV_2D keeps (out, h, w, in)
        return {(shape[3], shape[0], shape[1], shape[2]), shape}
    return {shape}


def _stored_sparse(plain, blob):
    interpreter = tf.lite.Interpreter(model_content=blob)
    tensors = [(tuple(int(d) for d in t["shape"]), bool(t.get("sparsity_parameters")))
               for t in interpreter.get_tensor_details()]
    rows = []
    for layer in plain.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shapes = _tflite_shapes(kernel)
        found = [sparse for shape, sparse in tensors if shape in shapes]
        value = np.asarray(keras.ops.convert_to_numpy(kernel))
        rows.append({"layer": layer.name, "shape": list(kernel.shape),
                     "sparsity": float(np.mean(value == 0)),
                     "stored_sparse": any(found) if found else None})
    return rows
