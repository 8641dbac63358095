"""Haroon 2022's initialisation methods against random masks and pruning at init.

LeNet-300-100 and LeNet-5 on Fashion-MNIST at 90/95/98% (ERK layer budgets
for every method, so methods differ only in which weights of a layer they
keep). K-starts trains k=5 candidates on their union for 2 epochs;
dissipating gradients prunes over 3 epochs (movement threshold 10%); the
combination picks a K-starts mask at 3x the final density, then dissipates
to the target over epochs 3-5. The controls train dense for 3 epochs (the
dissipating schedule) and then prune once at random or by magnitude, so the
extra dense training is not mistaken for the method. Every run records the
epochs it needs to reach its sparsity and its training cost in
dense-equivalent epochs (compute-weighted density summed over steps).

The whole study (198 runs) took 48 min of wall time here (2 cores shared
with other work, load 3-7). Measured time per cell (the cpu preset):

- `haroon_init`: measured here (1 seed per cell, 2 cores shared, load
  average 13-14), cpu preset with 6,000 training examples x 8 epochs:
  lenet300_grasp_s90 9.4 CPU-s / 28 s wall, lenet300_synflow_s95 10.6 / 46
  s, lenet5_dense_then_random_s90 10.7 / 22 s,
  lenet5_kstarts_dissipating_s98 10.5 / 35 s. The preset uses 5,000
  examples: about 9 CPU-s per cell, 66 cells x 3 seeds = 198 runs, about 30
  min of CPU time (not measured alone; over 90 min at that load).
"""

from recipes.studies.common import (CONVERGED_EPOCHS, LENET300, MODELS, adam, cell,
                                    converged_preset, preset, tag)

SPARSITIES = (0.9, 0.95, 0.98)
DENSE_EPOCHS = 3  # the controls' dense epochs: dissipating gradients' schedule


def _static(mask_init):
    return {"method": {"name": "Static", "args": {}}, "mask_init": mask_init, "sparsify": {}}


def _from_dense(method):
    return {"method": method, "sparsify": {"start_sparsity": 0.0}}


def _kstarts(sparsity, fitness):
    return {"name": "KStarts", "args": {"sparsity": sparsity, "k": 5, "selection_epochs": 2,
                                        "fitness": fitness}}


def _dissipating(sparsity, start_epoch=0):
    return {"name": "DissipatingGradients",
            "args": {"sparsity": sparsity, "epochs": 3, "fraction": 0.1,
                     "start_epoch": start_epoch}}


def _oneshot(sparsity, criterion):
    return {"name": "OneShotPruning", "args": {"sparsity": sparsity, "epoch": DENSE_EPOCHS,
                                               "criterion": criterion}}


def methods(s):
    """`{key: (label, overrides)}` of every arm at sparsity `s`."""
    denser = round(1 - 3 * (1 - s), 6)  # K-starts' mask in the combination: 3x density
    return {
        "random": ("random", _static("random")),
        "snip": ("SNIP", _static("snip")),
        "grasp": ("GraSP", _static("grasp")),
        "synflow": ("SynFlow", _static("synflow")),
        "kstarts_magnitude": ("K-starts (magnitude)", _from_dense(_kstarts(s, "magnitude"))),
        "kstarts_gradient": ("K-starts (gradient)", _from_dense(_kstarts(s, "gradient"))),
        "kstarts_both": ("K-starts (both)", _from_dense(_kstarts(s, "both"))),
        "dissipating": ("dissipating", _from_dense(_dissipating(s))),
        "kstarts_dissipating": ("K-starts + dissipating", _from_dense(
            [_kstarts(denser, "magnitude"), _dissipating(s, start_epoch=2)])),
        "dense_then_random": (f"dense {DENSE_EPOCHS} ep. + random",
                              _from_dense(_oneshot(s, "random"))),
        "dense_then_magnitude": (f"dense {DENSE_EPOCHS} ep. + magnitude",
                                 _from_dense(_oneshot(s, "magnitude"))),
    }


PAIRS = (
    # H1: K-starts' fittest mask vs a random mask.
    [(f"kstarts_{f}", "random") for f in ("magnitude", "gradient", "both")]
    # H2: dissipating gradients vs the other single methods and the controls.
    + [("dissipating", m) for m in ("random", "snip", "grasp", "synflow", "kstarts_magnitude",
                                    "kstarts_gradient", "kstarts_both", "dense_then_random",
                                    "dense_then_magnitude")]
    # H3: the combination vs either alone and random masks.
    + [("kstarts_dissipating", m) for m in ("kstarts_magnitude", "dissipating", "random")]
)


def _grid():
    grid, comparisons = [], []
    for group, model in MODELS.items():
        for s in SPARSITIES:
            name = lambda key: f"{group}_{key}_{tag(s)}"  # noqa: E731
            for key, (label, overrides) in methods(s).items():
                grid.append(cell(name(key), label, group, s,
                                 dict(overrides, model=model, sparsity=s),
                                 baseline=name("random")))
            comparisons += [[name(a), name(b)] for a, b in PAIRS]
    return grid, comparisons


GRID, COMPARISONS = _grid()

# -- the converged tier: the paper's algorithm readings --------------------------------

K, SELECTION = 5, 2
SEARCH = (K - 1) * SELECTION  # extra epochs of independent K-starts: the losers' training
CONVERGED_SPARSITIES = (0.9, 0.98)
DISSIPATING_CAP = CONVERGED_EPOCHS // 2  # pruning epochs by threshold at most


