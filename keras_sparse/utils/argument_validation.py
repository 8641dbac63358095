"""Argument checks shared by every public callable.

One rule everywhere, in the manner of Keras' own `argument_validation`:
a value of the wrong type raises `TypeError`, a value of the right type
outside what is allowed raises `ValueError`, and the message names the
argument, the value and what is allowed. Numbers are accepted as
`numbers.Integral` / `numbers.Real` (so numpy scalars such as `np.int64`
pass), never as `bool`.
"""

import math
import numbers
import os

import keras
import tensorflow as tf

__all__ = [
    "check_built_model",
    "check_choice",
    "check_end_step",
    "check_exclusive_callbacks",
    "check_int",
    "check_interval",
    "check_number",
    "check_number_or_word",
    "check_path",
    "check_sparsity",
    "pair_by_path",
]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low, high, low_open, high_open):
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _inside(value, low, high, low_open, high_open):
    if low is not None and (value <= low if low_open else value < low):
        return False
    if high is not None and (value >= high if high_open else value > high):
        return False
    return True


def check_int(value, name, minimum=None, maximum=None, allowed=""):
    """Returns `value` as an `int` if it is an integer in `[minimum, maximum]`.

    Args:
        value: the argument's value.
        name: the argument's name, for the message.
        minimum: smallest allowed value, or `None` (no bound).
        maximum: largest allowed value, or `None` (no bound).
        allowed: text appended to the allowed range in messages, for
            arguments that also take another form (`' or "epoch"'`).

    Returns:
        `int(value)`.

    Raises:
        TypeError: `value` is not an integer (bools are not).
        ValueError: `value` is outside the range.

    Example:

    >>> import numpy as np
    >>> check_int(np.int64(3), "k", minimum=1)
    3
    """
    what = f"an integer {_interval(minimum, maximum, False, False)}".rstrip() + allowed
    if not _is_int(value):
        raise TypeError(f"`{name}` must be {what}; got {value!r} of type {type(value).__name__}.")
    if not _inside(value, minimum, maximum, False, False):
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return int(value)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False,
                 allowed=""):
    """Returns `value` as a `float` if it is a finite number in the interval.

    Args:
        value: the argument's value.
        name: the argument's name, for the message.
        low, high: bounds of the allowed interval, or `None` (no bound).
        low_open, high_open: exclude the bound itself.
        allowed: text appended to the allowed range in messages.

    Returns:
        `float(value)`.

    Raises:
        TypeError: `value` is not a real number (bools are not).
        ValueError: `value` is NaN, infinite or outside the interval.

    Example:

    >>> check_number(0.3, "alpha", 0, 1)
    0.3
    """
    interval = _interval(low, high, low_open, high_open)
    if not _is_real(value):
        raise TypeError(
            f"`{name}` must be a number {interval}".rstrip() + allowed
            + f"; got {value!r} of type {type(value).__name__}."
        )
    if not math.isfinite(value) or not _inside(value, low, high, low_open, high_open):
        what = (interval or "a finite number") + allowed
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return float(value)


def check_interval(value, name):
    """An int >= 1 or "epoch": how often a callback acts (`delta_t`).

    Raises:
        TypeError: neither an int nor a string.
        ValueError: an int < 1, or a string other than "epoch".

    Example:

    >>> check_interval("epoch", "delta_t"), check_interval(100, "delta_t")
    ('epoch', 100)
    """
    if isinstance(value, str):
        if value != "epoch":
            raise ValueError(f'`{name}` must be an integer >= 1 or "epoch"; got {value!r}.')
        return value
    return check_int(value, name, minimum=1, allowed=' or "epoch"')


def check_end_step(value, begin_step, name="end_step"):
    """None, or an int step after `begin_step`.

    Raises:
        TypeError: neither None nor an int.
        ValueError: an int < 1 or not greater than `begin_step`.

    Example:

    >>> check_end_step(None, 0), check_end_step(500, 100)
    (None, 500)
    """
    if value is None:
        return None
    value = check_int(value, name, minimum=1, allowed=" or None")
    if value <= begin_step:
        raise ValueError(
            f"`{name}` must be greater than `begin_step`={begin_step}; got {value!r}.")
    return value


