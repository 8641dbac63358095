"""Keras callbacks that train sparse networks."""

from keras_sparse.callbacks.base import MaskCallback
from keras_sparse.callbacks.dissipating import DissipatingGradients
from keras_sparse.callbacks.gradual import GradualMagnitudePruning
from keras_sparse.callbacks.kstarts import KStarts
from keras_sparse.callbacks.oneshot import OneShotPruning
from keras_sparse.callbacks.dynamic import DynamicSparsity
from keras_sparse.callbacks.presets import DSTEE, RigL, SET, SNFS
from keras_sparse.callbacks.egf import EGFLogger
from keras_sparse.callbacks.static import Static
