"""`export_for_serving`: a pruned model as a versioned TF Serving SavedModel."""

import json
import numbers
import os
import re
import shutil
import uuid

import keras
import tensorflow as tf

from keras_sparse.conversion import strip
from keras_sparse.export import csr, sparse_dense
from keras_sparse.layers.base import SparseLayer
from keras_sparse.layers.raw_reads import raw_reads
from keras_sparse.layers.registry import flatten_layers, masked_weights
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_built_model, check_int, check_number

__all__ = ["SPARSE_FORMATS", "export_for_serving"]

SPARSE_FORMATS = (None, "csr", "auto")
# Where the export records its per-layer kernel choices and timings (TF
# Serving ignores `assets.extra` except for its warm-up file).
REPORT_FILE = os.path.join("assets.extra", "keras_sparse_export.json")


def export_for_serving(model, base_dir, version=None, sparse_format=None,
                       min_sparsity=0.9, overwrite=False, batch_sizes=(1, 64),
                       allow_xla=False, input_signature=None):
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

    A subclassed model (one defined by its own `call`) has no `keras.Input`
    to read the signature from: it is exported with `input_signature`, or
    else with the input shape it was built with (its first call; the batch
    dimension becomes `None`, the dtype is the model's input dtype). Its
    inputs are then named `input` (or by the specs' names) and its outputs
    `output_0`, `output_1`, ... (or by the keys of a dict output).

    Args:
        model: a built Sequential, Functional or subclassed `keras.Model`,
            sparse or not.
        base_dir: directory holding the versions (created if missing).
        version: integer >= 0; None means one more than the largest
            existing version (1 for the first).
        sparse_format: None (dense kernels), "csr" or "auto". With "csr" or
            "auto", every `Dense` kernel, and every `EinsumDense` kernel
            whose equation is a matmul over the last input axis, with at
            least `min_sparsity` zeros is stored compactly (float32 values
            plus about one byte of position per nonzero, decoded once at
            load; see `keras_sparse.export.encoding`). "csr" multiplies with
            TensorFlow's COO kernel up to batch 8 and its CSR kernel above.
            "auto" times every candidate kernel (`keras_sparse.export.kernels`)
            for each such layer on this machine at each of `batch_sizes`
            and keeps, per batch size, the fastest one only if it is clearly
            faster than the dense matmul, else dense (rebuilt from the
            compact form at load); the exported layer picks its kernel from
            the batch size of each call. The assembled model is then timed
            against the dense one, and at a batch size where it is slower
            every layer goes back to dense (`report(path)["model_check"]`).
            Other layers are unchanged.
        min_sparsity: fraction of zeros from which a kernel is stored
            sparse, in [0, 1]. Interpretation: "density threshold" is read
            as sparsity >= 0.9.
        overwrite: replace an existing `version` directory.
        batch_sizes: with "auto", the batch sizes to time (positive
            integers); a call whose batch size lies between two of them
            uses the choice of the nearer one on a log scale.
        allow_xla: with "auto", also try kernels compiled by XLA
            (`jit_compile=True` inside the SavedModel). They are often the
            fastest at small batches, but TF Serving runs them only with
            `--xla_cpu_compilation_enabled=true`, and each new batch size
            compiles once on its first call.
        input_signature: `None`, a `tf.TensorSpec` or a list of them (one
            per model input), the inputs of the exported signature. `None`
            takes the model's `keras.Input`s, or for a subclassed model the
            shape it was built with.

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
    specs = _input_specs(model, input_signature)
    if sparse_format not in SPARSE_FORMATS:
        raise ValueError(
            f"export_for_serving: unknown `sparse_format` {sparse_format!r}; "
            f"allowed: {list(SPARSE_FORMATS)}."
        )
    if sparse_format == "csr" and _is_subclassed(model):
        raise ValueError(
            'export_for_serving: sparse_format="csr" rebuilds the model layer by '
            f"layer, which needs a Sequential or Functional model; {model.name!r} "
            "is subclassed. Use sparse_format=None."
        )
    min_sparsity = check_number(min_sparsity, "min_sparsity", 0, 1)
    if version is not None:
        version = check_int(version, "version", minimum=0, allowed=" or None")
    if not isinstance(overwrite, bool):
        raise TypeError(f"export_for_serving: `overwrite` must be a bool; got {overwrite!r}.")
    if not isinstance(allow_xla, bool):
        raise TypeError(f"export_for_serving: `allow_xla` must be a bool; got {allow_xla!r}.")
    batch_sizes = _check_batch_sizes(batch_sizes)
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

    served, layers = strip(model), {}
    if sparse_format == "csr":
        served, layers = csr.to_csr(served, min_sparsity)
    elif sparse_format == "auto":
        served, layers, model_check = _auto(served, specs, min_sparsity, batch_sizes, allow_xla)
    module, signature = _serving_module(served, specs)
    record = dict(sparse_format=sparse_format, min_sparsity=min_sparsity,
                  batch_sizes=list(batch_sizes), allow_xla=allow_xla,
                  layers={name: _jsonable(info) for name, info in layers.items()})
    if sparse_format == "auto":
        record["model_check"] = _jsonable(model_check)

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
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        with open(os.path.join(staging, REPORT_FILE), "w") as file:
            json.dump(record, file, indent=1)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _auto(dense, specs, min_sparsity, batch_sizes, allow_xla):
    """`(model, layer reports, model check)` for `sparse_format="auto"`.

    Each layer's kernels are timed alone; then the assembled model is timed
    against the dense one at each batch size, and where it is slower, every
    layer goes back to dense at that batch size (the per-layer checks miss
    what lies between layers).
    """
    served, layers = sparse_dense.to_sparse(
        dense, min_sparsity, sparse_dense.timed_choice(batch_sizes, allow_xla))
    check = dict(timings_ms=None, fallback=[])
    if not layers:
        return served, layers, check
    check["timings_ms"] = sparse_dense.check_whole_model(
        _serve_function(dense), _serve_function(served), specs, batch_sizes)
    if check["timings_ms"] is None:
        return served, layers, check
    choose_regimes, check["fallback"] = sparse_dense.dense_where_slower(
        layers, check["timings_ms"])
    if choose_regimes is not None:
        served, layers = sparse_dense.to_sparse(dense, min_sparsity, choose_regimes)
    return served, layers, check


def _check_batch_sizes(batch_sizes):
    sizes = tuple(batch_sizes) if isinstance(batch_sizes, (list, tuple)) else None
    if not sizes or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1
                        for b in sizes):
        raise ValueError(
            f"export_for_serving: `batch_sizes` must be a non-empty list or tuple of "
            f"integers >= 1; got {batch_sizes!r}."
        )
    return tuple(sorted({int(b) for b in sizes}))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _is_subclassed(model):
    return not isinstance(model, (keras.Sequential, keras_compat.Functional))


def _input_specs(model, input_signature):
    """Named `tf.TensorSpec`s of the exported signature; raises if unknown."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"export_for_serving: `model` must be a keras.Model; got {type(model).__name__}."
        )
    if input_signature is not None:
        specs = (list(input_signature) if isinstance(input_signature, (list, tuple))
                 else [input_signature])
        if not specs or not all(isinstance(spec, tf.TensorSpec) for spec in specs):
            raise TypeError(
                "export_for_serving: `input_signature` must be a tf.TensorSpec or a "
                f"non-empty list of them; got {input_signature!r}."
            )
        names = _unique([spec.name or "input" for spec in specs])
        return [tf.TensorSpec(spec.shape, spec.dtype, name=name)
                for spec, name in zip(specs, names)]
    if _is_subclassed(model):
        return _specs_from_build(model)
    inputs = check_built_model(model, "export_for_serving")
    names = _unique([t.name for t in inputs])
    return [tf.TensorSpec(t.shape, t.dtype, name=name) for t, name in zip(inputs, names)]


def _specs_from_build(model):
    """Specs from the input shape a subclassed model was built with."""
    shape = (model.get_build_config() or {}).get("input_shape") if model.built else None
    if shape is None:
        raise ValueError(
            f"export_for_serving: subclassed model {model.name!r} was never called, "
            "so its input shape is unknown; call it on data first or pass "
            "`input_signature` (e.g. tf.TensorSpec((None, 784), tf.float32))."
        )
    single = all(d is None or isinstance(d, int) for d in shape)
    shapes = [shape] if single else list(shape)
    dtype = getattr(model, "input_dtype", None) or "float32"
    names = _unique(["input"] * len(shapes))
    return [tf.TensorSpec((None,) + tuple(s)[1:], dtype, name=name)
            for s, name in zip(shapes, names)]


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


def _serving_module(model, specs):
    """`(module, signature)`: what to save, and `model`'s named signature.

    Written directly rather than with `keras.export.ExportArchive`, which
    checkpoints every variable twice (as the Keras variable and as the
    `tf.Variable` its functions capture; keras-team/keras#23553): that
    doubles the file, and its list misses variables read only by a resource
    initializer (`COOIndices`), which TF Serving's loader then cannot find.
    """
    serve = _serve_function(model)
    masks = {id(v) for layer in flatten_layers(model) if isinstance(layer, SparseLayer)
             for v in layer.mask_variables()}
    module = tf.Module(name="serving")
    # The tf.Variables behind the Keras variables: what the functions capture.
    module.model_variables = [variable.value for variable in model.variables
                              if id(variable) not in masks]
    # Tensors rebuilt from the compact storage at load (not checkpointed).
    module.load_time_tensors = [
        tensor for layer in flatten_layers(model)
        if isinstance(layer, sparse_dense.SparseKernelDense)
        for tensor in layer.load_time.values()]
    # Only as a signature: a tf.function attribute would be traced and
    # stored a second time.
    signature = tf.function(serve, input_signature=specs, autograph=False)
    return module, signature.get_concrete_function()


def _serve_function(model):
    """`serve(*tensors) -> {output name: tensor}`: the exported signature's body."""
    subclassed = _is_subclassed(model)

    def serve(*tensors):
        if subclassed:
            # The stripped copy has its masks folded in and all ones: read the
            # kernels themselves, so no mask variable is captured or written.
            with raw_reads(masked_weights(model)):
                outputs = model(tensors[0] if len(tensors) == 1 else list(tensors),
                                training=False)
            if isinstance(outputs, dict):
                names = _unique([str(key) for key in outputs])
                return dict(zip(names, outputs.values()))
            flat = keras.tree.flatten(outputs)
            return {f"output_{i}": value for i, value in enumerate(flat)}
        outputs = model(keras.tree.pack_sequence_as(model.input, list(tensors)), training=False)
        return dict(zip(_unique(model.output_names), keras.tree.flatten(outputs)))

    return serve


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
