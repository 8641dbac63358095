"""Sparse matmul kernels for serving, and the load-time tensors they read.

Each kernel computes `activation(x @ W + bias)` for a 2-D `x`
(`batch x input_dim`) from `W^T`'s nonzeros (`values`, row-major) and the
tensors it needs derived from the stored positions. Those are built once
when the SavedModel is loaded (`LoadTimeTensor`), never per call.

Kernels (measured for a 4096x4096 kernel at 98% on 2 shared CPU cores by
`benchmarks/export_latency.py`, "kernel" rows; `ks.export` times them again
per layer at export time when `sparse_format="auto"`). On a quiet machine
(load ~0.5), with bias and ReLU, ms per call at batch 1 / 64: dense 3.5 /
11.5, `coo` 2.4 / 41, `csr` 6.6 / 5.9, `segment` 4.4 / 16, `ell_xla`
1.9 / 25.

- `dense`: `tf.matmul` with `W` rebuilt dense at load; the reference, and
  the choice whenever no sparse kernel is faster (the file still stores `W`
  compactly).
- `coo`: `tf.sparse.sparse_dense_matmul(W^T, x, adjoint_b=True)`, the
  transposed form: fastest of TensorFlow's own kernels at batch 1-8.
- `csr`: `SparseMatrixMatMul` with `transpose_b` / `transpose_output`
  (no explicit transposes), CSR built from the COO indices at each call
  (TensorFlow has no op taking CSR components, and a CSR matrix cannot be
  stored in a SavedModel variable: read back from a resource it loses the
  shape information `SparseMatrixMatMul` needs: a `tf.Variable` made from
  the CSR matrix fails at trace time in TF 2.21 with "Unable to access shape
  and type info from variant input 0"); fastest from batch ~16 up.
  The per-call conversion is a large share: about 2.3 ms of 7 ms at batch
  64 (measured once, load ~1).
- `segment`: gather the input columns, scale, `tf.math.segment_sum` per
  output unit.
- `ell_xla`: the nonzeros padded to the longest row (ELLPACK), a gather and
  a row sum compiled by XLA (`jit_compile=True`) with the bias and the
  activation fused in: no intermediate tensor, fastest at small batches.
  Needs XLA at serving time (TF Serving: `--xla_cpu_compilation_enabled`),
  so it is only a candidate when the export allows XLA.
- `coo_split2`, `csr_split2`: `coo` and `csr` on two row blocks of `W^T`
  (split where half the nonzeros lie), two independent ops that
  TensorFlow's inter-op pool runs at once, then concatenated. TensorFlow's
  COO kernel appears to use one thread at small batches: with a free
  second core the split takes about 0.75x its time; on a loaded machine it
  gains nothing and the export-time timing keeps the unsplit kernel.
  Measured (rough: 2 shared cores, load ~1.3, medians of 25-30 alternating
  rounds): the layer alone, batch 1, `coo_split2` 1.47 ms vs `coo` 1.93
  (dense 2.79); batch 64, `csr_split2` 4.81 vs `csr` 5.09 (dense 12.7).
  The served MLP 784-4096-4096-10 at 98% (TensorFlow-only process, fc1 and
  fc2 forced to each kernel pair): batch 1, 1.39 ms split vs 1.69 (dense
  2.47); batch 64, 4.90 vs 5.96 (dense 12.0). At load ~3 (another process
  busy on both cores) the split was 0-10% slower than the unsplit kernel.

Not kept (measured on the 4096x4096 layer, 2 shared cores, rough): COO with
int32 indices (`SparseTensorDenseMatMul` takes them) 1.38 vs 1.51 ms at
batch 1 and no gain once split; passing `x^T` instead of `adjoint_b` no
change; four row blocks no better than two on 2 cores; XLA ELL in two
blocks 1.15 vs 1.13 ms; `unsorted_segment_sum` 1.6x slower than
`segment_sum`; `SparseMatMul` with `b_is_sparse` 9x slower
than dense at batch 1.
"""

import uuid

import tensorflow as tf

KERNELS = ("dense", "coo", "csr", "segment", "ell_xla", "coo_split2", "csr_split2")
XLA_KERNELS = ("ell_xla",)

# Tensors each kernel reads besides `bias`: the stored `values`, and the
# load-time tensors `derive` builds. A call reads only these.
NEEDS = {
    "dense": ("dense_kernel",),
    "coo": ("values", "coo_indices"),
    "csr": ("values", "coo_indices"),
    "segment": ("values", "rows32", "cols32"),
    "ell_xla": ("ell_cols", "ell_values"),
    "coo_split2": ("block_shapes",) + tuple(f"block{i}_{part}" for i in range(2)
                                             for part in ("indices", "values")),
    "csr_split2": ("block_shapes",) + tuple(f"block{i}_{part}" for i in range(2)
                                             for part in ("indices", "values")),
}
# Row blocks of the `_split2` kernels: one independent product per block,
# which TensorFlow's inter-op thread pool runs concurrently.
BLOCKS = 2
# Fewest output units a kernel handles (a block holds at least one row).
MIN_UNITS = {"coo_split2": BLOCKS, "csr_split2": BLOCKS}


