"""Wide residual networks, WRN-d-k (Zagoruyko & Komodakis 2016)."""

import keras

from keras_sparse.utils.argument_validation import check_int, check_number


def _conv(x, filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)


def _bn_relu(x, name):
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _wide_block(x, filters, strides, dropout, name):
    preact = _bn_relu(x, name=f"{name}_1")
    # As in the reference code, a projection shortcut reads the
    # pre-activated input; an identity shortcut reads the raw input.
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(preact, filters, 1, strides, name=f"{name}_shortcut")
    else:
        shortcut = x
    x = _conv(preact, filters, 3, strides, name=f"{name}_1_conv")
    x = _bn_relu(x, name=f"{name}_2")
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = _conv(x, filters, 3, 1, name=f"{name}_2_conv")
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])


def wide_resnet(
    depth=22, width=2, input_shape=(32, 32, 3), num_classes=10, dropout=0.0
):
    """Builds WRN-`depth`-`width` with pre-activation basic blocks.

    A 3x3 stem conv with 16 filters, three groups of `(depth - 4) / 6`
    blocks with `16 * width`, `32 * width` and `64 * width` filters (groups
    2 and 3 start with stride 2), then batch norm, ReLU, global average
    pooling and a `Dense` classifier. A block is
    `BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3` plus a shortcut, a 1x1
    convolution where the shape changes. Convolutions are He normal
    initialized and bias-free.

    Args:
        depth: total depth, `6n + 4` (16, 22, 28, 40, ...).
        width: widening factor `k` (a positive integer).
        input_shape: shape of one image.
        num_classes: number of output logits.
        dropout: dropout rate between the two convolutions of each block
            (the paper uses 0.3 in some runs; 0 disables it).

    Returns:
        A Functional `keras.Model` named `wrn_{depth}_{width}` returning
        logits; layers are named `group{g}_block{b}_...`.

    Raises:
        TypeError, ValueError: `depth` not of the form 6n + 4, `width` < 1 or
            `dropout` outside [0, 1).

    Example:
        >>> model = wide_resnet(depth=22, width=2, num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    depth = check_int(depth, "depth", minimum=10, allowed=" of the form 6n + 4")
    if (depth - 4) % 6:
        raise ValueError(
            f"`depth` must be 6n + 4 for an integer n >= 1 (16, 22, 28, ...); "
            f"got depth={depth!r}."
        )
    width = check_int(width, "width", minimum=1)
    dropout = check_number(dropout, "dropout", 0, 1, high_open=True)
    blocks = (depth - 4) // 6
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(inputs, 16, 3, 1, name="stem_conv")
    for group, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, blocks + 1):
            strides = 2 if group > 1 and block == 1 else 1
            x = _wide_block(
                x,
                filters * width,
                strides,
                dropout,
                name=f"group{group}_block{block}",
            )
    x = _bn_relu(x, name="head")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}")
