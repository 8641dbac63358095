"""ResNet-50 (He et al. 2016) for ImageNet-scale inputs."""

import keras


def resnet50(input_shape=(224, 224, 3), num_classes=1000):
    """Builds `keras.applications.ResNet50` from scratch, returning logits.

    The Keras reference architecture (v1: stride on the first 1x1 conv of a
    bottleneck) with random weights, its own initializers and no softmax.

    Args:
        input_shape: shape of one image, at least 32x32 pixels.
        num_classes: number of output logits.

    Returns:
        A Functional `keras.Model` named `resnet50` (25,636,712 parameters
        for 1000 classes) with the `keras.applications` layer names
        (`conv1_conv`, `conv2_block1_1_conv`, ..., `predictions`).

    Example:
        >>> model = resnet50(input_shape=(64, 64, 3), num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    return keras.applications.ResNet50(
        weights=None,
        input_shape=input_shape,
        classes=num_classes,
        classifier_activation=None,
        name="resnet50",
    )
