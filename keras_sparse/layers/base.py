"""The mask machinery shared by every sparse layer.

A sparse layer keeps each prunable weight as an ordinary Keras variable plus a
non-trainable mask variable of the same shape and dtype. Reading the weight's
public attribute (e.g. `layer.kernel`) inside `call` returns `weight * mask`,
so the forward pass is always masked and the gradient reaching the variable is
already zero at inactive positions.

Inside `SparseModel.train_step` (the `raw_weights()` context) the attribute
returns the variable itself: the train step keeps inactive weights at exactly
0.0, so `W == W * M` there, the forward pass saves a multiply per kernel, and
the gradient the variable receives is the dense gradient `dL/d(W*M)` that
growth rules need, at no extra cost; the step then masks it.
"""

import contextlib
import math
import threading
import zlib

import keras
import tensorflow as tf
from keras import ops

from keras_sparse.masks import num_inactive, stateless_uniform, topk_mask
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice, check_int, check_sparsity

__all__ = [
    "MASK_INITS",
    "MaskedAttribute",
    "SparseLayer",
    "dense_weight_gradients",
    "dense_weight_gradients_requested",
    "raw_weights",
    "reading_raw_weights",
]

# How `sparsity=` chooses a layer's initial mask at build.
MASK_INITS = ("random", "magnitude")

_STATE = threading.local()


@contextlib.contextmanager
def _thread_setting(name, value):
    """Sets `_STATE.<name>` to `value` for the `with` block (per thread)."""
    previous = getattr(_STATE, name, None)
    setattr(_STATE, name, value)
    try:
        yield
    finally:
        setattr(_STATE, name, previous)


def raw_weights():
    """Makes sparse layers read their variables unmasked (see module doc)."""
    return _thread_setting("raw", True)


def reading_raw_weights():
    """True inside `raw_weights()` (the train step's forward pass)."""
    return bool(getattr(_STATE, "raw", False))


def dense_weight_gradients(when):
    """Tells sparse-compute layers when the train step needs dense gradients.

    `SparseModel.train_step` wraps its forward pass in it. A layer that
    computes its weight gradient at active positions only (`SparseDense(...,
    compute="sparse")`) computes the dense `dL/d(W*M)` instead on the steps
    where `when` (a boolean tensor, or None for never) is true, so growth
    rules read the same gradient as with the masked path.
    """
    return _thread_setting("dense_when", when)


def dense_weight_gradients_requested():
    """The `when` of the enclosing `dense_weight_gradients`, or None."""
    return getattr(_STATE, "dense_when", None)


class MaskedAttribute:
    """Descriptor exposing `variable * mask` under a layer's weight attribute.

    The variable itself lives under the attribute where Keras' layer keeps
    it (`kernel` -> `_kernel`); assignments to the public attribute (as
    Keras' own `build` does for some layers) land there.

    Example:

    ```python
    class SparseDense(SparseLayer, keras.layers.Dense):
        prunable = ("kernel",)
        kernel = MaskedAttribute()
    ```
    """

    def __set_name__(self, owner, name):
        self.name = name
        self.raw_attr = keras_compat.kernel_attribute(name)

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        variable = getattr(layer, self.raw_attr)  # AttributeError before build
        mask = layer._masks.get(self.name) if hasattr(layer, "_masks") else None
        if mask is None or reading_raw_weights():
            return variable
        value = variable.value  # autocast under mixed precision
        return ops.multiply(value, ops.cast(mask.value, value.dtype))

    def __set__(self, layer, value):
        setattr(layer, self.raw_attr, value)


