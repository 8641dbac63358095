"""The README's first command: RigL vs dense on Fashion-MNIST in minutes."""

RECIPES = [{
    "name": "quickstart",
    "title": "LeNet-300-100 / Fashion-MNIST: RigL at 90% sparsity (ERK) vs dense",
    "paper": "Evci et al. 2020, Rigging the Lottery: Making All Tickets Winners (ICML)",
    "model": {"name": "lenet_300_100", "args": {}},
    "data": {"name": "fashion_mnist"},
    "batch_size": 128,
    "epochs": 3,
    "optimizer": {"class": "keras.optimizers.Adam", "args": {"learning_rate": 1e-3}},
    "method": {"name": "RigL", "args": {"delta_t": 100}},
    "sparsity": 0.9,
    "distribution": "erk",
    "baseline": {"label": "dense", "method": None},
    "published": [],
    "notes": "A demonstration, not a paper experiment: RigL's rules and "
             "defaults (cosine drop fraction 0.3, every 100 steps, up to 75% "
             "of training) with Adam so that three epochs suffice. The dense "
             "baseline has the same model, optimizer, data and epochs.",
    "presets": {"cpu": {}, "paper": {"epochs": 30}},
}]
