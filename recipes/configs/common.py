"""Building blocks shared by recipe configs (plain data)."""


def steps(fraction):
    """A step count given as a fraction of training, resolved by the runner."""
    return f"{fraction}*total_steps"


def sgd(learning_rate, momentum=0.9, nesterov=True, weight_decay=None):
    """SGD with momentum; `learning_rate` a float or a schedule spec."""
    return {"class": "keras.optimizers.SGD",
            "args": {"learning_rate": learning_rate, "momentum": momentum,
                     "nesterov": nesterov, "weight_decay": weight_decay}}


def piecewise(fractions, values):
    """Piecewise-constant LR, boundaries as fractions of training."""
    return {"class": "keras.optimizers.schedules.PiecewiseConstantDecay",
            "args": {"boundaries": [steps(f) for f in fractions], "values": list(values)}}


def cpu(subset=5000, eval_subset=1000, epochs=2, **overrides):
    """The reduced preset: first `subset` training examples, few epochs."""
    return {"data": {"subset": subset, "eval_subset": eval_subset}, "epochs": epochs,
            **overrides}


UNCHECKED = ("not transcribed: the number could not be checked against the "
             "paper here, so none is quoted")


def resnet50_imagenet(**recipe):
    """RigL's ResNet-50/ImageNet training setup (official code) plus `recipe`.

    Batch 4096, 100 epochs, SGD with Nesterov momentum 0.9, LR 1.6 (0.1 per
    256 examples) divided by 10 at epochs 30, 70 and 90, weight decay 1e-4,
    label smoothing 0.1, ERK; the cpu preset shrinks data, batch and LR.
    """
    return {
        "model": {"name": "resnet50", "args": {}},
        "data": {"name": "imagenet2012", "eval_split": "validation"},
        "batch_size": 4096,
        "epochs": 100,
        "optimizer": sgd(piecewise([0.3, 0.7, 0.9], [1.6, 0.16, 0.016, 0.0016]),
                         weight_decay=1e-4),
        "label_smoothing": 0.1,
        "distribution": "erk",
        "presets": {"paper": {},
                    "cpu": cpu(subset=1280, eval_subset=500, epochs=1, batch_size=32,
                               optimizer={"args": {"learning_rate": {"args": {
                                   "values": [0.0125, 0.00125, 0.000125, 0.0000125]}}}},
                               method={"args": {"delta_t": 10}})},
        **recipe,
    }
