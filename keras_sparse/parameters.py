"""Counting a sparse model's parameters: active, total, and what is not one.

Keras' `model.summary()` and `model.count_params()` count every variable of
the model, and a sparse layer adds a mask of each kernel's size plus the
state mask rules keep (dense-gradient buffers, activity counts, ...): a
ResNet-50 trained with RigL shows about four times its parameters there.
`count_params` separates them.
"""

import numpy as np

from keras_sparse import layers
from keras_sparse.conversion import sparsity_report
from keras_sparse.layers.registry import flatten_layers

__all__ = ["count_params", "summary", "summary_line"]


def _size(variable):
    return int(np.prod(variable.shape))


def count_params(model):
    """The parameters of `model`: active, total, and masks and rule state.

    Works on sparse and plain Keras models (in a plain model, such as one
    returned by `ks.strip`, the prunable weights' zeros count as inactive).

    Args:
        model: a Keras model.

    Returns:
        A dict with
        - `"total"`: every parameter the model holds, trainable or not
          (biases and normalization statistics included), without masks and
          rule state: what `count_params()` of the dense model gives;
        - `"active"`: `total` minus the inactive (masked) weights, the
          parameters that can be non-zero;
        - `"prunable_total"`, `"prunable_active"`: the same over the
          prunable weights only (the kernels `ks.sparsify` masks);
        - `"masks_and_state"`: scalars in mask and rule-state variables,
          which Keras' `count_params()` adds to `total`; they are not
          trainable and not parameters.

    Raises:
        TypeError: `model` is not a Keras model or layer.

    Example:

    ```python
    ks.count_params(model)
    # LeNet-300-100 at 90% after a RigL fit:
    # {"active": 27030, "total": 266610, "prunable_active": 26620,
    #  "prunable_total": 266200, "masks_and_state": 798600}
    ```
    """
    report = sparsity_report(model)[-1]  # also checks the type
    extra = {id(v): v for layer in flatten_layers(model)
             if isinstance(layer, layers.SparseLayer) for v in layer.mask_variables()}
    total = sum(_size(v) for v in model.weights if id(v) not in extra)
    inactive = report["total"] - report["active"]
    return {
        "active": total - inactive,
        "total": total,
        "prunable_active": report["active"],
        "prunable_total": report["total"],
        "masks_and_state": sum(_size(v) for v in extra.values()),
    }


def summary_line(model):
    """The one line `summary` adds under Keras' summary.

    Example:

    ```python
    print(ks.parameters.summary_line(model))
    # Prunable weights: active 26,620 / total 266,200 (sparsity 0.9); ...
    ```
    """
    counts = count_params(model)
    total = counts["prunable_total"]
    sparsity = 1.0 - counts["prunable_active"] / total if total else 0.0
    return (
        f"Prunable weights: active {counts['prunable_active']:,} / total {total:,} "
        f"(sparsity {sparsity:.4g}); all parameters: active {counts['active']:,} / "
        f"total {counts['total']:,}; mask and rule-state variables: "
        f"{counts['masks_and_state']:,} (not trainable, not parameters; counted "
        "in Keras' totals above)."
    )


def summary(model, **kwargs):
    """Keras' `model.summary(**kwargs)`, then the active and total counts.

    Keras' "Total params" counts masks and rule state too; the added line
    (see `summary_line`) says how many weights are active, out of how many,
    and how many scalars are masks and state.

    Args:
        model: a Keras model (sparse or plain).
        **kwargs: passed to `model.summary` (`print_fn`, `expand_nested`,
            ...); the added line goes to `print_fn` too (default `print`).

    Example:

    ```python
    ks.summary(model)
    ```
    """
    model.summary(**kwargs)
    (kwargs.get("print_fn") or print)(summary_line(model))
