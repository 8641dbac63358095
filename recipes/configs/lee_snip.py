"""SNIP (Lee et al. 2019): prune at initialization, then train the fixed mask."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, sgd

PAPER = ("Lee, Ajanthan, Torr 2019, SNIP: Single-shot Network Pruning based on "
         "Connection Sensitivity, ICLR")

RECIPES = [{
    "name": "snip_vgg16_cifar10",
    "title": "SNIP VGG-16 / CIFAR-10 at 95% sparsity (global ranking)",
    "paper": PAPER,
    "model": {"name": "vgg16", "args": {}},
    "data": {"name": "cifar10"},
    "batch_size": 128,
    "epochs": 160,
    "optimizer": sgd(piecewise([0.5, 0.75], [0.1, 0.01, 0.001]), nesterov=False,
                     weight_decay=5e-4),
    "method": {"name": "Static", "args": {}},
    "mask_init": "snip",
    "sparsity": 0.95,
    "sparsify": {"scope": "global"},
    "published": [{"setting": "SNIP VGG-D CIFAR-10, 95%", "metric": "test error",
                   "value": None, "source": PAPER, "note": UNCHECKED}],
    "notes": "SNIP scores |g * w| on one batch of 100 training examples at "
             "initialization, ranked globally (as in the paper). interpretation: "
             "the CIFAR VGG-16 with batch norm of ks.applications and a standard SGD "
             "schedule, not the paper's exact VGG-D training setup.",
    "presets": {"paper": {}, "cpu": cpu()},
}]
