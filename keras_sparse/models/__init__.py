"""Deprecated alias of `keras_sparse.applications` (the model builders).

`ks.models` was renamed `ks.applications`, the name Keras gives its own
model zoo (`keras.models` means something else there). Every name still
works here, with a DeprecationWarning; this alias will be removed.
"""

import warnings

from keras_sparse import applications as _applications

__all__ = list(_applications.__all__)


def __getattr__(name):
    if name in _applications.__all__:
        warnings.warn(
            f"keras_sparse.models.{name} is deprecated; use "
            f"keras_sparse.applications.{name}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_applications, name)
    raise AttributeError(f"module 'keras_sparse.models' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
