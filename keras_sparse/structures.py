"""Mask structures: which masks a prunable weight may hold.

- `Unstructured()` (the default): any mask.
- `NM(n, m)`: every group of `m` consecutive weights along the kernel's
  input dimension (the input channels of a convolution: axis `-2` of a
  `[..., in, out]` kernel) holds exactly `n` active weights. NVIDIA's sparse
  tensor cores run `NM(2, 4)`. tfmot's `sparsity_m_by_n=(z, m)` counts the
  ZEROS of a group: it is `NM(m - z, m)` here (tfmot's `(2, 4)` is
  `NM(2, 4)`, its `(3, 4)` is `NM(1, 4)`), and it groups the same weights
  (tfmot's `pruning_utils.weights_rearrange` moves the input channels last).
- `Block((r, c))`: the kernel, seen as a matrix of `r`-row by `c`-column
  tiles over (input dimension, output dimension) at each spatial position,
  has every tile all active or all inactive. tfmot's `block_size=(r, c)`.
  TFLite's sparse FULLY_CONNECTED reads 1x4 blocks of its `(units, inputs)`
  weights: four consecutive inputs of one unit, `Block((4, 1))` on a Keras
  `(inputs, units)` kernel (measured: the converter stores that kernel
  block-sparse, and `Block((1, 4))` as plain sparse).

Every mask rule works in the structure's units: N:M groups or blocks.
The operations they share (graph code, no NumPy): `pool` a score to one
value per block, `mask(scores, num_active)` (the best units kept),
`validate(mask)` (the invariant) and `num_units(shape)`.

Example:

```python
model = ks.sparsify(dense, 0.5, structure=ks.structures.NM(2, 4))
ks.structures.get("2:4")       # NM(2, 4)
```
"""

import math

import keras
import tensorflow as tf

from keras_sparse.utils.argument_validation import check_int
from keras_sparse.utils.serialization import Configurable

__all__ = ["NM", "Block", "Structure", "Unstructured", "check_agrees", "get", "serialize"]

# A requested sparsity within this of 1 - n/m reads as N:M's own.
_TOLERANCE = 1e-9


def _where(name):
    return f" {name}" if name else ""


class Structure(Configurable):
    """Base class of mask structures (see the module doc).

    Subclasses define the unit a rule selects (`unit_size` weights), how a
    kernel splits into units (`units`/`from_units`), and the checks.
    """

    unit_size = 1
    fixed_sparsity = None  # N:M: the sparsity every mask has

    @property
    def is_unstructured(self):
        return False

    def check(self, shape, name=""):
        """Raises a ValueError naming `name` and `shape` if the weight cannot hold it."""
        if len(shape) < 2:
            raise ValueError(
                f"{self!r} needs a kernel of rank >= 2 ([..., input, output]); weight"
                f"{_where(name)} has shape {tuple(shape)}.")

    def num_units(self, shape):
        """Number of N:M groups or blocks of a weight of `shape`."""
        return math.prod(shape) // self.unit_size

    def count(self, shape, sparsity, name=""):
        """Active weights of a weight of `shape` at `sparsity`, in whole units.

        Raises:
            ValueError: `sparsity` is not reachable in whole units; the
                message names `name` and `shape`.
        """
        raise NotImplementedError

    def units(self, tensor):
        """`tensor` (a weight's shape) as `[num_units, unit_size]`."""
        raise NotImplementedError

    def from_units(self, units, shape):
        """The inverse of `units`."""
        raise NotImplementedError

    def pool(self, scores):
        """One score per unit: the sum of `scores` over it, `[num_units]`."""
        return tf.reduce_sum(self.units(tf.cast(scores, tf.float32)), axis=1)

    def expand(self, unit_mask, shape):
        """A weight-shaped mask from one 0/1 value per unit."""
        unit_mask = tf.cast(tf.reshape(unit_mask, [-1, 1]), tf.float32)
        return self.from_units(tf.tile(unit_mask, [1, self.unit_size]), shape)

    def mask(self, scores, num_active):
        """The structured mask keeping the best units, `num_active` weights.

        Args:
            scores: a float tensor of the weight's shape (higher is kept).
            num_active: active weights (a multiple of `unit_size`; int or
                int32 tensor).
        """
        raise NotImplementedError

    def validate(self, mask):
        """A scalar bool tensor: `mask` holds the structure."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, str(self.get_config())))


@keras.saving.register_keras_serializable(package="keras_sparse")
class Unstructured(Structure):
    """Any mask: every weight chosen on its own (the default).

    Mask rules keep their element-wise code path for it.

    Example:

    >>> bool(Unstructured().validate(tf.constant([[1.0, 0.0]])))
    True
    """

    @property
    def is_unstructured(self):
        return True

    def check(self, shape, name=""):
        pass

    def count(self, shape, sparsity, name=""):
        size = math.prod(shape)
        return size - int(math.floor(sparsity * size + 0.5))

    def units(self, tensor):
        return tf.reshape(tensor, [-1, 1])

    def from_units(self, units, shape):
        return tf.reshape(units, shape)

    def mask(self, scores, num_active):
        flat = tf.reshape(tf.cast(scores, tf.float32), [-1])
        _, indices = tf.math.top_k(flat, k=num_active, sorted=False)
        ones = tf.ones_like(indices, dtype=tf.float32)
        keep = tf.scatter_nd(indices[:, None], ones, tf.shape(flat, out_type=tf.int32))
        return tf.reshape(keep, tf.shape(scores))

    def validate(self, mask):
        return tf.constant(True)

    def __repr__(self):
        return "Unstructured()"


def _input_last(rank):
    """Permutation of a `[..., in, out]` kernel putting `in` last (self-inverse)."""
    return list(range(rank - 2)) + [rank - 1, rank - 2]


def rank_in_rows(scores):
    """Each entry's rank in its row of `scores` (0 = largest; ties to the lower index)."""
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=1, stable=True)


