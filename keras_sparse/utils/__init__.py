"""Small shared helpers: argument checks, serialization, optional TensorBoard.

`keras_sparse.utils.keras_compat` holds every use of Keras internals.
"""

from keras_sparse.utils import tensorboard
from keras_sparse.utils.argument_validation import (
    check_built_model,
    check_choice,
    check_int,
    check_number,
    check_sparsity,
    pair_by_path,
)

from keras_sparse.utils.serialization import Configurable

__all__ = [
    "Configurable",
    "check_built_model",
    "check_choice",
    "check_int",
    "check_number",
    "check_sparsity",
    "pair_by_path",
    "tensorboard",
]
