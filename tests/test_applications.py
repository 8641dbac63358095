import math
import re

import keras
import numpy as np
import pytest

from keras_sparse import applications as models

# (registry name, builder kwargs, input shape); small inputs keep it fast.
CASES = [
    ("lenet_300_100", {}, (28, 28, 1)),
    ("lenet5", {}, (28, 28, 1)),
    (
        "mlp",
        dict(widths=(32, 16), input_shape=(8, 8, 1), num_classes=7),
        (8, 8, 1),
    ),
    ("resnet20", {}, (32, 32, 3)),
    ("resnet32", {}, (32, 32, 3)),
    ("resnet56", dict(num_classes=100), (32, 32, 3)),
    ("wrn", dict(dropout=0.3), (32, 32, 3)),
    ("vgg11", {}, (32, 32, 3)),
    ("vgg16", {}, (32, 32, 3)),
    ("vgg19", dict(num_classes=100), (32, 32, 3)),
    ("resnet50", dict(input_shape=(64, 64, 3), num_classes=10), (64, 64, 3)),
]


def test_registry_lists_every_family():
    assert models.names() == sorted(name for name, _, _ in CASES)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=[c[0] for c in CASES])
def test_builds_and_trains_one_step(name, kwargs, shape):
    model = models.get(name, **kwargs)
    num_classes = kwargs.get("num_classes", 10)
    assert type(model).__name__ == "Functional"
    assert model.output_shape == (None, num_classes)
    # Plain Keras layers only, so a converter can clone them into sparse ones.
    assert all(type(l).__module__.startswith("keras.") for l in model.layers)
    # Logits: the output layer is linear.
    assert model.layers[-1].get_config()["activation"] == "linear"

    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *shape)).astype("float32")
    y = np.array([0, num_classes - 1])
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert math.isfinite(float(loss))
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize(
    "builder,count",
    [
        # 784*300+300 + 300*100+100 + 100*10+10
        (models.lenet_300_100, 266_610),
        # 156 + 2,416 + 48,120 + 10,164 + 850
        (models.lenet5, 61_706),
        # the published keras.applications.ResNet50 size
        (models.resnet50, 25_636_712),
    ],
)
def test_known_parameter_counts(builder, count):
    assert builder().count_params() == count


def _convs(model):
    return [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_cifar_resnet_structure(depth):
    model = models.cifar_resnet(depth)
    convs = _convs(model)
    # 6n + 1 3x3 convolutions plus two 1x1 (option B) downsampling shortcuts.
    assert len(convs) == depth - 1 + 2
    assert sorted({c.filters for c in convs}) == [16, 32, 64]
    assert all(
        c.kernel_initializer.__class__.__name__ == "HeNormal" for c in convs
    )
    assert model.name == f"resnet{depth}"


def test_wide_resnet_structure():
    model = models.wide_resnet(depth=28, width=10)
    convs = _convs(model)
    # stem + 6n + 3 shortcuts (16 -> 160, 160 -> 320, 320 -> 640), n = 4.
    assert len(convs) == 1 + 24 + 3
    assert sorted({c.filters for c in convs}) == [16, 160, 320, 640]
    assert model.name == "wrn_28_10"
    assert not any(isinstance(l, keras.layers.Dropout) for l in model.layers)
    assert any(
        isinstance(l, keras.layers.Dropout)
        for l in models.wide_resnet(dropout=0.3).layers
    )


@pytest.mark.parametrize("depth,convs", [(11, 8), (16, 13), (19, 16)])
def test_vgg_structure(depth, convs):
    model = models.vgg(depth)
    layers = _convs(model)
    assert len(layers) == convs
    assert layers[-1].filters == 512
    bn = keras.layers.BatchNormalization
    assert sum(isinstance(l, bn) for l in model.layers) == convs
    assert model.get_layer("logits").kernel.shape == (512, 10)


@pytest.mark.parametrize(
    "activation,layer_type,initializer",
    [
        ("relu", keras.layers.Activation, "HeNormal"),
        ("tanh", keras.layers.Activation, "GlorotUniform"),
        ("selu", keras.layers.Activation, "LecunNormal"),
        ("swish", keras.layers.Activation, "HeNormal"),
        ("prelu", keras.layers.PReLU, "HeNormal"),
    ],
)
def test_mlp_activation_and_initializer(activation, layer_type, initializer):
    model = models.mlp((16, 8), (4,), 3, activation=activation)
    for i in (1, 2):
        assert isinstance(model.get_layer(f"fc{i}_act"), layer_type)
        dense = model.get_layer(f"fc{i}")
        assert dense.kernel_initializer.__class__.__name__ == initializer
    x = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 4)
    assert model.predict(x, verbose=0).shape == (2, 3)


def test_mlp_batchnorm():
    model = models.mlp((16, 8), (4,), 3, batchnorm=True)
    bn = model.get_layer("fc1_bn")
    assert isinstance(bn, keras.layers.BatchNormalization)
    assert model.get_layer("fc1").bias is None
    assert model.get_layer("logits").bias is not None
    plain = models.mlp((16, 8), (4,), 3)
    assert plain.get_layer("fc1").bias is not None


def test_unknown_name_names_argument_value_and_choices():
    with pytest.raises(ValueError) as error:
        models.get("resnet99")
    message = str(error.value)
    assert "name='resnet99'" in message
    for allowed in ("resnet20", "wrn", "vgg19", "lenet_300_100"):
        assert allowed in message


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: models.cifar_resnet(21), "depth=21"),
        (lambda: models.wide_resnet(depth=23), "depth=23"),
        (lambda: models.wide_resnet(width=0), "`width` must be an integer >= 1; got 0"),
        (lambda: models.wide_resnet(dropout=1.0), "`dropout` must be in [0, 1); got 1.0"),
        (lambda: models.vgg(13), "depth=13"),
        (lambda: models.mlp((), (4,), 2), "widths=()"),
        (
            lambda: models.mlp((4,), (4,), 2, activation="nope"),
            "activation='nope'",
        ),
    ],
)
def test_bad_arguments_raise_value_error(build, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        build()
