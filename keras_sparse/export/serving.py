"""`export_for_serving`: a pruned model as a versioned TF Serving SavedModel."""

import os
import re
import shutil
import uuid

import keras
import tensorflow as tf

from keras_sparse.conversion import strip
from keras_sparse.export import csr
from keras_sparse.layers.registry import flatten_layers
from keras_sparse.utils.argument_validation import check_built_model, check_int, check_number

__all__ = ["SPARSE_FORMATS", "export_for_serving"]

SPARSE_FORMATS = (None, "csr")


def export_for_serving(model, base_dir, version=None, sparse_format=None,
                       min_sparsity=0.9, overwrite=False):
    """Writes `model` to `base_dir/VERSION/` as a TF Serving SavedModel.

    The export is built from `ks.strip(model)`: masks are folded into the
    kernels and no mask variable is written. The SavedModel holds TensorFlow
    graphs and variables only, so a process that imports nothing but
    `tensorflow` (or the `tensorflow/serving` container) loads it. Its
    `serving_default` signature takes one named tensor per model input (the
    `keras.Input` names) and returns a dict named by the output layers.

    `base_dir` is TF Serving's `model_base_path`: versions are integer
    subdirectories. The SavedModel is written to a hidden temporary
    directory in `base_dir` and renamed into place, so a server polling
    `base_dir` never sees a half-written version.

    Args:
        model: a built Sequential or Functional `keras.Model`, sparse or not.
        base_dir: directory holding the versions (created if missing).
        version: integer >= 0; None means one more than the largest
            existing version (1 for the first).
        sparse_format: None (dense kernels) or "csr": every `Dense` kernel,
            and every `EinsumDense` kernel whose equation is a matmul over
            the last input axis, with at least `min_sparsity` zeros is
            stored as CSR (int32 indices) and multiplied with TensorFlow's
            sparse kernels (see `keras_sparse.export.csr`). Other layers are
            unchanged.
        min_sparsity: fraction of zeros from which a kernel is stored as
            CSR, in [0, 1]. interpretation: the "density threshold" of
            the export is read as a minimum sparsity (0.9 keeps kernels
            that are at least 90% zeros).
        overwrite: replace an existing `version` directory.

    Returns:
        The version directory written, as a string.

    Raises:
        TypeError: `model` is not a built Sequential/Functional model, or a
            bad `base_dir` or `overwrite`.
        ValueError: an unknown `sparse_format`, a bad `min_sparsity` or
            `version`, a model without inputs, an existing `version` without
            `overwrite=True`, or a `base_dir` that cannot be created.

    Example:

    ```python
    path = ks.export.export_for_serving(model, "saved_models/lenet")
    # saved_models/lenet/1; serve with the tensorflow/serving image
    ```
    """
    inputs = check_built_model(model, "export_for_serving")
    if sparse_format not in SPARSE_FORMATS:
        raise ValueError(
            f"export_for_serving: unknown `sparse_format` {sparse_format!r}; "
            f"allowed: {list(SPARSE_FORMATS)}."
        )
    min_sparsity = check_number(min_sparsity, "min_sparsity", 0, 1)
    if version is not None:
        version = check_int(version, "version", minimum=0, allowed=" or None")
    if not isinstance(overwrite, bool):
        raise TypeError(f"export_for_serving: `overwrite` must be a bool; got {overwrite!r}.")
    if not isinstance(base_dir, (str, os.PathLike)):
        raise TypeError(
            f"export_for_serving: `base_dir` must be a path (str or os.PathLike); "
            f"got {type(base_dir).__name__}."
        )
    base_dir = os.path.abspath(os.fspath(base_dir))
    _check_base_dir(base_dir)
    if version is None:
        version = 1 + max(_versions(base_dir), default=0)
    target = os.path.join(base_dir, str(int(version)))
    if os.path.exists(target) and not overwrite:
        raise ValueError(
            f"export_for_serving: `version` {version} already exists at {target!r}; "
            "pass overwrite=True to replace it or version=None for the next one."
        )

    served = strip(model)
    if sparse_format == "csr":
        served = csr.to_csr(served, min_sparsity)
    module, signature = _serving_module(served, inputs)

    try:
        os.makedirs(base_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"export_for_serving: cannot create `base_dir` {base_dir!r}: {error}."
        ) from error
    # Hidden and non-numeric: TF Serving ignores it until it is renamed.
    staging = os.path.join(base_dir, f".tmp-export-{uuid.uuid4().hex}")
    try:
        tf.saved_model.save(module, staging, signatures={"serving_default": signature})
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_base_dir(base_dir):
    """Raises unless `base_dir` is a directory or could be created as one."""
    path = base_dir
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"export_for_serving: cannot create `base_dir` {base_dir!r}: "
            f"{path!r} exists and is not a directory."
        )


def _versions(base_dir):
    if not os.path.isdir(base_dir):
        return []
    return [int(name) for name in os.listdir(base_dir) if name.isdigit()]


def _unique(names):
    """Valid TensorFlow op names, made unique by a numeric suffix."""
    seen, result = set(), []
    for name in names:
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip("_.-") or "input"
        candidate, i = name, 1
        while candidate in seen:
            candidate, i = f"{name}_{i}", i + 1
        seen.add(candidate)
        result.append(candidate)
    return result


def _serving_module(model, inputs):
    """`(module, signature)`: what to save, and `model`'s named signature.

    Written directly rather than with `keras.export.ExportArchive`, which
    checkpoints every variable twice (as the Keras variable and as the
    `tf.Variable` its functions capture; keras-team/keras#23553): that
    doubles the file, and its list misses variables read only by a resource
    initializer (`COOIndices`), which TF Serving's loader then cannot find.
    """
    input_names = _unique([t.name for t in inputs])
    output_names = _unique(model.output_names)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=name) for t, name in zip(inputs, input_names)]

    def serve(*tensors):
        outputs = model(keras.tree.pack_sequence_as(model.input, list(tensors)), training=False)
        return dict(zip(output_names, keras.tree.flatten(outputs)))

    module = tf.Module(name="serving")
    # The tf.Variables behind the Keras variables: what the functions capture.
    module.model_variables = [variable.value for variable in model.variables]
    module.csr_indices = [layer.indices for layer in flatten_layers(model)
                          if isinstance(layer, csr.CSRDense)]
    # Only as a signature: a tf.function attribute would be traced and
    # stored a second time.
    signature = tf.function(serve, input_signature=specs, autograph=False)
    return module, signature.get_concrete_function()


def _move_into_place(staging, target):
    """Renames `staging` to `target`, replacing an existing `target`."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    # A directory cannot be renamed over a non-empty one: move the old
    # version aside first (hidden name, so servers ignore it), then delete it.
    retired = os.path.join(os.path.dirname(target), f".old-{uuid.uuid4().hex}")
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
