"""The mask machinery shared by every sparse layer.

A sparse layer keeps each prunable weight as an ordinary Keras variable plus a
non-trainable mask variable of the same shape and dtype, both owned by a
`SparseParameter` (`layer.parameters`). Reading the weight's public attribute
(e.g. `layer.kernel`) inside `call` returns `weight * mask`, so the forward
pass is always masked and the gradient reaching the variable is already zero
at inactive positions.

Inside `SparseModel.train_step` (`raw_reads.raw_reads`) the attribute
returns the variable itself: the train step keeps inactive weights at exactly
0.0, so `W == W * M` there, the forward pass saves a multiply per kernel, and
the gradient the variable receives is the dense gradient `dL/d(W*M)` that
growth rules need, at no extra cost; the step then masks it.
"""

import math
import zlib

import keras
import tensorflow as tf
from keras import ops

from keras_sparse import structures
from keras_sparse.layers.parameter import SparseParameter
from keras_sparse.masks import num_inactive, stateless_uniform, topk_mask
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice, check_int, check_sparsity

__all__ = ["MASK_INITS", "MaskedAttribute", "SparseLayer"]

# How `sparsity=` chooses a layer's initial mask at build.
MASK_INITS = ("random", "magnitude")


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
        parameter = layer.__dict__.get("_parameters", {}).get(self.name)
        if parameter is None or parameter.in_train_step:
            return variable
        value = parameter.value()  # current; autocast under mixed precision
        return ops.multiply(value, ops.cast(parameter.mask.value, value.dtype))

    def __set__(self, layer, value):
        setattr(layer, self.raw_attr, value)


