"""The `get_config`/`from_config` pattern shared by rules, schedules and callbacks.

Objects of keras_sparse are saved the Keras way: `get_config()` returns the
constructor arguments as plain values, `from_config(config)` calls the class
with them, and the class is registered under `keras_sparse>ClassName` with
`keras.saving.register_keras_serializable`, so
`keras.saving.serialize_keras_object` / `deserialize_keras_object` and
`.keras` files round-trip them.
"""

import keras

__all__ = ["Configurable", "lookup"]


class Configurable:
    """Mixin: `from_config(config)` is `cls(**config)`; `get_config()` is `{}`.

    Subclasses that take arguments override `get_config` to return them.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_package")
    class Halving(Configurable):
        def __init__(self, every=1000):
            self.every = every
        def get_config(self):
            return {"every": self.every}
    ```
    """

    def get_config(self):
        """The constructor arguments, as plain (JSON-able) values."""
        return {}

    @classmethod
    def from_config(cls, config):
        """An instance built from `get_config()`'s output."""
        return cls(**config)


def lookup(value, argument, registry, base):
    """An instance of `base` from itself, a serialized config or a registry name.

    Args:
        value: an instance of `base`, a dict written by
            `keras.saving.serialize_keras_object`, or a key of `registry`.
        argument: the argument's name, for the message.
        registry: `{name: class}` of the named choices.
        base: the class every result must be an instance of.

    Returns:
        An instance of `base`.

    Raises:
        ValueError: an unknown name.
        TypeError: a value of another kind.

    Example:

    ```python
    lookup("cosine", "drop_schedule", SCHEDULES, DropSchedule)   # CosineDecay()
    ```
    """
    if isinstance(value, base):
        return value
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    if isinstance(value, str):
        if value not in registry:
            raise ValueError(
                f"`{argument}` must be one of {sorted(registry)} or a "
                f"{base.__name__}; got {value!r}."
            )
        return registry[value]()
    raise TypeError(
        f"`{argument}` must be one of {sorted(registry)} or a {base.__name__}; "
        f"got {value!r} of type {type(value).__name__}."
    )
