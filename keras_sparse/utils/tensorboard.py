"""TensorBoard output when `tensorboard` is installed, a warning when not.

`tensorboard` is an optional dependency (`pip install keras_sparse[tensorboard]`):
`tf.summary` writes event files only with it. Without it, every logger that
was given a `log_dir` writes nothing and says so once, in one line.
"""

import importlib.util
import logging
import os

import tensorflow as tf

__all__ = ["available", "summary_writer"]

_LOG = logging.getLogger("keras_sparse")


def available():
    """True if the `tensorboard` package can be imported (checked lazily).

    Example:

    ```python
    if available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir))
    ```
    """
    return importlib.util.find_spec("tensorboard") is not None


def summary_writer(log_dir, who):
    """A `tf.summary` writer for `log_dir`, or None.

    None when `log_dir` is None, or when TensorBoard is not installed; the
    latter logs a one-line warning on the "keras_sparse" logger.

    Args:
        log_dir: a directory (str or os.PathLike), or None.
        who: the caller's name, for the warning.

    Example:

    ```python
    writer = summary_writer("logs/run1", "DynamicSparsity")
    ```
    """
    if log_dir is None:
        return None
    if not available():
        _LOG.warning(
            "%s: tensorboard is not installed, so nothing is written to %s "
            "(pip install tensorboard).", who, log_dir,
        )
        return None
    return tf.summary.create_file_writer(os.fspath(log_dir))
