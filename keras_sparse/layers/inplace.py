"""In-place edits of a few entries of a large variable, by flat index.

A mask update of a 4096x4096 layer at 98% sparsity changes about 200,000
of its 16.7 million entries. Rewriting the whole variable (`assign(where(...))`)
moves 67 MB per variable and per optimizer slot; TensorFlow's own
`scatter_nd_update` kernel writes entry by entry (13.5 ms for 100,000 on 2
CPU cores). Compiled by XLA, the same scatter updates the variable's buffer
in place: 0.4 ms. XLA needs static shapes, so the indices are padded to a
fixed `capacity` with an out-of-range index, whose updates XLA skips.

Reading entries is the same story: TensorFlow's `GatherV2` copies entry by
entry (11 ms for 168,000 of 16.7 million on 2 CPU cores), the compiled
gather of the same entries, padded to a capacity of 524,288, 3.4 ms.
"""

import contextlib

import tensorflow as tf

from keras_sparse.utils import keras_compat

__all__ = ["capacity_for", "get_entries", "read_bounds", "reads_in_halves", "set_entries"]

MIN_CAPACITY = 1024
# Inside `reads_in_halves`, reads padded to this many positions or more.
HALVES_MIN = 1 << 17
_halves = [False]


def capacity_for(count):
    """A static index capacity for up to `count` entries: a power of two >= 1024.

    Example:

    >>> capacity_for(335_545)
    524288
    """
    return 1 << max(MIN_CAPACITY.bit_length() - 1, int(count).bit_length())


@tf.function(jit_compile=True)
def _get(flat, indices):
    return tf.gather(flat, indices)


def get_entries(tensor, positions, capacity=None):
    """The entries of `tensor` at flat `positions` (graph code).

    The same values as `tf.gather(tf.reshape(tensor, [-1]), positions)`:
    compiled by XLA when `positions` holds at most `capacity` entries (the
    indices padded to the smallest of `read_bounds(capacity)` that holds
    them), TensorFlow's gather otherwise.

    Args:
        tensor: a tensor or variable, read flat.
        positions: int32/int64 vector of flat positions, all in range.
        capacity: `None` (TensorFlow's gather), or the static length the
            positions are padded to (see `capacity_for`).

    Example:

    ```python
    active_weights = get_entries(kernel, active, capacity_for(n_active))
    ```
    """
    flat = tf.reshape(tf.convert_to_tensor(tensor), [-1])
    if capacity is None:
        return tf.gather(flat, positions)
    count = tf.size(positions)
    # 32-bit indices make XLA's gather about 4x faster than 64-bit ones.
    size = flat.shape.num_elements()
    index_dtype = tf.int32 if size is not None and size < 2**31 else tf.int64

    def compiled(bound):
        def read():
            padded = tf.pad(tf.cast(positions, index_dtype), [[0, bound - count]])
            if bound < HALVES_MIN or not _halves[-1]:
                return _get(flat, padded)[:count]
            half = bound // 2
            return tf.concat([_get(flat, padded[:half]), _get(flat, padded[half:])], 0)[:count]
        return read

    # XLA's gather visits every padded index: the smallest of a few bounds
    # that holds the positions is read (a quarter of `capacity`: 0.6 ms
    # instead of 1.1 ms for 100,000 of 16.7 million on 2 CPU cores).
    bounds = read_bounds(capacity)
    branches = [compiled(bound) for bound in bounds] + [lambda: tf.gather(flat, positions)]
    return tf.switch_case(_branch(count, bounds), branches)


@contextlib.contextmanager
def reads_in_halves():
    """Within it, `get_entries` traces a long compiled read as two launches.

    XLA runs a launch on one thread; TensorFlow runs independent launches
    side by side. That pays where nothing else runs beside the read (the
    mask update: RigL's round on a 4096x4096 layer took 0.86x as long), not
    in a train step, whose other work already fills the cores.

    Example:

    ```python
    with reads_in_halves():
        drop_scores = get_entries(weight, active, capacity)
    ```
    """
    _halves.append(True)
    try:
        yield
    finally:
        _halves.pop()


def read_bounds(capacity):
    """The static lengths `get_entries` may pad to under `capacity`, ascending
    (quarters of it, none below `MIN_CAPACITY` or above `capacity`: the
    padding reads index 0, so a tensor of `capacity` entries may be empty)."""
    return sorted({min(capacity, max(MIN_CAPACITY, capacity * part // 4))
                   for part in (1, 2, 3, 4)})


def _branch(count, bounds):
    """Index of the smallest of `bounds` holding `count`; `len(bounds)` if none does."""
    return tf.reduce_sum(tf.cast(count > tf.constant(bounds, count.dtype), tf.int32))


@tf.function(jit_compile=True)
def _set(handle, plan, indices):
    # `handle`: the variable's resource (an input, so no variable is
    # captured); `plan`: `(dtype, shape, ((source, value, how), ...))`,
    # plain Python that keys the trace; `indices`: [sources, capacity] flat
    # positions, padded with an index past every variable (XLA skips those
    # updates).
    dtype, shape, edits = plan
    flat = tf.reshape(tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype), [-1])
    for source, value, how in edits:
        fill = tf.fill(tf.shape(indices[source]), tf.constant(value, dtype))
        scatter = tf.tensor_scatter_nd_add if how == "add" else tf.tensor_scatter_nd_update
        flat = scatter(flat, indices[source][:, None], fill)
    tf.raw_ops.AssignVariableOp(resource=handle, value=tf.reshape(flat, shape))


def set_entries(assignments, capacity):
    """Sets entries of variables, given by flat index, in place (graph code).

    Args:
        assignments: a list of `(variable, edits)`: a Keras or `tf.Variable`
            (distributed ones: every component is edited the same way, in
            cross-replica context), and a list of `(indices, value)`: int64
            vectors of flat positions (at most `capacity` each, no repeats)
            and the Python number they take, applied in order (a later edit
            wins at a position both name); `(indices, value, "add")` adds
            the number instead. Index vectors shared between edits are
            padded once.
        capacity: the static length the indices are padded to (see
            `capacity_for`).

    Example:

    ```python
    set_entries([(mask, [(dropped, 0.0), (grown, 1.0)])], capacity_for(n_active))
    ```
    """
    targets = [keras_compat.backend_variable(v) for v, _ in assignments]
    beyond = max(t.shape.num_elements() for t in targets)
    sources, plan = [], []
    for target, (_, edits) in zip(targets, assignments):
        steps = []
        for indices, value, *how in edits:
            found = next((i for i, s in enumerate(sources) if s is indices), None)
            if found is None:
                found = len(sources)
                sources.append(indices)
            steps.append((found, float(value), how[0] if how else "set"))
        plan.append((target.dtype, tuple(target.shape), tuple(steps)))
    padded = tf.stack([tf.pad(tf.cast(i, tf.int64), [[0, capacity - tf.size(i, tf.int32)]],
                              constant_values=beyond) for i in sources])
    # Per device: the components a distributed variable keeps there.
    parts = [getattr(t, "values", (t,)) for t in targets]
    if len({len(p) for p in parts}) != 1:
        raise ValueError("set_entries: the variables are not distributed alike.")
    for components in zip(*parts):
        with tf.device(components[0].device):
            # One launch per variable: XLA's scatter runs on one thread, and
            # TensorFlow runs independent launches side by side (RigL's round
            # on 4096x4096 took 0.78x as long as with one launch for all).
            for component, edits in zip(components, plan):
                _set(component.handle, edits, padded)
