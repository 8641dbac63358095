"""Look up model builders by name, for recipes and command lines."""

import functools

from keras_sparse.applications.lenet import lenet5, lenet_300_100
from keras_sparse.applications.mlp import mlp
from keras_sparse.applications.resnet50 import resnet50
from keras_sparse.applications.resnet_cifar import resnet20, resnet32, resnet56
from keras_sparse.applications.vgg import vgg
from keras_sparse.applications.wide_resnet import wide_resnet

_BUILDERS = {
    "lenet_300_100": lenet_300_100,
    "lenet5": lenet5,
    "mlp": mlp,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "wrn": wide_resnet,
    "vgg11": functools.partial(vgg, 11),
    "vgg16": functools.partial(vgg, 16),
    "vgg19": functools.partial(vgg, 19),
    "resnet50": resnet50,
}


def names():
    """Returns the registered model names, sorted.

    Returns:
        A sorted list of names for `get`.

    Example:
        >>> "resnet20" in names()
        True
    """
    return sorted(_BUILDERS)


def get(name, **kwargs):
    """Builds the registered model `name`.

    Args:
        name: one of `names()`.
        **kwargs: passed to the builder, e.g. `num_classes=100`, or
            `depth=28, width=10` for `"wrn"`, or `widths=(100, 100),
            input_shape=(28, 28, 1), num_classes=10` for `"mlp"`.

    Returns:
        A Functional `keras.Model` returning logits.

    Raises:
        ValueError: an unknown `name`.

    Example:
        >>> model = get("vgg16", num_classes=100)
        >>> model.name
        'vgg16'
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown model: name={name!r}. `name` must be one of {names()}."
        )
    return _BUILDERS[name](**kwargs)