class SparseLayer:
    """Mixin turning a Keras layer into one with persistent weight masks.

    Subclasses declare `prunable = ("kernel", ...)` (the public names of the
    masked weights) and define each of them as a `MaskedAttribute`. Masks
    are named `<weight>_mask`; rule state added with `add_mask_state` is
    named `<weight>_<state>` and is re-created from the layer config on
    load. Both are also layer attributes under those names
    (`layer.kernel_mask`), which is how `tf.train.Checkpoint` finds them.

    LoRA (`enable_lora`) and quantization (`quantize`) would replace the
    masked kernel and are refused with a TypeError; strip the model first
    (`ks.strip`) to use them on the plain layers.

    Every sparse layer also takes these arguments, so that a model that
    uses the layers directly (a subclassed `ks.SparseModel`) is sparse by
    construction:

    Args:
        mask_states: specs of rule state to re-create at build (what
            `get_config` writes); other arguments go to the Keras layer.
        sparsity: `None` (default: masks start all ones; `ks.sparsify` or
            `ks.pruning` set them) or a fraction in [0, 1): at build, each
            masked weight of `n` entries gets exactly `round(sparsity * n)`
            zeros (halves rounded up) and its inactive entries are set to 0.
        mask_init: how those zeros are placed: "random" (uniformly, from a
            stateless RNG keyed by `seed` and the weight's index in the
            layer) or "magnitude" (the smallest `abs(w)` of the initialized
            weight).
        seed: int >= 0 seeding "random"; `None` derives one from the
            layer's name, so layers of one model get different masks.

    A saved model restores its masks from the file (the mask drawn at
    build is overwritten when the weights load).

    Example:

    ```python
    class MLP(ks.SparseModel):
        def __init__(self):
            super().__init__()
            self.hidden = ks.layers.SparseDense(300, activation="relu", sparsity=0.9)
            self.logits = ks.layers.SparseDense(10, sparsity=0.9, seed=1)

        def call(self, x):
            return self.logits(self.hidden(x))
    ```
    """

    prunable = ()

    def __init__(self, *args, sparsity=None, mask_init="random", seed=None,
                 mask_states=None, **kwargs):
        if sparsity is not None:
            sparsity = check_sparsity(sparsity)
        check_choice(mask_init, "mask_init", MASK_INITS)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0, allowed=" or None")
        super().__init__(*args, **kwargs)
        self.sparsity, self.mask_init, self.seed = sparsity, mask_init, seed
        self._masks = {}
        self._mask_states = {}
        self._mask_state_specs = [dict(s) for s in (mask_states or [])]

    def build(self, input_shape):
        super().build(input_shape)
        with self._unlocked():
            for index, (name, variable) in enumerate(self.prunable_items()):
                self._masks[name] = self.add_weight(
                    name=f"{name}_mask",
                    shape=variable.shape,
                    initializer=self._mask_initializer(index, variable),
                    dtype=variable.dtype,
                    trainable=False,
                )
                # An attribute, so tf.train.Checkpoint tracks it too.
                setattr(self, f"{name}_mask", self._masks[name])
            for spec in self._mask_state_specs:
                self._create_mask_state(**spec)

    def _mask_initializer(self, index, variable):
        """"ones", or with `sparsity=` the initial mask of `variable`.

        An initializer rather than an assignment after build: a layer built
        inside a model's first call is built in Keras' stateless scope, where
        assignments are discarded and variables are initialized afterwards,
        in creation order (the weight before its mask).
        """
        if not self.sparsity:
            return "ones"
        seed = self.seed
        if seed is None:  # stable across processes, unlike hash()
            seed = zlib.crc32(self.name.encode("utf-8")) & 0x7FFFFFFF

        def initial_mask(shape, dtype=None):
            size = math.prod(shape)
            weight = tf.convert_to_tensor(variable)
            if self.mask_init == "random":
                scores = stateless_uniform(shape, seed, 0, index)
            else:
                scores = tf.abs(tf.cast(weight, tf.float32))
            keep = topk_mask(scores, size - num_inactive(size, self.sparsity))
            # Inactive weights are exactly 0 from the start.
            variable.assign(tf.where(keep > 0, weight, tf.zeros_like(weight)))
            return tf.cast(keep, dtype or variable.dtype)

        return initial_mask

    # -- sparse compute hooks (see SparseDense(compute="sparse")) ---------------

    @property
    def masks_own_gradients(self):
        """True if the backward pass already gives exactly 0 at inactive weights.

        Then the train step need not mask this layer's weight gradients,
        except on steps where dense gradients were requested
        (`dense_weight_gradients`). False for the masked layers.
        """
        return False

    def mask_changed(self):
        """Tells the layer its masks were written (a no-op for masked layers).

        `SparseModel` calls it wherever it changes or reloads masks
        (`set_masks`, `assign_mask`, `apply_masks`, hence `fit`,
        `set_weights` and `load_weights`), and so does loading a `.keras`
        file. Call it after assigning a mask variable directly. Usable
        inside `tf.function`.
        """

    def _unlocked(self):
        # Keras locks a layer's state after build; LoRA unlocks it the same way.
        return keras_compat.unlocked(self)

    def prunable_items(self):
        """`[(weight name, variable)]` of the masked weights (built layer)."""
        return [(name, getattr(self, keras_compat.kernel_attribute(name)))
                for name in self.prunable]

    def get_prunable_weights(self):
        """The variables this layer masks (biases and norms never are)."""
        return [variable for _, variable in self.prunable_items()]

    def get_masks(self):
        """The mask variables, aligned with `get_prunable_weights()`."""
        return [self._masks[name] for name, _ in self.prunable_items()]

    def mask_variables(self):
        """Every variable this layer adds to its Keras base: masks and rule state."""
        return self.get_masks() + list(self._mask_states.values())

    def mask_state(self, weight_name, state):
        """The rule-state variable `state` of weight `weight_name`."""
        return self._mask_states[f"{weight_name}_{state}"]

    def has_mask_state(self, state):
        """True if rule state `state` was added (see `add_mask_state`)."""
        return any(s["name"] == state for s in self._mask_state_specs)

    def add_mask_state(
        self,
        name,
        dtype="float32",
        initializer="zeros",
        synchronization="auto",
        aggregation="none",
    ):
        """Adds a per-weight state variable `<weight>_<name>` for a mask rule.

        The spec is kept in the layer config, so a saved model re-creates the
        variable and restores its value: rule state survives `.keras` files,
        checkpoints and `BackupAndRestore`. Idempotent.

        Args:
            name: suffix of the variable (`"count"` -> `kernel_count`).
            dtype: its dtype.
            initializer: a Keras initializer (name or object).
            synchronization, aggregation: as for `keras.Variable` (for
                per-replica buffers under `tf.distribute`).

        Raises:
            ValueError: `<weight>_<name>` would shadow a layer attribute.

        Example:

        ```python
        layer.add_mask_state("count")
        layer.kernel_count            # zeros of the kernel's shape
        ```
        """
        if self.has_mask_state(name):
            return
        weights = [w for w, _ in self.prunable_items()] if self.built else list(self.prunable)
        taken = [f"{w}_{name}" for w in weights if hasattr(self, f"{w}_{name}")]
        if taken:
            raise ValueError(
                f"add_mask_state: `name`={name!r} would shadow {taken} of layer "
                f"{self.name!r} (e.g. the mask or kernel_initializer); choose another."
            )
        spec = dict(
            name=name,
            dtype=dtype,
            initializer=initializer,
            synchronization=synchronization,
            aggregation=aggregation,
        )
        self._mask_state_specs.append(spec)
        if self.built:
            with self._unlocked():
                self._create_mask_state(**spec)

    def _create_mask_state(
        self, name, dtype, initializer, synchronization, aggregation
    ):
        for weight_name, weight in self.prunable_items():
            with keras.name_scope(self.name, caller=self):
                variable = keras.Variable(
                    initializer=keras.initializers.get(initializer),
                    shape=weight.shape,
                    dtype=dtype,
                    trainable=False,
                    name=f"{weight_name}_{name}",
                    synchronization=synchronization,
                    aggregation=aggregation,
                )
            keras_compat.track_variable(self, variable)
            # String keys (the variable's name): TensorFlow's SavedModel
            # tracking (`model.export`, `tf.saved_model.save`) refuses others.
            self._mask_states[f"{weight_name}_{name}"] = variable
            setattr(self, f"{weight_name}_{name}", variable)  # for tf.train.Checkpoint

    # -- saving -----------------------------------------------------------------
    #
    # Weight files must not depend on which callbacks were attached: a file
    # written during a RigL run (with rule state) loads into a freshly
    # sparsified model (without), and the reverse. So the layer's own
    # variables (kernel, bias, ..., masks) keep the fixed numbered slots
    # "0", "1", ... Keras gives them, and each rule-state variable is saved
    # under its own name, `mask_state:<weight>_<state>`. Loading fills the
    # numbered slots, restores the rule state the file and the layer both
    # have, and leaves the rest alone (a fresh state variable keeps its
    # initial value; state in the file the layer lacks is ignored).

    STATE_KEY = "mask_state:"

    def _base_variables(self):
        state = {id(v) for v in self._mask_states.values()}
        return [v for v in keras_compat.own_variables(self) if id(v) not in state]

    def save_own_variables(self, store):
        """Saves weights and masks in numbered slots, rule state by name."""
        for i, variable in enumerate(self._base_variables()):
            store[str(i)] = variable
        for name, variable in self._mask_states.items():
            store[self.STATE_KEY + name] = variable

    def load_own_variables(self, store):
        """Loads what `save_own_variables` wrote, from any run of this layer.

        Also reads files written before rule state had its own names (all
        variables numbered, rule state after the masks).

        Raises:
            ValueError: the file has fewer weights than the layer (e.g. it
                comes from another architecture).
        """
        keys = list(store.keys())
        numbered = sum(1 for key in keys if str(key).isdigit())
        base = self._base_variables()
        if numbered < len(base):
            raise ValueError(
                f"Layer {self.name!r} expected {len(base)} weights "
                f"{[v.name for v in base]} in the weights file, found {numbered}: "
                "the file was saved from a different architecture (a plain, "
                "unsparsified model saves no masks; load it before ks.sparsify)."
            )
        for i, variable in enumerate(base):
            variable.assign(store[str(i)])
        states = list(self._mask_states.items())
        named = [key for key in keys if str(key).startswith(self.STATE_KEY)]
        if not named and numbered == len(base) + len(states):
            # Older layout: rule state numbered after the masks, in order.
            for i, (_, variable) in enumerate(states, start=len(base)):
                variable.assign(store[str(i)])
            self.mask_changed()
            return
        for name, variable in states:
            if self.STATE_KEY + name in named:
                variable.assign(store[self.STATE_KEY + name])
        self.mask_changed()

    # A LoRA adapter or a quantized kernel would replace the masked kernel.
    def enable_lora(self, *args, **kwargs):
        raise TypeError(
            f"{type(self).__name__} {self.name!r}: enable_lora() is not supported "
            "on sparse layers (the adapter would bypass the mask). Strip the model "
            "first (ks.strip(model)) and enable LoRA on the plain layers."
        )

    def quantize(self, *args, **kwargs):
        raise TypeError(
            f"{type(self).__name__} {self.name!r}: quantize() is not supported on "
            "sparse layers (the quantized kernel would bypass the mask). Strip the "
            "model first (ks.strip(model)) and quantize the plain model."
        )

    def get_config(self):
        config = super().get_config()
        if self.sparsity is not None:
            config.update(sparsity=self.sparsity, mask_init=self.mask_init, seed=self.seed)
        if self._mask_state_specs:
            config["mask_states"] = [dict(s) for s in self._mask_state_specs]
        return config
