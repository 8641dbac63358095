"""Sparse momentum, SNFS (Dettmers & Zettlemoyer 2019): WRN-16-8 on CIFAR-10."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, sgd

PAPER = ("Dettmers, Zettlemoyer 2019, Sparse Networks from Scratch: Faster Training "
         "without Losing Performance, arXiv:1907.04840")

RECIPES = [{
    "name": "snfs_wrn16_8_cifar10",
    "title": "SNFS WRN-16-8 / CIFAR-10 at 95% sparsity (5% weights)",
    "paper": PAPER,
    "model": {"name": "wrn", "args": {"depth": 16, "width": 8}},
    "data": {"name": "cifar10"},
    "batch_size": 128,
    "epochs": 250,
    "optimizer": sgd(piecewise([0.5, 0.75], [0.1, 0.01, 0.001]), nesterov=False,
                     weight_decay=5e-4),
    "method": {"name": "SNFS", "args": {"momentum": 0.9, "alpha": 0.5,
                                        "drop_schedule": "cosine", "delta_t": "epoch"}},
    "sparsity": 0.95,
    "distribution": "uniform",
    "published": [{"setting": "SNFS WRN-16-8 CIFAR-10, 5% weights", "metric": "test error",
                   "value": None, "source": PAPER, "note": UNCHECKED}],
    "notes": "SNFS rules as in docs/dynamic-sparse-training.md (momentum growth, prune rate 0.5 cosine, "
             "per epoch, redistribution by mean momentum) from a uniform start. "
             "interpretation: SGD schedule and epochs chosen here.",
    "presets": {"paper": {},
                "cpu": cpu(model={"args": {"width": 2}})},
}]