def _kstarts_faithful(sparsity, distribution="uniform", mode="independent"):
    return {"name": "KStarts", "args": {"sparsity": sparsity, "k": K,
                                        "selection_epochs": SELECTION, "fitness": "magnitude",
                                        "mode": mode, "distribution": distribution}}


def _dissipating_threshold(sparsity, start_epoch=0):
    return {"name": "DissipatingGradients",
            "args": {"sparsity": sparsity, "fraction": 0.1, "start_epoch": start_epoch,
                     "max_epochs": DISSIPATING_CAP, "scope": "global"}}


def converged_methods(s):
    """`{key: (label, overrides)}` of every converged-tier arm at sparsity `s`."""
    denser = round(1 - 3 * (1 - s), 6)
    search = {"epochs": CONVERGED_EPOCHS + SEARCH}
    uniform = {"distribution": "uniform"}
    return {
        "random": ("random (uniform)", dict(_static("random"), **uniform)),
        "kstarts": ("K-starts (independent)", dict(_from_dense(_kstarts_faithful(s)), **search)),
        "kstarts_union": ("K-starts (union)",
                          _from_dense(_kstarts_faithful(s, mode="union"))),
        "dissipating": ("dissipating (threshold)", _from_dense(_dissipating_threshold(s))),
        "dissipating_fill": ("dissipating (fill at epoch 3)", _from_dense(
            {"name": "DissipatingGradients",
             "args": {"sparsity": s, "epochs": DENSE_EPOCHS, "fraction": 0.1,
                      "scope": "global"}})),
        "kstarts_dissipating": ("K-starts + dissipating", dict(_from_dense(
            [_kstarts_faithful(denser), _dissipating_threshold(s, start_epoch=K * SELECTION)]),
            **search)),
        "dense_then_random": (f"dense {DENSE_EPOCHS} ep. + random", _from_dense(
            {"name": "OneShotPruning", "args": {"sparsity": s, "epoch": DENSE_EPOCHS,
                                                "criterion": "random",
                                                "distribution": "uniform"}})),
        "dense_then_magnitude": (f"dense {DENSE_EPOCHS} ep. + magnitude", _from_dense(
            {"name": "OneShotPruning", "args": {"sparsity": s, "epoch": DENSE_EPOCHS,
                                                "criterion": "magnitude",
                                                "distribution": "uniform"}})),
        "random_erk": ("random (ERK)", dict(_static("random"), distribution="erk")),
        "kstarts_erk": ("K-starts (independent, ERK)",
                        dict(_from_dense(_kstarts_faithful(s, "erk")), **search)),
    }


CONVERGED_PAIRS = (
    [("kstarts", "random"), ("kstarts_union", "random"), ("kstarts_erk", "random_erk"),
     ("kstarts", "kstarts_union")]
    + [("dissipating", m) for m in ("random", "kstarts", "dense_then_random",
                                    "dense_then_magnitude", "dissipating_fill")]
    + [("kstarts_dissipating", m) for m in ("kstarts", "dissipating", "random")]
)


def _converged_grid():
    group, model = "lenet300", LENET300
    grid = [cell("lenet300_dense", "dense", group, 0.0, {"model": model, "method": None})]
    comparisons = []
    for s in CONVERGED_SPARSITIES:
        name = lambda key: f"{group}_{key}_{tag(s)}"  # noqa: E731
        for key, (label, overrides) in converged_methods(s).items():
            grid.append(cell(name(key), label, group, s, dict(overrides, model=model, sparsity=s),
                             baseline=name("random")))
        comparisons += [[name(a), name(b)] for a, b in CONVERGED_PAIRS]
    return grid, comparisons


CONVERGED_GRID, CONVERGED_COMPARISONS = _converged_grid()

HAROON_INIT = {
    "name": "haroon_init",
    "title": "Initial masks (Haroon 2022): K-starts, dissipating gradients, SNIP, GraSP, "
             "SynFlow vs random, Fashion-MNIST",
    "recipe": "kstarts_lenet300_fashion_mnist",
    "baseline": "lenet300_random_s90",  # each cell names its own group's random mask
    "grid": GRID,
    "comparisons": COMPARISONS,
    "seeds": 3,
    "presets": {
        "cpu": preset(8, 5000, optimizer=adam(1e-3), batch_size=128),
        "paper": preset(20, None, optimizer=adam(1e-3), batch_size=128, egf_examples=1000),
        "converged": converged_preset(),
    },
    "tiers": {"converged": {
        "grid": CONVERGED_GRID,
        "comparisons": CONVERGED_COMPARISONS,
        "baseline": "lenet300_random_s90",
        "seeds": 4,
    }},
    "claims": [
        {"id": "H1", "claim": "K-starts' fittest mask beats a random mask of the same sparsity.",
         "how": "comparisons kstarts_{magnitude,gradient,both} vs random per model and "
                "sparsity"},
        {"id": "H2", "claim": "Dissipating gradients preserves accuracy best among the single "
                              "methods, but needs the most epochs.",
         "how": "comparisons dissipating vs each single method and the dense-then-prune "
                "controls; epochs_to_sparsity and dense_equivalent_epochs columns"},
        {"id": "H3", "claim": "K-starts combined with dissipating gradients beats either "
                              "method alone and random masks, consistently across sparsities.",
         "how": "comparisons kstarts_dissipating vs kstarts_magnitude, dissipating, random"},
    ],
}

STUDIES = [HAROON_INIT]
