"""LeNet-300-100 and LeNet-5 (LeCun et al. 1998), the MNIST-scale baselines."""

import keras

from keras_sparse.applications.mlp import mlp


def lenet_300_100(input_shape=(28, 28, 1), num_classes=10, activation="relu"):
    """Builds LeNet-300-100: `Flatten -> Dense 300 -> Dense 100 -> logits`.

    Args:
        input_shape: shape of one example.
        num_classes: number of output logits.
        activation: hidden activation, as in `keras_sparse.applications.mlp`.

    Returns:
        A Functional `keras.Model` (266,610 parameters for MNIST) with layers
        `fc1`, `fc2` and `logits`.

    Example:
        >>> model = lenet_300_100(activation="tanh")
        >>> model.count_params()
        266610
    """
    return mlp(
        (300, 100),
        input_shape=input_shape,
        num_classes=num_classes,
        activation=activation,
        name="lenet_300_100",
    )


def lenet5(input_shape=(28, 28, 1), num_classes=10, width=1.0):
    """Builds LeNet-5 with ReLU and max pooling.

    `conv1` 6@5x5 (same padding) -> pool -> `conv2` 16@5x5 -> pool ->
    `fc1` 120 -> `fc2` 84 -> `logits`. interpretation: the 1998 layer sizes
    (61,706 parameters on MNIST) with today's ReLU and max pooling in place of
    the scaled tanh and trainable subsampling; not the 20-50-500 "Caffe"
    variant some pruning papers also call LeNet-5.

    Args:
        input_shape: shape of one example, at least 12x12 pixels.
        num_classes: number of output logits.
        width: multiplier of every hidden layer's channels and units
            (rounded, at least 1), e.g. 0.5 for a small dense network with
            about a quarter of the weights; 1.0 is LeNet-5.

    Returns:
        A Functional `keras.Model` returning logits.

    Raises:
        ValueError: `width` is not a number > 0.

    Example:
        >>> model = lenet5(input_shape=(28, 28, 1), num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"`width` must be a number > 0; got width={width!r}.")
    size = lambda n: max(1, int(round(n * width)))  # noqa: E731
    hidden = dict(activation="relu", kernel_initializer="he_normal")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(size(6), 5, padding="same", name="conv1", **hidden)(
        inputs
    )
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(size(16), 5, name="conv2", **hidden)(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(size(120), name="fc1", **hidden)(x)
    x = keras.layers.Dense(size(84), name="fc2", **hidden)(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")
