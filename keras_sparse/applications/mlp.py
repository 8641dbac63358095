"""Fully connected classifiers: a generic MLP and LeNet-300-100."""

import keras

# Initializers matched to the activation so every width starts well scaled:
# SELU needs LeCun normal to self-normalize, tanh is Glorot's setting and the
# ReLU family (ReLU, PReLU, Swish) uses He et al. 2015.
_INITIALIZERS = {"selu": "lecun_normal", "tanh": "glorot_uniform"}


def default_initializer(activation):
    """The kernel initializer name these builders pair with `activation`.

    Example:
        >>> default_initializer("selu"), default_initializer("relu")
        ('lecun_normal', 'he_normal')
    """
    return _INITIALIZERS.get(activation, "he_normal")


def activation_layer(activation, name):
    """Returns a layer applying `activation`.

    Args:
        activation: a Keras activation name or callable; `"prelu"` gives a
            `keras.layers.PReLU` (one learned slope per unit).
        name: the layer name.

    Example:
        >>> layer = activation_layer("prelu", name="fc1_act")
        >>> isinstance(layer, keras.layers.PReLU)
        True
    """
    if activation == "prelu":
        return keras.layers.PReLU(name=name)
    try:
        fn = keras.activations.get(activation)
    except ValueError as error:
        raise ValueError(
            f"`activation` must be a Keras activation name, 'prelu' or a "
            f"callable; got activation={activation!r}."
        ) from error
    return keras.layers.Activation(fn, name=name)


def mlp(
    widths,
    input_shape,
    num_classes,
    activation="relu",
    batchnorm=False,
    name="mlp",
):
    """Builds a multilayer perceptron returning logits.

    The input is flattened, then each hidden layer is
    `Dense -> [BatchNormalization] -> activation`; the last `Dense` gives
    `num_classes` logits (no softmax).

    Args:
        widths: hidden layer widths, e.g. `(300, 100)`.
        input_shape: shape of one example, e.g. `(28, 28, 1)`.
        num_classes: number of output logits.
        activation: a Keras activation name (`"relu"`, `"tanh"`, `"selu"`,
            `"swish"`, ...), a callable, or `"prelu"` for `PReLU` layers.
            The kernel initializer follows it: LeCun normal for SELU, Glorot
            uniform for tanh, He normal otherwise.
        batchnorm: whether to put `BatchNormalization` before each hidden
            activation (the hidden `Dense` layers then have no bias).
        name: the model name.

    Returns:
        A Functional `keras.Model`; hidden layers are named `fc1`, `fc2`,
        ... and the output layer `logits`.

    Raises:
        ValueError: empty or non-positive `widths`, or an unknown `activation`.

    Example:
        >>> model = mlp((256, 256), input_shape=(28, 28, 1), num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    widths = tuple(widths)
    if not widths or any(int(w) < 1 for w in widths):
        raise ValueError(
            f"`widths` must be a non-empty sequence of positive integers; "
            f"got widths={widths!r}."
        )
    initializer = _INITIALIZERS.get(activation, "he_normal")
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(widths, start=1):
        x = keras.layers.Dense(
            int(width),
            use_bias=not batchnorm,
            kernel_initializer=initializer,
            name=f"fc{i}",
        )(x)
        if batchnorm:
            x = keras.layers.BatchNormalization(name=f"fc{i}_bn")(x)
        x = activation_layer(activation, name=f"fc{i}_act")(x)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=initializer, name="logits"
    )(x)
    return keras.Model(inputs, outputs, name=name)
