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
