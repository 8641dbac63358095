"""SET (Mocanu et al. 2018) on an MLP: LeNet-300-100 on Fashion-MNIST."""

from recipes.configs.common import UNCHECKED, sgd

PAPER = ("Mocanu, Mocanu, Stone, Nguyen, Gibescu, Liotta 2018, Scalable training of "
         "artificial neural networks with adaptive sparse connectivity inspired by "
         "network science, Nature Communications")

RECIPES = [{
    "name": "set_lenet300_fashion_mnist",
    "title": "SET LeNet-300-100 / Fashion-MNIST (ER, epsilon 20 = 88.5% sparse) vs dense",
    "paper": PAPER,
    "model": {"name": "lenet_300_100", "args": {}},
    "data": {"name": "fashion_mnist"},
    "batch_size": 100,
    "epochs": 100,
    "optimizer": sgd(0.01, nesterov=False, weight_decay=2e-4),
    "method": {"name": "SET", "args": {"delta_t": "epoch", "alpha": 0.3,
                                       "drop_schedule": "constant"}},
    # SET's Erdos-Renyi density eps*(n_in+n_out)/(n_in*n_out) with eps=20
    # keeps 30,680 of LeNet-300-100's 266,200 weights (the last layer dense).
    "sparsity": 0.885,
    "distribution": "er",
    "baseline": {"label": "dense", "method": None},
    "published": [{"setting": "SET-MLP Fashion-MNIST", "metric": "test accuracy",
                   "value": None, "source": PAPER,
                   "note": "the paper's MLP is 784-1000-1000-1000-10, not LeNet-300-100; "
                           + UNCHECKED + " (searched: the paper's stored copy shows only its "
                           "opening; the authors' repository, dcmocanu/sparse-evolutionary-"
                           "artificial-neural-networks, has no Fashion-MNIST result table)"}],
    "notes": "SET's rules (epoch-wise updates, zeta 0.3 constant, ER layer "
             "densities). interpretation: LeNet-300-100 instead of the paper's "
             "wider MLP; SGD (momentum 0.9, LR 0.01, weight decay 2e-4) and 100 "
             "epochs chosen here.",
    "presets": {"paper": {}, "cpu": {"epochs": 3}},
}]
