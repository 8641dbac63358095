"""Keras internals needed to resume input pipelines (one private attribute).

To be folded into `keras_compat.py` with the other Keras internals.
"""


def restored_epoch(model):
    """The epoch `BackupAndRestore` restored `model` to, or None.

    Keras 3 (checked up to 3.15) stores it in the private `_initial_epoch`
    when a backup is loaded in `on_train_begin`, and `fit` starts there; it
    is None when nothing was restored in this process.
    """
    return getattr(model, "_initial_epoch", None)
