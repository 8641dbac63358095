"""VGG with batch norm for 32x32 images (Simonyan & Zisserman 2015)."""

import keras

# Convolutions per stage; stages have 64, 128, 256, 512 and 512 filters.
_STAGE_CONVS = {11: (1, 1, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_STAGE_FILTERS = (64, 128, 256, 512, 512)


def vgg(depth, input_shape=(32, 32, 3), num_classes=10):
    """Builds the CIFAR variant of VGG-`depth` with batch norm.

    Five stages of `conv3x3 (He normal, no bias) -> BN -> ReLU` blocks with
    64, 128, 256, 512 and 512 filters (configurations A, D and E of the
    paper), 2x2 max pooling between stages, then global average pooling and
    one `Dense` classifier. interpretation: the small classifier of the
    CIFAR VGGs used in pruning work replaces the paper's three 4096-wide
    layers, which are sized for 224x224 ImageNet inputs.

    Args:
        depth: 11, 16 or 19.
        input_shape: shape of one image, at least 16x16 pixels.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` named `vgg{depth}` returning logits;
        layers are named `stage{s}_conv{c}`, `stage{s}_bn{c}`, ...

    Raises:
        ValueError: `depth` is not one of the VGG depths.

    Example:
        >>> model = vgg(19, num_classes=100)
        >>> model.output_shape
        (None, 100)
    """
    if depth not in _STAGE_CONVS:
        raise ValueError(
            f"`depth` must be one of {sorted(_STAGE_CONVS)}; "
            f"got depth={depth!r}."
        )
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    stages = zip(_STAGE_CONVS[depth], _STAGE_FILTERS)
    for stage, (convs, filters) in enumerate(stages, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for c in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"stage{stage}_conv{c}",
            )(x)
            x = keras.layers.BatchNormalization(name=f"stage{stage}_bn{c}")(x)
            x = keras.layers.ReLU(name=f"stage{stage}_relu{c}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"vgg{depth}")