def check_exclusive_callbacks(callbacks, who="fit"):
    """Refuses two callbacks of one `exclusive_group` in the same `fit`.

    Two dynamic-sparse-training callbacks would each rewrite the masks on
    their own schedule (callbacks declare the group as a class attribute;
    see `ks.callbacks.MaskCallback`).

    Raises:
        ValueError: two callbacks share a group.

    Example:

    >>> check_exclusive_callbacks([])
    """
    groups = {}
    for callback in tf.nest.flatten(callbacks or []):
        group = getattr(callback, "exclusive_group", None)
        if group is None:
            continue
        if group in groups:
            first = type(groups[group]).__name__
            raise ValueError(
                f"{who}: `callbacks` holds two {group} callbacks, {first} and "
                f"{type(callback).__name__}; they would both rewrite the masks. "
                "Pass one (DynamicSparsity(drop=..., grow=...) combines rules)."
            )
        groups[group] = callback


def check_number_or_word(value, name, word):
    """A finite number, or the string `word` (e.g. `grow_init="zeros"`).

    Raises:
        TypeError: neither a number nor a string.
        ValueError: another string, or NaN/Inf.

    Example:

    >>> check_number_or_word("zeros", "grow_init", "zeros"), check_number_or_word(0.5, "x", "w")
    ('zeros', 0.5)
    """
    if isinstance(value, str):
        if value != word:
            raise ValueError(f'`{name}` must be a number or "{word}"; got {value!r}.')
        return value
    return check_number(value, name, allowed=f' (or "{word}")')


def check_path(value, name):
    """None or a path (str or `os.PathLike`).

    Raises:
        TypeError: anything else.

    Example:

    >>> check_path(None, "log_dir")
    """
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be None or a path; got {value!r}.")
    return value


def check_sparsity(value, name="sparsity"):
    """Returns `value` as a float if `0 <= value < 1` (a sparsity).

    Args:
        value: the argument's value.
        name: the argument's name, for the message.

    Raises:
        TypeError: `value` is not a number.
        ValueError: `value` is outside [0, 1) or NaN.

    Example:

    >>> check_sparsity(0.9)
    0.9
    """
    return check_number(value, name, 0, 1, high_open=True)


def check_choice(value, name, choices):
    """Returns `value` if it is one of `choices`.

    Args:
        value: the argument's value.
        name: the argument's name, for the message.
        choices: the allowed values.

    Raises:
        ValueError: `value` is not in `choices` (whatever its type).

    Example:

    >>> check_choice("erk", "distribution", ("uniform", "er", "erk"))
    'erk'
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a dict or set
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")
    return value


def check_built_model(model, who):
    """Returns `model.inputs` if `model` is a Sequential/Functional model with inputs.

    What `ks.sparsify`, `ks.strip` and `export_for_serving` need: they clone
    or trace the model's graph, which subclassed models do not have.

    Args:
        model: the model argument.
        who: the caller's name, for the message.

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: it has no defined inputs.

    Example:

    ```python
    inputs = check_built_model(model, "export_for_serving")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"{who}: `model` must be a keras.Model; got {type(model).__name__}.")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"{who}: `model` {model.name!r} has no inputs defined; it must be a built "
            "Sequential or Functional model with defined inputs (e.g. start a "
            "Sequential with keras.Input(shape)); subclassed models use ks.layers "
            "directly."
        )
    return inputs


def pair_by_path(items, values, who, what, noun):
    """Pairs `values` with `items`, by path or by position.

    Args:
        items: list of `(path, item)`, the `noun`s (e.g. weights) in order.
        values: `{path: value}` for some or all items, or a list with one
            value per item, in order.
        who: the caller's name, for the message (`"set_masks"`).
        what: what the values are, for the message (`"masks"`).
        noun: what the items are (`"prunable weight"`).

    Returns:
        A list of `(item, value)`.

    Raises:
        ValueError: a path is unknown, or the list has the wrong length.

    Example:

    >>> pair_by_path([("a/kernel", 1)], {"a/kernel": 5}, "f", "values", "weight")
    [(1, 5)]
    """
    if isinstance(values, dict):
        by_path = dict(items)
        unknown = sorted(set(values) - set(by_path))
        if unknown:
            raise ValueError(
                f"{who}: unknown {noun} paths {unknown}; known: {sorted(by_path)}."
            )
        return [(by_path[p], v) for p, v in values.items()]
    values = list(values)
    if len(values) != len(items):
        raise ValueError(
            f"{who}: got {len(values)} {what} for {len(items)} {noun}s; pass "
            "one per entry in order, or a {path: value} dict."
        )
    return [(item, v) for (_, item), v in zip(items, values)]