@keras.saving.register_keras_serializable(package="keras_sparse")
class NM(Structure):
    """N:M sparsity: `n` active weights in every `m` consecutive input weights.

    Groups run along the kernel's input dimension (axis -2 of a `[..., in,
    out]` kernel: a Dense kernel's rows, a convolution's input channels),
    as NVIDIA's sparse tensor cores and tfmot read them; the sparsity is
    fixed at `1 - n / m`. tfmot's `sparsity_m_by_n=(m - n, m)` counts
    zeros: `NM(2, 4)` is its `(2, 4)`, `NM(1, 4)` its `(3, 4)`.

    Args:
        n: active weights per group, `1 <= n < m`.
        m: group size, >= 2; must divide the input dimension of each
            structured kernel.

    Raises:
        TypeError, ValueError: a bad `n` or `m`, naming it and the range.

    Example:

    >>> NM(2, 4).mask(tf.constant([[4.0], [1.0], [3.0], [2.0]]), 2).numpy().ravel()
    array([1., 0., 1., 0.], dtype=float32)
    """

    def __init__(self, n, m):
        self.m = check_int(m, "m", minimum=2)
        self.n = check_int(n, "n", minimum=1, maximum=self.m - 1,
                           allowed=f" (n < m={self.m})")

    @property
    def unit_size(self):
        return self.m

    @property
    def fixed_sparsity(self):
        return 1.0 - self.n / self.m

    def check(self, shape, name=""):
        super().check(shape, name)
        if shape[-2] % self.m:
            raise ValueError(
                f"{self!r}: `m`={self.m} must divide the input dimension of the kernel; "
                f"weight{_where(name)} has shape {tuple(shape)} (input dimension "
                f"{shape[-2]}). Choose an m dividing {shape[-2]}, or keep the layer dense "
                "(`dense_layers`).")

    def count(self, shape, sparsity, name=""):
        size = math.prod(shape)
        if sparsity == 0:
            return size  # masks all ones: not pruned yet
        if abs(sparsity - self.fixed_sparsity) <= _TOLERANCE:
            return size // self.m * self.n
        raise ValueError(
            f"`sparsity`={sparsity} is not reachable with {self!r} for weight{_where(name)} "
            f"of shape {tuple(shape)}: every group of {self.m} holds {self.n} active, so "
            f"its sparsity is {self.fixed_sparsity} (or 0.0, masks all ones). Ask for "
            f"sparsity={self.fixed_sparsity}, or keep the layer dense (`dense_layers`).")

    def units(self, tensor):
        tensor = tf.convert_to_tensor(tensor)
        return tf.reshape(tf.transpose(tensor, _input_last(tensor.shape.rank)), [-1, self.m])

    def from_units(self, units, shape):
        perm = _input_last(len(shape))
        moved = [shape[i] for i in perm]
        return tf.transpose(tf.reshape(units, moved), perm)

    def top_in_groups(self, scores, counts):
        """Mask of the `counts[g]` best entries of each group `g` (weight-shaped).

        Args:
            scores: float tensor of the weight's shape.
            counts: int tensor `[num_groups]` (or a scalar for every group).
        """
        groups = self.units(tf.cast(scores, tf.float32))
        counts = tf.cast(counts, tf.int32)
        if counts.shape.rank == 0:
            counts = tf.fill([tf.shape(groups)[0]], counts)
        keep = tf.cast(rank_in_rows(groups) < counts[:, None], tf.float32)
        return self.from_units(keep, scores.shape)

    def mask(self, scores, num_active=None):
        # Every group keeps its n best (num_active is n * groups), or all of
        # them for the dense count (sparsity 0: not pruned yet).
        scores = tf.convert_to_tensor(scores)
        per_group = self.n
        if num_active is not None:
            dense = tf.cast(num_active, tf.int32) >= tf.size(scores, out_type=tf.int32)
            per_group = tf.where(dense, self.m, self.n)
        return self.top_in_groups(scores, per_group)

    def group_counts(self, mask):
        """Active weights per group, int32 `[num_groups]`."""
        return tf.reduce_sum(tf.cast(self.units(tf.cast(mask, tf.float32)) > 0, tf.int32), axis=1)

    def validate(self, mask):
        return tf.reduce_all(tf.equal(self.group_counts(mask), self.n))

    def get_config(self):
        return {"n": self.n, "m": self.m}

    def __repr__(self):
        return f"NM({self.n}, {self.m})"