def derive(name, rows, cols, values, units, input_dim, ell_width):
    """One load-time tensor from int64 `(rows, cols)` and `values` of `W^T`."""
    if name == "dense_kernel":  # W itself, input_dim x units
        return tf.scatter_nd(tf.stack([cols, rows], 1), values, [input_dim, units])
    if name == "coo_indices":
        return tf.stack([rows, cols], 1)
    if name == "rows32":
        return tf.cast(rows, tf.int32)
    if name == "cols32":
        return tf.cast(cols, tf.int32)
    if name == "block_shapes" or name.startswith("block"):
        return _block_tensor(name, rows, cols, values, units, input_dim)
    if name in ("ell_cols", "ell_values"):
        counts = tf.math.bincount(tf.cast(rows, tf.int32), minlength=units, maxlength=units,
                                  dtype=tf.int64)
        starts = tf.cumsum(counts, exclusive=True)
        slot = tf.range(tf.shape(rows, tf.int64)[0]) - tf.gather(starts, rows)
        where = tf.stack([rows, slot], 1)
        if name == "ell_cols":  # padding points at column 0 with value 0
            return tf.scatter_nd(where, tf.cast(cols, tf.int32), [units, ell_width])
        return tf.scatter_nd(where, values, [units, ell_width])
    raise ValueError(f"unknown load-time tensor {name!r}.")


def _block_bounds(rows, units):
    """`BLOCKS + 1` row boundaries splitting the nonzeros into equal parts."""
    nnz = tf.shape(rows, tf.int64)[0]
    # The row of the nonzero at each split point (`units` if there is none).
    rows_or_end = tf.concat([rows, tf.constant([units], tf.int64)], 0)
    # Every block keeps at least one row (TensorFlow's CSR kernel fails on
    # a matrix without rows); the kernels need `units >= BLOCKS`.
    inner = [tf.clip_by_value(tf.gather(rows_or_end, (nnz * i) // BLOCKS), i, units - BLOCKS + i)
             for i in range(1, BLOCKS)]
    return tf.stack([tf.constant(0, tf.int64)] + inner + [tf.constant(units, tf.int64)])


def _block_tensor(name, rows, cols, values, units, input_dim):
    """`block_shapes` (`[BLOCKS, 2]`) or one block's `indices`/`values`."""
    bounds = _block_bounds(rows, units)
    if name == "block_shapes":
        return tf.stack([bounds[1:] - bounds[:-1],
                         tf.fill([BLOCKS], tf.constant(input_dim, tf.int64))], 1)
    block, part = name[len("block"):].split("_")
    low, high = bounds[int(block)], bounds[int(block) + 1]
    inside = (rows >= low) & (rows < high)
    if part == "values":
        return tf.boolean_mask(values, inside)
    return tf.stack([tf.boolean_mask(rows, inside) - low, tf.boolean_mask(cols, inside)], 1)


def shape_and_dtype(name, nnz, units, input_dim, ell_width, dtype):
    if name.startswith("block") and name != "block_shapes":  # sizes known at load
        return ([None, 2], tf.int64) if name.endswith("indices") else ([None], dtype)
    return {
        "dense_kernel": ([input_dim, units], dtype),
        "coo_indices": ([nnz, 2], tf.int64),
        "rows32": ([nnz], tf.int32),
        "cols32": ([nnz], tf.int32),
        "ell_cols": ([units, ell_width], tf.int32),
        "ell_values": ([units, ell_width], dtype),
        "block_shapes": ([BLOCKS, 2], tf.int64),
    }[name]


class LoadTimeTensor(tf.saved_model.experimental.TrackableResource):
    """A tensor computed from stored variables once per load, not per call.

    A resource, like a lookup table: its variable is not checkpointed, so
    the SavedModel stores only the compact form, and every loader
    (`tf.saved_model.load`, TF Serving's session) runs `_initialize` after
    restoring the variables. It is initialized on creation too.

    Args:
        compute: a function of no arguments returning the tensor (it reads
            the stored variables; traced into the SavedModel).
        shape, dtype: of the tensor.

    Example:

    ```python
    indices = LoadTimeTensor(lambda: decode(...), [nnz, 2], tf.int64).read()
    ```
    """

    def __init__(self, compute, shape, dtype):
        super().__init__()
        self._compute, self._shape, self._dtype = compute, list(shape), tf.as_dtype(dtype)
        # Unique per export: a name shared by two loaded models would let one
        # overwrite the other's tensor.
        self._shared_name = f"load_time_tensor_{uuid.uuid4().hex}"
        self._initialize()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=self._dtype, shape=self._shape,
                                      shared_name=self._shared_name)

    def _initialize(self):
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle,
                                           value=tf.convert_to_tensor(self._compute()))

    def read(self):
        value = tf.raw_ops.ReadVariableOp(resource=self.resource_handle, dtype=self._dtype)
        value.set_shape(self._shape)  # the raw read has no static shape
        return value


