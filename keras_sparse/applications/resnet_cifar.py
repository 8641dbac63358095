"""CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", section 4.2)."""

import keras

from keras_sparse.utils.argument_validation import check_int


def _conv_bn(x, filters, kernel_size, strides, name):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _basic_block(x, filters, strides, name):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, name=f"{name}_shortcut")
    x = _conv_bn(x, filters, 3, strides, name=f"{name}_1")
    x = keras.layers.ReLU(name=f"{name}_1_relu")(x)
    x = _conv_bn(x, filters, 3, 1, name=f"{name}_2")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10):
    """Builds the CIFAR ResNet of depth `6n + 2` (He et al. 2016).

    A 3x3 stem conv with 16 filters, three stages of `n` basic blocks with
    16, 32 and 64 filters (the first block of stages 2 and 3 has stride 2),
    global average pooling and a `Dense` classifier. Convolutions are He
    normal initialized, bias-free and followed by `BatchNormalization`.
    Downsampling shortcuts are option B of the paper: a strided 1x1
    convolution with batch norm (option A, zero padding, has no weights to
    prune), so ResNet-20 has 274,042 parameters (batch-norm statistics
    included) where the paper counts 0.27M.

    Args:
        depth: total depth, `6n + 2` (20, 32, 44, 56, 110, ...).
        input_shape: shape of one image.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` named `resnet{depth}` returning logits;
        layers are named `stage{s}_block{b}_{1|2|shortcut}_{conv|bn}`.

    Raises:
        TypeError, ValueError: `depth` is not an integer of the form 6n + 2.

    Example:
        >>> model = cifar_resnet(20, num_classes=100)
        >>> model.output_shape
        (None, 100)
    """
    depth = check_int(depth, "depth", minimum=8, allowed=" of the form 6n + 2")
    if (depth - 2) % 6:
        raise ValueError(
            f"`depth` must be 6n + 2 for an integer n >= 1 (20, 32, 56, ...); "
            f"got depth={depth!r}."
        )
    blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, 16, 3, 1, name="stem")
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(
                x, filters, strides, name=f"stage{stage}_block{block}"
            )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def resnet20(input_shape=(32, 32, 3), num_classes=10):
    """Builds ResNet-20 for CIFAR; see `cifar_resnet`.

    Args:
        input_shape: shape of one image.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` returning logits.

    Example:
        >>> model = resnet20()
        >>> model.count_params()
        274042
    """
    return cifar_resnet(20, input_shape=input_shape, num_classes=num_classes)


def resnet32(input_shape=(32, 32, 3), num_classes=10):
    """Builds ResNet-32 for CIFAR; see `cifar_resnet`.

    Args:
        input_shape: shape of one image.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` returning logits.

    Example:
        >>> model = resnet32(num_classes=100)
        >>> model.output_shape
        (None, 100)
    """
    return cifar_resnet(32, input_shape=input_shape, num_classes=num_classes)


def resnet56(input_shape=(32, 32, 3), num_classes=10):
    """Builds ResNet-56 for CIFAR; see `cifar_resnet`.

    Args:
        input_shape: shape of one image.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` returning logits.

    Example:
        >>> model = resnet56()
        >>> model.output_shape
        (None, 10)
    """
    return cifar_resnet(56, input_shape=input_shape, num_classes=num_classes)