@keras.saving.register_keras_serializable(package="keras_sparse")
class Block(Structure):
    """Block sparsity: `(r, c)` tiles of the kernel all active or all inactive.

    A `[..., in, out]` kernel is tiled at each spatial position by `r`
    input rows by `c` output columns (a Dense kernel's `(r, c)` blocks, as
    tfmot's `block_size=(r, c)`); `r` must divide the input and `c` the
    output dimension. Rules keep or drop whole blocks, scored by the sum of
    their weights' scores (tfmot averages, which ranks the same).

    Args:
        block_size: `(r, c)`, two ints >= 1.

    Raises:
        TypeError, ValueError: a bad `block_size`, naming it.

    Example:

    >>> Block((1, 2)).mask(tf.constant([[1.0, 2.0, 0.1, 0.1]]), 2).numpy()
    array([[1., 1., 0., 0.]], dtype=float32)
    """

    def __init__(self, block_size):
        if isinstance(block_size, int) or not hasattr(block_size, "__len__") or \
                len(block_size) != 2:
            raise TypeError(f"`block_size` must be a pair (r, c) of ints >= 1; got "
                            f"{block_size!r}.")
        self.block_size = tuple(check_int(v, "block_size", minimum=1) for v in block_size)

    @property
    def unit_size(self):
        return self.block_size[0] * self.block_size[1]

    def check(self, shape, name=""):
        super().check(shape, name)
        r, c = self.block_size
        n_in, n_out = shape[-2], shape[-1]
        if r > n_in or c > n_out:
            raise ValueError(
                f"{self!r}: `block_size`={self.block_size} is larger than the kernel "
                f"(input x output {n_in} x {n_out}) of weight{_where(name)}, shape "
                f"{tuple(shape)}. Choose a smaller block, or keep the layer dense "
                "(`dense_layers`).")
        if n_in % r or n_out % c:
            raise ValueError(
                f"{self!r}: `block_size`={self.block_size} must divide the kernel's input x "
                f"output dimensions {n_in} x {n_out} (weight{_where(name)}, shape "
                f"{tuple(shape)}). Choose a block that divides them, or keep the layer dense "
                "(`dense_layers`).")

    def count(self, shape, sparsity, name=""):
        blocks = self.num_units(shape)
        inactive = int(math.floor(sparsity * blocks + 0.5))
        if sparsity > 0 and inactive >= blocks:
            raise ValueError(
                f"`sparsity`={sparsity} is not reachable with {self!r} for weight"
                f"{_where(name)} of shape {tuple(shape)}: its {blocks} blocks would all "
                "be inactive. Lower the sparsity, use a smaller block, or keep the layer "
                "dense (`dense_layers`).")
        return (blocks - inactive) * self.unit_size

    def _grid(self, shape):
        r, c = self.block_size
        return [-1, shape[-2] // r, r, shape[-1] // c, c]

    def units(self, tensor):
        tensor = tf.convert_to_tensor(tensor)
        tiles = tf.reshape(tensor, self._grid(tensor.shape))
        return tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4]), [-1, self.unit_size])

    def from_units(self, units, shape):
        r, c = self.block_size
        tiles = tf.reshape(units, [-1, shape[-2] // r, shape[-1] // c, r, c])
        return tf.reshape(tf.transpose(tiles, [0, 1, 3, 2, 4]), shape)

    def mask(self, scores, num_active):
        pooled = self.pool(scores)
        blocks = tf.cast(num_active, tf.int32) // self.unit_size
        keep = Unstructured().mask(pooled, blocks)
        return self.expand(keep, scores.shape)

    def validate(self, mask):
        units = self.units(tf.cast(mask, tf.float32)) > 0
        return tf.reduce_all(tf.equal(tf.reduce_all(units, axis=1), tf.reduce_any(units, axis=1)))

    def get_config(self):
        return {"block_size": list(self.block_size)}

    def __repr__(self):
        return f"Block({self.block_size})"


def serialize(structure):
    """A config for layer and callback configs (`None` for `Unstructured`)."""
    structure = get(structure)
    if structure.is_unstructured:
        return None
    return keras.saving.serialize_keras_object(structure)


def get(structure, argument="structure"):
    """A `Structure` from None, a name, a config dict or an instance.

    Args:
        structure: `None` or `"unstructured"` (`Unstructured()`), `"n:m"`
            such as `"2:4"` (`NM(2, 4)`), a dict from `serialize` /
            `keras.saving.serialize_keras_object` or `{"n": 2, "m": 4}` /
            `{"block_size": (1, 4)}`, or a `Structure`.
        argument: the argument's name, for messages.

    Raises:
        TypeError, ValueError: anything else, naming `argument`.

    Example:

    >>> get("2:4"), get(None), get({"block_size": (1, 4)})
    (NM(2, 4), Unstructured(), Block((1, 4)))
    """
    if structure is None:
        return Unstructured()
    if isinstance(structure, Structure):
        return structure
    if isinstance(structure, str):
        text = structure.strip().lower()
        if text == "unstructured":
            return Unstructured()
        parts = text.split(":")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return NM(int(parts[0]), int(parts[1]))
        raise ValueError(f"`{argument}` must be None, 'unstructured', 'n:m' (e.g. '2:4'), a "
                         f"config dict or a ks.structures.Structure; got {structure!r}.")
    if isinstance(structure, dict):
        if "class_name" in structure:
            found = keras.saving.deserialize_keras_object(structure)
            if isinstance(found, Structure):
                return found
        elif set(structure) == {"n", "m"}:
            return NM(**structure)
        elif set(structure) == {"block_size"}:
            return Block(**structure)
        elif not structure:
            return Unstructured()
        raise ValueError(f"`{argument}`: {structure!r} is not the config of a "
                         "ks.structures.Structure.")
    raise TypeError(f"`{argument}` must be None, a string, a config dict or a "
                    f"ks.structures.Structure; got {structure!r} of type "
                    f"{type(structure).__name__}.")


def check_agrees(parameters, structure, who):
    """The structures `parameters` hold; refuses a rule's other `structure=`.

    The structure belongs to each weight (set by `ks.sparsify` or the
    layer); a rule reads it there. A rule given `structure=` checks that
    every structured weight holds it and that some weight does.

    Args:
        parameters: the model's `SparseParameter`s (anything with
            `.structure` and `.path`).
        structure: the rule's `structure=` (a `Structure`), or None.
        who: the rule, for messages.

    Returns:
        The set of structures other than `Unstructured` the weights hold.

    Raises:
        ValueError: `structure` disagrees with the weights' structures.

    Example:

    ```python
    check_agrees(model.masked_weights, NM(2, 4), "RigL")    # {NM(2, 4)}
    ```
    """
    held = {p.structure for p in parameters if not p.structure.is_unstructured}
    if structure is None or (structure.is_unstructured and not held):
        return held
    if held != {structure}:
        found = sorted(repr(s) for s in held) or ["Unstructured()"]
        raise ValueError(
            f"{who}: `structure`={structure!r}, but the model's weights hold {found}. The "
            "structure belongs to the weights: set it with ks.sparsify(..., structure=...) "
            "or the layers' `structure=`, and give rules structure=None or the same one.")
    return held
