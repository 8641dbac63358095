"""Keras callbacks that train sparse networks."""

from keras_sparse.callbacks.base import MaskCallback
from keras_sparse.callbacks.static import Static
