"""Sparse momentum, SNFS (Dettmers & Zettlemoyer 2019): WRN-16-8 on CIFAR-10, LeNet-300-100 on MNIST."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, sgd

PAPER = ("Dettmers, Zettlemoyer 2019, Sparse Networks from Scratch: Faster Training "
         "without Losing Performance, arXiv:1907.04840")
# The authors' repository keeps a table of LeNet-300-100 / MNIST results, theirs
# among others (density in %, test error in %, standard error).
MNIST_RESULTS = ("github.com/TimDettmers/sparse_learning, "
                 "results/MNIST_compression_comparison_lenet300-100.csv (commit fa477fb), "
                 "rows 'Sparse Momentum, Dettmers 2019'")
MNIST_CODE = "github.com/TimDettmers/sparse_learning, mnist_cifar/main.py defaults (commit 04b18e2)"

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
}, {
    "name": "snfs_lenet300_mnist",
    "title": "Sparse momentum LeNet-300-100 / MNIST at 95% sparsity (5% weights)",
    "paper": PAPER,
    "model": {"name": "lenet_300_100", "args": {}},
    # The code holds 10% of the training set out for validation.
    "data": {"name": "mnist", "train_split": "train[:90%]"},
    "batch_size": 100,
    "epochs": 100,
    # SGD, Nesterov momentum 0.9, LR 0.1 divided by 10 every 25,000 steps
    # (of 54,000: 540 steps per epoch), weight decay 5e-4.
    "optimizer": sgd(piecewise([25000 / 54000, 50000 / 54000], [0.1, 0.01, 0.001]),
                     weight_decay=5e-4),
    "method": {"name": "SNFS", "args": {"momentum": 0.9, "alpha": 0.5,
                                        "drop_schedule": "cosine", "delta_t": "epoch"}},
    "sparsity": 0.95,
    "distribution": "uniform",
    "published": [
        # Mean test error over the authors' runs; their standard error in the note.
        *[{"setting": f"sparse momentum LeNet-300-100 MNIST, {density}% weights",
           "metric": "test error (%)", "value": error, "source": MNIST_RESULTS,
           "note": f"standard error {se} (column 'sm SE', read as the standard error); "
                   + ("this recipe's setting" if density == 5 else
                      f"compare with overrides {{'sparsity': {1 - density / 100:.2f}}}")}
          for density, error, se in [(5, 1.53, 0.02), (2, 1.99, 0.019), (1, 2.36, 0.044)]],
    ],
    "notes": "SNFS rules as in docs/dynamic-sparse-training.md (momentum growth, prune "
             "rate 0.5 with cosine decay, updates at the end of each epoch, "
             "redistribution by mean momentum) from a uniform start; optimizer, LR "
             "steps, weight decay, batch, epochs and the 10% validation hold-out are "
             "the defaults of " + MNIST_CODE + ". interpretation: the paper's exact "
             "command lines were not checked; Keras' weight decay is decoupled, "
             "PyTorch's SGD adds it to the gradient. MNIST is not prepared on the "
             "project's machines: prepare it (`tfds build mnist`) or pass --download.",
    "presets": {"paper": {}, "cpu": cpu()},
}]
