"""`SparseKernelDense`: a Dense-like layer served from compact sparse storage.

It stands in for a `Dense` layer (or an `EinsumDense` that is a matmul over
the last input axis) in exported models. The file stores the nonzeros of
`W^T` as float32 values plus compact positions (`encoding`: about one byte
per nonzero); the tensors its kernels need are rebuilt once at load
(`kernels.LoadTimeTensor`). Each call picks a kernel by batch size from
`regimes`, which `select_kernels` sets from timings taken at export time.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_sparse.export import encoding, kernels, selection

# `csr` export: the measured crossover between TensorFlow's two sparse
# kernels (COO up to this batch size, CSR above).
SMALL_BATCH = 8
CSR_REGIMES = ((SMALL_BATCH, "coo"), (None, "csr"))


def matmul_kernel(layer):
    """`W` (`input_dim x units`) if `layer` computes `x @ W` on its last axis, else None."""
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


def _dispatch(regime_list, x, run):
    """`run(kernel)` for the regime holding `x`'s batch size.

    A batch size fixed in the signature picks its kernel when traced: the
    serving graph then holds that kernel only, with no `tf.cond`.
    """
    static = x.shape[0]
    if static is not None:
        return run(next(k for bound, k in regime_list if bound is None or static <= bound))
    if len(regime_list) == 1:
        return run(regime_list[0][1])
    batch = tf.shape(x)[0]
    (bound, first), rest = regime_list[0], regime_list[1:]
    # Nested conds rather than one switch_case: no index arithmetic.
    return tf.cond(batch <= bound, lambda: run(first), lambda: _dispatch(rest, x, run))


def _needed(regime_list):
    """Load-time tensors the regimes' kernels read (`values` is stored, not derived)."""
    return sorted({name for _, k in regime_list for name in kernels.NEEDS[k]} - {"values"})


def select_kernels(kernel, bias, activation, batch_sizes, allow_xla=False,
                   rounds=7, calls=None, margin=selection.MARGIN):
    """Times the candidate kernels for one layer; `(regimes, report)`.

    Every kernel in `kernels.KERNELS` (XLA ones only with `allow_xla`) runs
    `activation(x @ W + bias)` on random inputs at each batch size; a sparse
    kernel is chosen for a batch size only if it takes at most `margin`
    times the dense time. The dispatching layer is then timed against dense
    at each batch size; where it is slower, that batch size goes back to
    dense.

    Returns:
        `(regimes, report)`: `[(max_batch or None, kernel)]` and a dict with
        `timings_ms` (`{batch: {kernel: ms}}`), `chosen` (`{batch: kernel}`),
        `checked_ms` (`{batch: {"dense", "chosen"}}`: the dispatching
        layer against dense) and `fallback` (batch sizes sent back to dense
        by that check).
    """
    kernel = np.asarray(kernel, np.float32)
    input_dim, units = kernel.shape
    rows, cols, values = encoding.nonzeros(kernel)
    width = max(1, int(np.bincount(rows, minlength=units).max())) if rows.size else 1
    names = [k for k in kernels.KERNELS if (allow_xla or k not in kernels.XLA_KERNELS)
             and units >= kernels.MIN_UNITS.get(k, 1)]
    tensors = kernels.eager_tensors(rows, cols, values, units, input_dim, width,
                                    sorted({n for k in names for n in kernels.NEEDS[k]}))
    bias = None if bias is None else tf.constant(bias, tf.float32)
    # One trace for every batch size, as in the SavedModel (XLA still
    # compiles once per shape).
    spec = [tf.TensorSpec([None, input_dim], tf.float32)]
    functions = {k: tf.function(lambda x, k=k: kernels.apply(k, x, tensors, bias, activation, units),
                                input_signature=spec, autograph=False) for k in names}
    rng = np.random.default_rng(0)
    inputs = {int(b): tf.constant(rng.standard_normal((int(b), input_dim)).astype("float32"))
              for b in batch_sizes}
    usable = {}
    for name, fn in functions.items():
        try:  # a kernel may lack an implementation for some shape or build
            fn(inputs[min(inputs)])
            usable[name] = fn
        except (tf.errors.OpError, ValueError, TypeError):
            continue
    timings = selection.time_candidates(usable, inputs, rounds=rounds, calls=calls,
                                        reference="dense" if "dense" in usable else None)
    chosen = selection.choose(timings, margin)
    found = selection.regimes(chosen)
    report = dict(timings_ms={b: {k: t * 1e3 for k, t in ts.items()} for b, ts in timings.items()},
                  chosen=dict(chosen), checked_ms={}, fallback=[])
    # The dispatching layer against dense: a batch size where it is slower
    # (dispatch overhead, noise) goes back to dense, and the rest is rechecked.
    while found != [(None, "dense")]:
        composed = tf.function(lambda x, found=found: _dispatch(found, x, lambda k: kernels.apply(
            k, x, tensors, bias, activation, units)), input_signature=spec, autograph=False)
        checked = selection.time_candidates({"dense": usable["dense"], "chosen": composed},
                                            inputs, rounds=rounds, calls=calls,
                                            reference="dense")
        report["checked_ms"] = {b: {k: t * 1e3 for k, t in ts.items()} for b, ts in checked.items()}
        slower = [b for b, ts in checked.items() if ts["chosen"] > ts["dense"] and chosen[b] != "dense"]
        if not slower:
            break
        chosen = {b: "dense" if b in slower else k for b, k in chosen.items()}
        report["fallback"] = sorted(set(report["fallback"] or []) | set(slower))
        found = selection.regimes(chosen)
    report["chosen"] = chosen
    return found, report


