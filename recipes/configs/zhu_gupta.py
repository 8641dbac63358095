"""Gradual magnitude pruning (Zhu & Gupta 2017), dense to 90% sparse."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, sgd, steps

PAPER = ("Zhu, Gupta 2017, To prune, or not to prune: exploring the efficacy of "
         "pruning for model compression, arXiv:1710.01878")


def _schedule(frequency):
    return {"class": "ks.schedules.PolynomialDecay",
            "args": {"initial_sparsity": 0.0, "final_sparsity": 0.9,
                     "begin_step": steps(0.05), "end_step": steps(0.6),
                     "frequency": frequency}}


RECIPES = [{
    "name": "gradual_resnet20_cifar10",
    "title": "Gradual magnitude pruning ResNet-20 / CIFAR-10, dense to 90% vs dense",
    "paper": PAPER,
    "model": {"name": "resnet20", "args": {}},
    "data": {"name": "cifar10"},
    "batch_size": 128,
    "epochs": 164,
    # He et al. 2016's CIFAR ResNet schedule: LR 0.1 divided by 10 at 50% and
    # 75% of 64k steps, momentum 0.9, weight decay 1e-4.
    "optimizer": sgd(piecewise([0.5, 0.75], [0.1, 0.01, 0.001]), nesterov=False,
                     weight_decay=1e-4),
    "method": {"name": "GradualMagnitudePruning",
               "args": {"schedule": _schedule(100), "distribution": "uniform"}},
    "sparsity": 0.9,
    "sparsify": {"start_sparsity": 0.0},
    "baseline": {"label": "dense", "method": None},
    "published": [{"setting": "ResNet-20 CIFAR-10, 90%", "metric": "test accuracy",
                   "value": None, "source": PAPER,
                   "note": "the paper prunes InceptionV3, MobileNet and LSTMs, not "
                           "ResNet-20; " + UNCHECKED}],
    "notes": "Zhu & Gupta's cubic schedule s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t1 - t0))^3 "
             "every 100 steps. interpretation: pruning from 5% to 60% of training, "
             "uniform across layers (as tfmot), so the rest of training recovers.",
    "presets": {"paper": {},
                "cpu": cpu(method={"args": {"schedule": _schedule(5)}})},
}]
