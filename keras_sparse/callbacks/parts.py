"""Argument checks shared by the drop/grow rules and drop schedules."""

import math

import keras


def check_number(value, name, ok, allowed):
    """Raises unless `value` is a finite number with `ok(value)` true."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not ok(value):
        raise ValueError(f"`{name}` must be a finite number {allowed}; got {value!r}.")


def lookup(value, argument, registry, base):
    """An instance of `base` from itself, a serialized config or a registry name."""
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
