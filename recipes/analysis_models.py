"""The model families of the analysis studies: an MLP or a small CNN of a given width.

```python
from recipes import analysis_models
model = analysis_models.cnn(16, (32, 32, 3), 10, batchnorm=True)
build = analysis_models.family(task, ks.data.info("fashion_mnist"))
dense = build(100, "relu", False)
```
"""


def cnn(width, input_shape, num_classes, activation="relu", batchnorm=False):
    """A small CNN whose channels scale with `width`.

    `conv(w) -> conv(w) -> pool -> conv(2w) -> conv(2w) -> pool -> global
    average -> dense`, 3x3 kernels, each conv followed by [BatchNorm] and
    the activation.

    Args:
        width: channels of the first two convolutions (the last two: 2x).
        input_shape, num_classes: of the data.
        activation: a name `ks.applications.activation_layer` knows.
        batchnorm: BatchNorm after every convolution (and no conv bias).
    """
    import keras

    from keras_sparse.applications import activation_layer, default_initializer

    init = default_initializer(activation)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, channels in enumerate((width, width, 2 * width, 2 * width), start=1):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=not batchnorm,
                                kernel_initializer=init, name=f"conv{i}")(x)
        if batchnorm:
            x = keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = activation_layer(activation, name=f"conv{i}_act")(x)
        if i in (2, 4):
            x = keras.layers.MaxPooling2D(2, name=f"pool{i // 2}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"cnn{width}")


def family(task, info):
    """`build(width, activation, batchnorm)` of an SC-SDC task's model family.

    Args:
        task: a task of an SC-SDC study (`family` "mlp" with `depth`, or "cnn").
        info: `ks.data.info` of its dataset.
    """
    import keras_sparse as ks

    shape, classes = info["input_shape"], info["num_classes"]
    if task["family"] == "mlp":
        return lambda w, activation, batchnorm: ks.applications.mlp(
            (w,) * task["depth"], shape, classes, activation=activation, batchnorm=batchnorm)
    if task["family"] == "cnn":
        return lambda w, activation, batchnorm: cnn(w, shape, classes, activation, batchnorm)
    raise ValueError(f"Unknown model family {task['family']!r}; use 'mlp' or 'cnn'.")


def part_model(part, info):
    """`build()` of a path-study part's network (`family` "mlp", "cnn" or "resnet50").

    Args:
        part: a part of a path study (`family`, `widths`/`width`, `batchnorm`).
        info: `ks.data.info` of its dataset.
    """
    import keras_sparse as ks

    shape, classes = info["input_shape"], info["num_classes"]
    if part["family"] == "mlp":
        return lambda: ks.applications.mlp(part["widths"], shape, classes,
                                           batchnorm=part["batchnorm"])
    if part["family"] == "cnn":
        return lambda: cnn(part["width"], shape, classes, batchnorm=part["batchnorm"])
    if part["family"] == "resnet50":
        return lambda: ks.applications.resnet50(input_shape=shape, num_classes=classes)
    raise ValueError(f"Unknown model family {part['family']!r}.")
