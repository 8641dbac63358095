"""SC-SDC (Tessera et al. 2021): same-capacity sparse vs dense MLP on Fashion-MNIST."""

PAPER = ("Tessera, Hooker, Rosman 2021, Keep the Gradients Flowing: Using Gradient "
         "Flow to Study Sparse Network Optimization, arXiv:2102.01670")
DENSE, SPARSE = 100, 400
RATIO = DENSE / SPARSE
# Matched per layer (docs/gradient-flow-and-analysis.md): first and last layers keep w_d/w_s of their
# weights, hidden layers (w_d/w_s)**2, so active counts equal the dense MLP's.
CUSTOM = {"fc1": 1 - RATIO, "fc2": 1 - RATIO**2, "logits": 1 - RATIO}
ACTIVE = 784 * DENSE + DENSE * DENSE + DENSE * 10
TOTAL = 784 * SPARSE + SPARSE * SPARSE + SPARSE * 10

RECIPES = [{
    "name": "tessera_scsdc_mlp_fashion_mnist",
    "title": f"SC-SDC pair: sparse MLP {SPARSE}-{SPARSE} vs dense {DENSE}-{DENSE}, "
             "same active weights, Fashion-MNIST",
    "paper": PAPER,
    "model": {"name": "mlp", "args": {"widths": [SPARSE, SPARSE], "activation": "relu"}},
    "data": {"name": "fashion_mnist"},
    "batch_size": 128,
    "epochs": 20,
    "optimizer": {"class": "keras.optimizers.Adam", "args": {"learning_rate": 1e-3}},
    "method": {"name": "Static", "args": {}},
    "sparsity": round(1 - ACTIVE / TOTAL, 6),
    "distribution": "uniform",
    "sparsify": {"custom": CUSTOM},
    "baseline": {"label": "dense", "method": None,
                 "model": {"args": {"widths": [DENSE, DENSE]}}},
    "published": [{"setting": "SC-SDC MLP Fashion-MNIST", "metric": "sparse - dense accuracy",
                   "value": None, "source": PAPER,
                   "note": "the paper reports gaps and Kendall tau over a sweep, not "
                           "one number for this pair"}],
    "notes": "One same-capacity pair (random static mask vs dense, same init "
             "scheme and budget) with EGF logged; the full SC-SDC sweep "
             "(optimizers x activations x regularizers x seeds, Kendall tau, "
             "significance tests) is not part of this runner.",
    "presets": {"paper": {}, "cpu": {"epochs": 3}},
}]
