"""K-starts and dissipating gradients (Haroon 2022), and their combination."""

from recipes.configs.common import UNCHECKED

PAPER = "Haroon 2022, What to Prune and What Not to Prune at Initialization, arXiv:2209.02201"
NOTES = ("Rules as in docs/pruning.md (K-starts: k = 5 random masks trained together for 2 "
         "epochs, fittest by weight magnitude; dissipating gradients: over 3 epochs "
         "remove weights that moved less than 10% of their initial value). "
         "interpretation: LeNet-300-100 on Fashion-MNIST with Adam, epochs chosen "
         "here; the baseline is a random mask of the same sparsity ('random "
         "dropout' in the paper), trained with the same budget.")
KSTARTS = {"name": "KStarts", "args": {"sparsity": 0.9, "k": 5, "selection_epochs": 2,
                                       "fitness": "magnitude"}}
DISSIPATING = {"name": "DissipatingGradients", "args": {"sparsity": 0.9, "epochs": 3,
                                                        "fraction": 0.1}}


def _recipe(name, title, method):
    return {
        "name": name,
        "title": title,
        "paper": PAPER,
        "model": {"name": "lenet_300_100", "args": {}},
        "data": {"name": "fashion_mnist"},
        "batch_size": 128,
        "epochs": 20,
        "optimizer": {"class": "keras.optimizers.Adam", "args": {"learning_rate": 1e-3}},
        "method": method,
        "sparsity": 0.9,
        # Both start from the dense initialization and choose the mask.
        "sparsify": {"start_sparsity": 0.0},
        "baseline": {"label": "random", "method": {"name": "Static", "args": {}},
                     "sparsify": {"start_sparsity": 0.9}},
        "published": [{"setting": title, "metric": "test accuracy", "value": None,
                       "source": PAPER, "note": UNCHECKED}],
        "notes": NOTES,
        "presets": {"paper": {}, "cpu": {"epochs": 5}},
    }


RECIPES = [
    _recipe("kstarts_lenet300_fashion_mnist",
            "K-starts LeNet-300-100 / Fashion-MNIST at 90% vs random mask", KSTARTS),
    _recipe("dissipating_lenet300_fashion_mnist",
            "Dissipating gradients LeNet-300-100 / Fashion-MNIST at 90% vs random mask",
            DISSIPATING),
    # Combined mode: K-starts picks a 70% mask, dissipating gradients prunes
    # within it to 90% over the next 3 epochs.
    _recipe("kstarts_dissipating_lenet300_fashion_mnist",
            "K-starts (70%) + dissipating gradients (to 90%) LeNet-300-100 / Fashion-MNIST",
            [{"name": "KStarts", "args": {**KSTARTS["args"], "sparsity": 0.7}},
             {"name": "DissipatingGradients",
              "args": {**DISSIPATING["args"], "start_epoch": 2}}]),
]
