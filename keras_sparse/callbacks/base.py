"""Shared base of the mask-rule callbacks."""

import keras

from keras_sparse.model import require_sparse_model


class MaskCallback(keras.callbacks.Callback):
    """A callback that reads or changes the masks of a `SparseModel`.

    `set_model` refuses any other model with a clear `TypeError`, before
    training starts. Subclasses implement `get_config`; `from_config` is the
    class called with it.
    """

    def set_model(self, model):
        require_sparse_model(model, type(self).__name__)
        super().set_model(model)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