class SparseLayer:
    """Mixin turning a Keras layer into one with persistent weight masks.

    Subclasses declare `prunable = ("kernel", ...)` (the public names of the
    masked weights) and define each of them as a `MaskedAttribute`. At build
    each gets a `SparseParameter` (`layer.parameters`) owning the weight, its
    mask `<weight>_mask` and its rule state `<weight>_<state>` (see
    `SparseParameter.add_state`: saved with the weights, never in the
    config). Masks and state are also layer attributes under those names
    (`layer.kernel_mask`), which is how `tf.train.Checkpoint` finds them.

    LoRA (`enable_lora`) and quantization (`quantize`) would replace the
    masked kernel and are refused with a TypeError; strip the model first
    (`ks.strip`) to use them on the plain layers.

    Every sparse layer also takes these arguments, so that a model that
    uses the layers directly (a subclassed `ks.SparseModel`) is sparse by
    construction:

    Args:
        mask_states: specs of rule state to create at build (written by
            the layer configs of earlier versions, read for their files);
            other arguments go to the Keras layer.
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
        structure: the mask structure of every masked weight
            (`ks.structures.get`: `None` for `Unstructured()`, `NM(n, m)`,
            `Block((r, c))`), kept by every mask rule and saved in the
            config. A layer kind or weight shape that cannot hold it is a
            ValueError naming the layer and the shape (at build for the
            shape).

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
    # Whether its masked weights are `[..., input, output]` kernels, so that
    # N:M groups and blocks have a meaning (not depthwise or einsum kernels).
    holds_structure = True
    # Per instance (see __init__): weight name -> SparseParameter, and rule
    # state to create at build.
    _parameters = _pending_states = None

    def __init__(self, *args, sparsity=None, mask_init="random", seed=None,
                 mask_states=None, structure=None, **kwargs):
        if sparsity is not None:
            sparsity = check_sparsity(sparsity)
        check_choice(mask_init, "mask_init", MASK_INITS)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0, allowed=" or None")
        structure = structures.get(structure)
        super().__init__(*args, **kwargs)
        if not structure.is_unstructured and not self.holds_structure:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: `structure`={structure!r} cannot be "
                "held by this layer kind (its kernel has no [..., input, output] layout); "
                "use structure=None, or keep the layer dense (`dense_layers`).")
        self.sparsity, self.mask_init, self.seed = sparsity, mask_init, seed
        self.structure = structure
        # Plain dicts kept out of Keras' and TensorFlow's tracking (by
        # writing __dict__): parameters are not variables, their variables
        # are tracked one by one.
        self.__dict__["_parameters"] = {}
        self.__dict__["_pending_states"] = [dict(s) for s in (mask_states or [])]

    def build(self, input_shape):
        super().build(input_shape)
        for name, variable in self.prunable_items():
            self.structure.check(tuple(variable.shape), f"{self.name}/{name}")
        with self._unlocked():
            for index, (name, variable) in enumerate(self.prunable_items()):
                mask = self.add_weight(
                    name=f"{name}_mask",
                    shape=variable.shape,
                    initializer=self._mask_initializer(index, variable),
                    dtype=variable.dtype,
                    trainable=False,
                )
                # An attribute, so tf.train.Checkpoint tracks it too.
                setattr(self, f"{name}_mask", mask)
                self._parameters[name] = SparseParameter(
                    self, name, variable, mask, structure=self.structure,
                    **self._parameter_options(name))
        for spec in self._pending_states:
            self.add_mask_state(**spec)
        self._pending_states.clear()

    def _parameter_options(self, name):
        """Extra `SparseParameter` arguments for the weight `name` (none here)."""
        return {}

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
            if self.structure.is_unstructured:
                keep = topk_mask(scores, size - num_inactive(size, self.sparsity))
            else:
                count = self.structure.count(tuple(shape), self.sparsity, f"{self.name}")
                keep = self.structure.mask(scores, count)
            # Inactive weights are exactly 0 from the start.
            variable.assign(tf.where(keep > 0, weight, tf.zeros_like(weight)))
            return tf.cast(keep, dtype or variable.dtype)

        return initial_mask

    @property
    def parameters(self):
        """The `SparseParameter` of each masked weight, in `prunable` order."""
        return [self._parameters[name] for name, _ in self.prunable_items()]

    @property
    def masks_own_gradients(self):
        """True if the backward pass already gives exactly 0 at inactive weights.

        Then the train step need not mask this layer's weight gradients,
        except on steps that keep dense gradients. False for masked layers.
        """
        return False

    def mask_changed(self):
        """Tells the layer its masks were written directly.

        The parameters call it whenever they change or reload masks; call
        it after assigning a mask variable yourself. Usable inside
        `tf.function`.
        """
        for parameter in self._parameters.values():
            parameter.mask_changed()

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
        return [p.mask for p in self.parameters]

    def mask_variables(self):
        """Every variable this layer adds to its Keras base: masks, rule state, values."""
        return self.get_masks() + [v for p in self.parameters for v in p.extra_variables()]

    def mask_state(self, weight_name, state):
        """The rule-state variable `state` of weight `weight_name`."""
        return self._parameters[weight_name].state(state)

    def has_mask_state(self, state):
        """True if rule state `state` was added (see `add_mask_state`)."""
        if not self.built:
            return any(s["name"] == state for s in self._pending_states)
        return any(p.has_state(state) for p in self.parameters)

    def add_mask_state(
        self,
        name,
        dtype="float32",
        initializer="zeros",
        synchronization="auto",
        aggregation="none",
    ):
        """Adds the state variable `<weight>_<name>` to each masked weight.

        See `SparseParameter.add_state` (the state is saved with the
        weights, not in the config). Idempotent; on an unbuilt layer the
        state is created at build.

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
        spec = dict(name=name, dtype=dtype, initializer=initializer,
                    synchronization=synchronization, aggregation=aggregation)
        if not self.built:
            if not self.has_mask_state(name):
                self._pending_states.append(spec)
            return
        fresh = [p for p in self.parameters if not p.has_state(name)]
        taken = [f"{p.name}_{name}" for p in fresh if hasattr(self, f"{p.name}_{name}")]
        if taken:
            raise ValueError(
                f"add_mask_state: `name`={name!r} would shadow {taken} of layer "
                f"{self.name!r} (e.g. the mask or kernel_initializer); choose another."
            )
        for parameter in fresh:
            parameter.add_state(**spec)

    @property
    def weights(self):
        # Rule state last, by name, whatever order rules added it in: a model
        # loaded from a file (which creates the state it holds) lists its
        # weights as the model that saved it. Trained value vectors are not
        # weights (files and `get_weights` are the same whatever `compute`).
        extra = self._extra_variables()
        base = [w for w in super().weights if id(w) not in extra]
        states = sorted(((p.name, n, v) for p in self.parameters for n, v in p.states.items()),
                        key=lambda item: item[:2])
        return base + [v for _, _, v in states]

    def _extra_variables(self):
        return {id(v) for p in self._parameters.values() for v in p.extra_variables()}

    # -- saving -----------------------------------------------------------------
    #
    # Weight files must not depend on which callbacks were attached: a file
    # written during a RigL run (with rule state) loads into a freshly
    # sparsified model (without), and the reverse. So the layer's own
    # variables (kernel, bias, ..., masks) keep the fixed numbered slots
    # "0", "1", ... Keras gives them, and each rule-state variable is saved
    # under its own name, `mask_state:<weight>_<state>`. Loading fills the
    # numbered slots and restores the rule state the file has (creating it
    # where the layer has none yet); a layer's state the file lacks keeps
    # its value. Prunable weights are saved through their parameter, so a
    # file holds their current value whatever trained them.

    STATE_KEY = "mask_state:"

    def _base_variables(self):
        extra = self._extra_variables()
        return [v for v in keras_compat.own_variables(self) if id(v) not in extra]

    def save_own_variables(self, store):
        """Saves weights and masks in numbered slots, rule state by name."""
        current = {id(p.variable): p for p in self.parameters}
        for i, variable in enumerate(self._base_variables()):
            store[str(i)] = current[id(variable)].read() if id(variable) in current else variable
        for p in self.parameters:
            for name, variable in p.states.items():
                store[f"{self.STATE_KEY}{p.name}_{name}"] = variable

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
        for p in self.parameters:
            p.expect_write()
        for i, variable in enumerate(base):
            variable.assign(store[str(i)])
        states = [v for p in self.parameters for v in p.states.values()]
        named = sorted(str(key) for key in keys if str(key).startswith(self.STATE_KEY))
        if not named and numbered == len(base) + len(states):
            # Older layout: rule state numbered after the masks, in creation order.
            for i, variable in enumerate(states, start=len(base)):
                variable.assign(store[str(i)])
        for key in named:
            weight, state = self._split_state_key(key[len(self.STATE_KEY):])
            if weight is not None:
                self._parameters[weight].restore_state(state, store[key])
        for p in self.parameters:
            p.loaded()

    def _split_state_key(self, key):
        """`("kernel", "itop")` from `"kernel_itop"`; `(None, None)` if no weight matches."""
        for name in sorted(self._parameters, key=len, reverse=True):
            if key.startswith(name + "_"):
                return name, key[len(name) + 1:]
        return None, None

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
        if not self.structure.is_unstructured:
            config.update(structure=structures.serialize(self.structure))
        return config

    # Arguments of the sparse variant, not of its Keras base class.
    SPARSE_ARGUMENTS = ("sparsity", "mask_init", "seed", "mask_states", "structure")

    def base_config(self):
        """`get_config()` without the sparse arguments: the Keras base class's."""
        config = self.get_config()
        for key in self.SPARSE_ARGUMENTS:
            config.pop(key, None)
        return config
