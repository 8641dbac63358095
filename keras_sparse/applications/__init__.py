"""Plain-Keras Functional models from the sparse-training papers (`ks.applications`).

Every builder returns logits and uses only stock Keras layers, so
`keras_sparse.sparsify` can swap `Dense`/`Conv2D` layers for sparse ones.
"""

from keras_sparse.applications.lenet import lenet5, lenet_300_100
from keras_sparse.applications.mlp import activation_layer, default_initializer, mlp
from keras_sparse.applications.registry import get, names
from keras_sparse.applications.resnet50 import resnet50
from keras_sparse.applications.resnet_cifar import (
    cifar_resnet,
    resnet20,
    resnet32,
    resnet56,
)
from keras_sparse.applications.vgg import vgg
from keras_sparse.applications.wide_resnet import wide_resnet

__all__ = [
    "activation_layer",
    "default_initializer",
    "cifar_resnet",
    "get",
    "lenet5",
    "lenet_300_100",
    "mlp",
    "names",
    "resnet20",
    "resnet32",
    "resnet50",
    "resnet56",
    "vgg",
    "wide_resnet",
]