def timed_choice(batch_sizes, allow_xla=False):
    """`fn(layer, kernel) -> (regimes, report)` timing `layer`'s candidates.

    The kernels time `activation(x @ W + bias)` as the exported layer runs
    it: with the bias and activation when the bias has shape `(units,)`,
    the plain product otherwise (then they are applied after reshaping).

    Example:

    ```python
    clone, reports = to_sparse(model, 0.9, timed_choice((1, 64)))
    ```
    """

    def choose_regimes(layer, kernel):
        bias = getattr(layer, "bias", None)
        if bias is None or tuple(bias.shape) == (kernel.shape[1],):
            bias = None if bias is None else ops.convert_to_numpy(bias)
            return select_kernels(kernel, bias, layer.activation, batch_sizes, allow_xla)
        return select_kernels(kernel, None, lambda t: t, batch_sizes, allow_xla)

    return choose_regimes


def check_whole_model(dense_fn, sparse_fn, specs, batch_sizes, rounds=7, calls=None):
    """The assembled models timed against each other: `{batch: {"dense", "auto"}}` (ms).

    The per-layer choices are each checked against dense, but a model is
    more than its layers (the ops between them, which kernels overlap), so
    the exported model is timed once more as a whole at each batch size.

    Args:
        dense_fn, sparse_fn: functions of the model inputs (one tensor per
            spec), e.g. the dense and the "auto" model's call.
        specs: `tf.TensorSpec`s of the inputs; the batch axis is filled
            with each batch size, float inputs with random numbers, others
            with zeros (a valid index for an embedding, say).
        batch_sizes: the batch sizes to time.

    Returns:
        `{batch: {"dense": ms, "auto": ms}}`, or None when an input has an
        unknown size besides its batch axis (nothing to time it with).

    Example:

    ```python
    timings = check_whole_model(dense_model, sparse_model, specs, (1, 64))
    ```
    """
    if any(spec.shape.rank is None or None in spec.shape[1:] for spec in specs):
        return None
    rng = np.random.default_rng(0)

    def sample(spec, batch):
        shape = (batch,) + tuple(spec.shape[1:])
        if spec.dtype.is_floating:
            return tf.constant(rng.standard_normal(shape), spec.dtype)
        return tf.zeros(shape, spec.dtype)

    # One trace for every batch size, as in the SavedModel.
    traced = {name: tf.function(fn, input_signature=list(specs), autograph=False)
              for name, fn in (("dense", dense_fn), ("auto", sparse_fn))}
    inputs = {int(b): [sample(spec, int(b)) for spec in specs] for b in batch_sizes}
    # `time_candidates` calls `fn(x)` and waits for one tensor of the result.
    flat = {name: (lambda xs, fn=fn: tf.nest.flatten(fn(*xs))[0]) for name, fn in traced.items()}
    timings = selection.time_candidates(flat, inputs, rounds=rounds, calls=calls,
                                        reference="dense")
    return {b: {k: t * 1e3 for k, t in ts.items()} for b, ts in timings.items()}