def _finish(y, bias, activation):
    # BiasAdd rather than AddV2: TensorFlow's graph optimizer fuses
    # MatMul + BiasAdd + activation into one op, as for a Keras Dense.
    if bias is None:
        return activation(y)
    if bias.shape.rank == 1 and y.shape.rank == 2:
        return activation(tf.nn.bias_add(y, bias))
    return activation(y + bias)


def _dense(x, t, bias, activation, units):
    return _finish(tf.matmul(x, t["dense_kernel"]), bias, activation)


def _coo(x, t, bias, activation, units):
    matrix = tf.SparseTensor(t["coo_indices"], t["values"], [units, x.shape[-1]])
    return _finish(tf.transpose(tf.sparse.sparse_dense_matmul(matrix, x, adjoint_b=True)),
                   bias, activation)


def _csr(x, t, bias, activation, units):
    matrix = tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=t["coo_indices"], values=t["values"],
        dense_shape=tf.constant([units, x.shape[-1]], tf.int64))
    y = tf.raw_ops.SparseMatrixMatMul(a=matrix, b=x, transpose_b=True, transpose_output=True)
    y.set_shape([x.shape[0], units])
    return _finish(y, bias, activation)


def _segment(x, t, bias, activation, units):
    gathered = tf.gather(tf.transpose(x), t["cols32"]) * t["values"][:, None]
    y = tf.math.segment_sum(gathered, t["rows32"])  # rows up to the last nonempty one
    y = tf.pad(y, [[0, units - tf.shape(y)[0]], [0, 0]])
    return _finish(tf.transpose(y), bias, activation)


def _ell(x, cols, values, bias, activation):
    y = tf.transpose(tf.reduce_sum(tf.gather(tf.transpose(x), cols) * values[..., None], 1))
    return _finish(y, bias, activation)


def _ell_xla(x, t, bias, activation, units):
    # One compiled function per layer call site: gather, multiply, row sum,
    # bias and activation fuse into one loop.
    fused = tf.function(lambda x, c, v, *b: _ell(x, c, v, b[0] if b else None, activation),
                        jit_compile=True, autograph=False)
    extra = () if bias is None else (bias,)
    return fused(x, t["ell_cols"], t["ell_values"], *extra)


def _blocks(t):
    """`[(indices, values, dense_shape)]` of the row blocks of `W^T`."""
    return [(t[f"block{i}_indices"], t[f"block{i}_values"], t["block_shapes"][i])
            for i in range(BLOCKS)]


def _coo_split2(x, t, bias, activation, units):
    # Independent ops, run concurrently: TensorFlow's COO kernel uses one
    # thread at small batches.
    parts = [tf.sparse.sparse_dense_matmul(tf.SparseTensor(indices, values, shape), x,
                                           adjoint_b=True)
             for indices, values, shape in _blocks(t)]
    y = tf.transpose(tf.concat(parts, 0))
    y.set_shape([x.shape[0], units])
    return _finish(y, bias, activation)


def _csr_split2(x, t, bias, activation, units):
    parts = []
    for indices, values, shape in _blocks(t):
        matrix = tf.raw_ops.SparseTensorToCSRSparseMatrix(indices=indices, values=values,
                                                           dense_shape=shape)
        parts.append(tf.raw_ops.SparseMatrixMatMul(a=matrix, b=x, transpose_b=True,
                                                   transpose_output=True))
    y = tf.concat(parts, 1)
    y.set_shape([x.shape[0], units])
    return _finish(y, bias, activation)


_APPLY = {"dense": _dense, "coo": _coo, "csr": _csr, "segment": _segment, "ell_xla": _ell_xla,
          "coo_split2": _coo_split2, "csr_split2": _csr_split2}


def apply(kernel, x, tensors, bias, activation, units):
    """`activation(x @ W + bias)` with `kernel` (a name in `KERNELS`).

    Args:
        kernel: the kernel's name.
        x: `[batch, input_dim]`, float32.
        tensors: `{name: tensor}`: `values` and every tensor in
            `NEEDS[kernel]` (see `derive`).
        bias: `[units]` (or broadcastable) or None.
        activation: a function of one tensor.
        units: output size.

    Example:

    ```python
    y = apply("coo", x, {"values": v, "coo_indices": idx}, b, tf.nn.relu, 4096)
    ```
    """
    if kernel not in _APPLY:
        raise ValueError(f"unknown kernel {kernel!r}; known: {KERNELS}.")
    return _APPLY[kernel](x, tensors, bias, activation, units)


def eager_tensors(rows, cols, values, units, input_dim, ell_width, names):
    """`{name: tensor}` computed now (for timing kernels at export time)."""
    rows, cols = tf.constant(rows, tf.int64), tf.constant(cols, tf.int64)
    values = tf.constant(values)
    found = {"values": values}
    for name in set(names) - {"values"}:
        found[name] = derive(name, rows, cols, values, units, input_dim, ell_width)
    return found