def dense_where_slower(reports, timings):
    """`choose_regimes` keeping each layer's choices but dense where the model was slower.

    Args:
        reports: `{layer name: report}` from `to_sparse`.
        timings: `check_whole_model`'s result.

    Returns:
        `(choose_regimes or None, slower batch sizes)`; None when no batch
        size needs to change.
    """
    slower = sorted(b for b, ts in timings.items() if ts["auto"] > ts["dense"] and any(
        r["chosen"].get(b, "dense") != "dense" for r in reports.values()))
    if not slower:
        return None, slower

    def choose_regimes(layer, kernel):
        report = dict(reports[layer.name])
        chosen = {b: "dense" if b in slower else k for b, k in report["chosen"].items()}
        report.update(chosen=chosen, model_fallback=slower)
        return selection.regimes(chosen) if chosen else [(None, "dense")], report

    return choose_regimes, slower


class SparseKernelDense(keras.layers.Layer):
    """`activation(x @ W + bias)` with `W` stored compactly, kernel chosen by batch size.

    Built by `from_layer` for exported models; inference only. Leading axes
    of the input are flattened around the product; the bias keeps the
    replaced layer's shape. Values and bias are read in float32 (the sparse
    kernels have no float16 variant) and the output cast to the compute
    dtype. A call emits only the ops its regimes need: no cast for a
    float32 input, no reshape for a rank-2 one, no batch-size dispatch for
    a single regime, and only the tensors its kernels read; so a layer that
    is "dense" at every batch size runs what a Keras `Dense` runs (MatMul,
    BiasAdd, activation) while its file keeps the compact form.

    Args:
        units: output size.
        input_dim: size of the contracted (last) input axis.
        nnz: number of stored nonzeros.
        index_format: "delta8" or "uint16" (see `encoding`).
        index_sizes: `{array name: length}` of the stored index arrays.
        ell_width: longest row of `W^T` (for the `ell_xla` kernel).
        regimes: `[(max_batch or None, kernel name)]`, batch sizes
            ascending, the last unbounded.
        activation: applied last.
        bias_shape: shape of the bias, or None for no bias.

    Example:

    ```python
    layer = SparseKernelDense.from_layer(dense_layer, regimes=[(None, "coo")])
    ```
    """

    INDEX_DTYPES = {"index_codes": "uint8", "index_cols": "uint16", "index_row_ptrs": "int32"}

    def __init__(self, units, input_dim, nnz, index_format, index_sizes, ell_width, regimes,
                 activation=None, bias_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.input_dim, self.nnz = int(units), int(input_dim), int(nnz)
        self.index_format, self.index_sizes = index_format, dict(index_sizes)
        self.ell_width = int(ell_width)
        self.regimes = [(None if b is None else int(b), str(k)) for b, k in regimes]
        for _, name in self.regimes:
            if name not in kernels.KERNELS:
                raise ValueError(f"SparseKernelDense: unknown kernel {name!r} in `regimes`; "
                                 f"known: {kernels.KERNELS}.")
            if self.units < kernels.MIN_UNITS.get(name, 1):
                raise ValueError(f"SparseKernelDense: kernel {name!r} needs at least "
                                 f"{kernels.MIN_UNITS[name]} units; got units={self.units}.")
        self.activation = keras.activations.get(activation)
        self.bias_shape = None if bias_shape is None else tuple(bias_shape)

    def build(self, input_shape=None):
        def weight(name, shape, dtype=None):
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros",
                                   trainable=False, autocast=False)

        self.values = weight("values", (self.nnz,), "float32")
        self.index_arrays = {name: weight(name, (size,), self.INDEX_DTYPES[name])
                             for name, size in self.index_sizes.items()}
        self.bias = None if self.bias_shape is None else weight("bias", self.bias_shape, "float32")

    def _load_time_tensors(self):
        """One `LoadTimeTensor` per tensor the regimes' kernels read."""

        def compute(name):
            def run():
                rows, cols = encoding.decode(
                    self.index_format, {k: v.value for k, v in self.index_arrays.items()},
                    self.units, self.input_dim)
                return kernels.derive(name, rows, cols, self.values.value, self.units,
                                      self.input_dim, self.ell_width)
            return run

        self.load_time = {}
        for name in _needed(self.regimes):
            shape, dtype = kernels.shape_and_dtype(name, self.nnz, self.units, self.input_dim,
                                                   self.ell_width, tf.float32)
            self.load_time[name] = kernels.LoadTimeTensor(compute(name), shape, dtype)

    @classmethod
    def from_layer(cls, layer, regimes, index_format=None):
        """A built `SparseKernelDense` holding `layer`'s weights, or None.

        None when `layer` is not a plain `Dense`/matmul `EinsumDense`.
        """
        kernel = matmul_kernel(layer)
        if kernel is None:
            return None
        kernel = ops.convert_to_numpy(kernel).astype("float32")
        input_dim, units = kernel.shape
        rows, cols, values = encoding.nonzeros(kernel)
        index_format, arrays = encoding.encode(rows, cols, units, input_dim, index_format)
        width = max(1, int(np.bincount(rows, minlength=units).max())) if rows.size else 1
        bias = getattr(layer, "bias", None)
        sparse = cls(units=units, input_dim=input_dim, nnz=values.size, index_format=index_format,
                     index_sizes={k: int(a.size) for k, a in arrays.items()}, ell_width=width,
                     regimes=regimes, activation=layer.activation,
                     bias_shape=None if bias is None else tuple(bias.shape),
                     dtype=layer.dtype_policy, name=layer.name)
        sparse.build()
        sparse.values.assign(values)
        for name, array in arrays.items():
            sparse.index_arrays[name].assign(array)
        if bias is not None:
            sparse.bias.assign(ops.convert_to_numpy(bias).astype("float32"))
        sparse._load_time_tensors()
        return sparse

    def call(self, inputs):
        # Only the ops the regimes need: a rank-2 float32 input whose
        # regimes are all "dense" runs exactly what a Keras `Dense` runs
        # (read kernel, MatMul, BiasAdd, activation), which TensorFlow's
        # graph optimizer fuses into one op.
        x = inputs if inputs.dtype == tf.float32 else tf.cast(inputs, tf.float32)
        flat = x.shape.rank != 2
        if flat:
            x = tf.reshape(x, [-1, self.input_dim])
        names = {name for _, k in self.regimes for name in kernels.NEEDS[k]}
        tensors = {name: t.read() for name, t in self.load_time.items() if name in names}
        if "values" in names:
            tensors["values"] = self.values.value
        # Bias and activation go into the kernel (fused where it can) when
        # the bias broadcasts over the flattened rows.
        fused = self.bias is None or self.bias_shape == (self.units,)
        bias = None if self.bias is None else self.bias.value
        y = _dispatch(self.regimes, x, lambda k: kernels.apply(
            k, x, tensors, bias if fused else None,
            self.activation if fused else (lambda t: t), self.units))
        if flat:
            y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
        if not fused:
            y = self.activation(y + bias)
        return y if y.dtype == self.compute_dtype else tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "input_dim": self.input_dim,
                "nnz": self.nnz, "index_format": self.index_format,
                "index_sizes": self.index_sizes, "ell_width": self.ell_width,
                "regimes": self.regimes,
                "activation": keras.activations.serialize(self.activation),
                "bias_shape": self.bias_shape}


def sparsity_of(layer):
    """Fraction of zeros in `layer`'s matmul kernel, or None if it has none."""
    kernel = matmul_kernel(layer)
    if kernel is None:
        return None
    kernel = ops.convert_to_numpy(kernel)
    return 1.0 - np.count_nonzero(kernel) / kernel.size


def to_sparse(model, min_sparsity, choose_regimes, index_format=None):
    """Clone of a plain Functional `model` with eligible layers as `SparseKernelDense`.

    Args:
        model: a plain (stripped) Keras model.
        min_sparsity: fraction of zeros from which a layer is converted.
        choose_regimes: `fn(layer, kernel) -> (regimes, report)`.
        index_format: force "delta8" or "uint16" (None: the smaller).

    Returns:
        `(clone, {layer name: report})`; other layers are shared, not copied.
    """
    reports = {}

    def convert(layer):
        sparsity = sparsity_of(layer)
        if sparsity is None or sparsity < min_sparsity:
            return layer
        regime_list, report = choose_regimes(layer, ops.convert_to_numpy(matmul_kernel(layer)))
        sparse = SparseKernelDense.from_layer(layer, regime_list, index_format)
        reports[layer.name] = dict(report, sparsity=float(sparsity), regimes=regime_list,
                                   index_format=sparse.index_format, units=sparse.units,
                                   input_dim=sparse.input_dim, nnz=sparse.nnz)
        return sparse

    clone = keras.models.clone_model(model, clone_function=convert, recursive=True)
    return clone, reports
