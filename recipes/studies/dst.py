"""Dynamic sparse training studies: Static, SET, RigL, SNFS, DST-EE, pruning.

All DST methods share one schedule, RigL's (drop fraction 0.3, cosine,
updates until 75% of training) with `delta_t` = 2% of the training steps
(about 37 updates), as the RigL paper runs SET and Static next to RigL; SNFS keeps its own paper's
settings (per epoch, prune rate 0.5 cosine, momentum redistribution).
Gradual magnitude pruning (Zhu & Gupta's cubic schedule) goes from dense to
the target between 5% and 75% of training with the same ERK layer split.
Everything else (model, data, optimizer, batch, epochs) is the same for all
methods of a study.

Measured time per cell (the cpu preset):

Whole studies, measured here (2 cores, shared with other work at load 3-7):
`dst_fashion_mnist` 132 runs in 42 min of wall time; `dstee_exploration`
13 runs in 12 min (the other 26 in an earlier session).

- `dst_fashion_mnist`: measured here (1 seed per cell, 2 cores shared with
  other jobs, load average 13-14): cpu preset (10,000 training examples, 5
  epochs, Adam 1e-3, batch 128, full 10,000-image test set once at the end)
  lenet300_snfs_s98 11.0 CPU-s / 40 s wall, lenet5_rigl_s90 10.8 / 23 s,
  lenet5_gmp_s95 10.7 / 30 s, lenet5_smalldense_s95 8.6 / 23 s. 44 cells x 3
  seeds = 132 runs: about 23 min of CPU time (not measured alone; over 60
  min at that load).
- `dst_cifar10`: measured here (load average 13-14): ResNet-20 with 5,000
  examples x 4 epochs took 110 CPU-s / 317 s wall per cell (test accuracy
  0.28 for RigL at 90%): too slow for 33 runs. 4,000 examples x 3 epochs at
  batch 128: 68.8 CPU-s / 301 s wall, but only 96 steps, and test accuracy
  (0.18, static 95%) far below train accuracy (0.32): BatchNorm's moving
  statistics had not settled. The cpu preset therefore uses 3,000 examples x
  3 epochs at batch 32 (LR 0.025, divided by 10 at 50% and 75%) and 5,000
  test images (resnet20_rigl_s90: 77.2 CPU-s / 317 s wall at load average
  16, test accuracy 0.283, train 0.333; 33 runs about 42 min of CPU time).
  The accuracy level is low (about 0.3): a check of the methods' ordering at
  a tiny budget, not of CIFAR-10 accuracy.
- `dstee_exploration`: measured here (1 seed per cell, load average 13-14):
  cpu preset (all 60,000 training examples, 5 epochs, Adam 1e-3, batch 128,
  delta_t 2% of the steps = 47 steps, 37 updates): rigl 40.2 CPU-s / 66 s
  wall (including data loading), dstee_c0.01 34.5 CPU-s / 60 s wall. 13
  cells x 3 seeds = 39 runs: about 23 min of CPU time (not measured alone;
  about 40 min at that load).
"""

from recipes.studies.common import (LENET300, MODELS, adam, cell, converged_preset, preset,
                                    small_dense, tag)

DELTA_T = "0.02*total_steps"


def static():
    return {"name": "Static", "args": {}}


def set_():
    return {"name": "SET", "args": {"delta_t": DELTA_T, "drop_schedule": "cosine", "alpha": 0.3}}


def rigl():
    return {"name": "RigL", "args": {"delta_t": DELTA_T, "drop_schedule": "cosine", "alpha": 0.3}}


def snfs():
    return {"name": "SNFS", "args": {}}


def dstee(c=1e-2, **extra):
    return {"name": "DSTEE", "args": {"c": c, "delta_t": DELTA_T, "drop_schedule": "cosine",
                                      "alpha": 0.3, **extra}}


def gmp(sparsity):
    schedule = {"class": "ks.schedules.PolynomialDecay",
                "args": {"initial_sparsity": 0.0, "final_sparsity": sparsity,
                         "begin_step": "0.05*total_steps", "end_step": "0.75*total_steps",
                         "frequency": DELTA_T}}
    return {"name": "GradualMagnitudePruning",
            "args": {"schedule": schedule, "distribution": "erk"}}


SPARSE = {"static": ("Static", static), "set": ("SET", set_), "rigl": ("RigL", rigl),
          "snfs": ("SNFS", snfs), "dstee": ("DST-EE", dstee)}


def _sparse_cells(group, model, sparsity, keys):
    cells = []
    for key in keys:
        label, method = SPARSE[key]
        cells.append(cell(f"{group}_{key}_{tag(sparsity)}", label, group, sparsity,
                          {"model": model, "method": method(), "sparsity": sparsity,
                           "sparsify": {}}))
    return cells


def _gmp_cell(group, model, sparsity):
    return cell(f"{group}_gmp_{tag(sparsity)}", "GMP", group, sparsity,
                {"model": model, "method": gmp(sparsity), "sparsity": sparsity,
                 "sparsify": {"start_sparsity": 0.0}})


def _dense_cell(group, model):
    return cell(f"{group}_dense", "dense", group, 0.0, {"model": model, "method": None})


def _pairs(group, sparsity, pairs):
    t = tag(sparsity)
    return [[f"{group}_{a}_{t}" if a != "dense" else f"{group}_dense",
             f"{group}_{b}_{t}" if b != "dense" else f"{group}_dense"] for a, b in pairs]


# -- dst_fashion_mnist ------------------------------------------------------------

FMNIST_SPARSITIES = (0.9, 0.95, 0.98)
FMNIST_PAIRS = [("dstee", "set"), ("dstee", "rigl"), ("dstee", "dense"), ("rigl", "set"),
                ("set", "static"), ("gmp", "rigl")]


def _fmnist_grid():
    grid, comparisons = [], []
    for group, model in MODELS.items():
        grid.append(_dense_cell(group, model))
        for s in FMNIST_SPARSITIES:
            grid += _sparse_cells(group, model, s, ("static", "set", "rigl", "snfs", "dstee"))
            grid.append(_gmp_cell(group, model, s))
            small, weights = small_dense(group, s)
            grid.append(cell(f"{group}_smalldense_{tag(s)}", "small dense", group, s,
                             {"model": small, "method": None}))
            comparisons += _pairs(group, s, FMNIST_PAIRS)
    for c in grid:
        c["baseline"] = f"{c['group']}_dense"
    return grid, comparisons


FMNIST_GRID, FMNIST_COMPARISONS = _fmnist_grid()

DST_FASHION_MNIST = {
    "name": "dst_fashion_mnist",
    "title": "DST methods on Fashion-MNIST: LeNet-300-100 and LeNet-5 at 90/95/98% (ERK)",
    "recipe": "quickstart",
    "baseline": "lenet300_dense",  # each cell names its model's dense network
    "grid": FMNIST_GRID,
    "comparisons": FMNIST_COMPARISONS,
    "seeds": 3,
    "presets": {
        "cpu": preset(5, 10000, optimizer=adam(1e-3), batch_size=128),
        "paper": preset(30, None, optimizer=adam(1e-3), batch_size=128, egf_examples=1000),
    },
    "claims": [
        {"id": "D1", "claim": "DST-EE beats SET and RigL at the same sparsity, up to 98%.",
         "how": "comparisons <model>_dstee_<s> vs <model>_set_<s> and <model>_rigl_<s>"},
        {"id": "D2", "claim": "DST-EE matches or beats the dense network.",
         "how": "comparisons <model>_dstee_<s> vs <model>_dense"},
        {"id": "R1", "claim": "RigL >= SET >= Static at high sparsity, and gradual pruning "
                              ">= RigL at the same budget (the RigL paper's ordering).",
         "how": "comparisons rigl vs set, set vs static, gmp vs rigl per model and sparsity"},
    ],
}

# -- dst_fashion_mnist, converged tier -----------------------------------------------
#
# RigL's MNIST protocol (rigl/mnist/mnist_train_eval.py): mask updates every
# 100 steps until step 50,000 of 120,000 (5/12 of training), drop fraction
# 0.3 cosine, grow_init 0; its pruning baseline prunes from step 2,000 to
# 30,000 (1/60 to 1/4 of training). Every DST method shares RigL's schedule
# (as the RigL paper runs SET and Static); SNFS keeps its own (per epoch,
# prune rate 0.5 cosine, momentum redistribution).

RIGL_MNIST = {"delta_t": 100, "drop_schedule": "cosine", "alpha": 0.3,
              "end_step": "0.416667*total_steps"}
PAPER_EPS = 1e-8  # DST-EE's bonus with a small constant beside N_i


def _converged_methods(s):
    return {
        "static": ("Static", static()),
        "set": ("SET", {"name": "SET", "args": dict(RIGL_MNIST)}),
        "rigl": ("RigL", {"name": "RigL", "args": dict(RIGL_MNIST)}),
        "dstee": ("DST-EE (eps=1)", {"name": "DSTEE", "args": dict(RIGL_MNIST, c=1e-2)}),
        "dstee_paper": ("DST-EE (eps=1e-8)", {"name": "DSTEE", "args": dict(
            RIGL_MNIST, c=1e-2, eps=PAPER_EPS)}),
        "snfs": ("SNFS", snfs()),
    }


def _converged_gmp(sparsity):
    schedule = {"class": "ks.schedules.PolynomialDecay",
                "args": {"initial_sparsity": 0.0, "final_sparsity": sparsity,
                         "begin_step": "0.016667*total_steps", "end_step": "0.25*total_steps",
                         "frequency": 100}}
    return {"name": "GradualMagnitudePruning",
            "args": {"schedule": schedule, "distribution": "erk"}}


MLP1024 = {"name": "mlp", "args": {"widths": [1024, 1024]}}


def _fmnist_converged_grid():
    grid, comparisons = [_dense_cell("lenet300", LENET300)], []
    for s in FMNIST_SPARSITIES:
        for key, (label, method) in _converged_methods(s).items():
            grid.append(cell(f"lenet300_{key}_{tag(s)}", label, "lenet300", s,
                             {"model": LENET300, "method": method, "sparsity": s,
                              "sparsify": {}}))
        grid.append(cell(f"lenet300_gmp_{tag(s)}", "GMP", "lenet300", s,
                         {"model": LENET300, "method": _converged_gmp(s), "sparsity": s,
                          "sparsify": {"start_sparsity": 0.0}}))
        small, _ = small_dense("lenet300", s)
        grid.append(cell(f"lenet300_smalldense_{tag(s)}", "small dense", "lenet300", s,
                         {"model": small, "method": None}))
        comparisons += _pairs("lenet300", s, FMNIST_PAIRS + [
            ("dstee_paper", "set"), ("dstee_paper", "rigl"), ("dstee_paper", "dense"),
            ("dstee_paper", "dstee")])
    # An over-parameterised MLP, where "matches dense" (D2) can be tested.
    grid.append(_dense_cell("mlp1024", MLP1024))
    for s in (0.9, 0.95):
        for key in ("rigl", "dstee", "dstee_paper"):
            label, method = _converged_methods(s)[key]
            grid.append(cell(f"mlp1024_{key}_{tag(s)}", label, "mlp1024", s,
                             {"model": MLP1024, "method": method, "sparsity": s,
                              "sparsify": {}}))
        comparisons += _pairs("mlp1024", s, [("dstee", "rigl"), ("dstee_paper", "rigl"),
                                             ("dstee", "dense"), ("dstee_paper", "dense"),
                                             ("rigl", "dense")])
    for c in grid:
        c["baseline"] = f"{c['group']}_dense"
    return grid, comparisons


FMNIST_CONVERGED_GRID, FMNIST_CONVERGED_COMPARISONS = _fmnist_converged_grid()
DST_FASHION_MNIST["presets"]["converged"] = converged_preset()
DST_FASHION_MNIST["tiers"] = {"converged": {
    "grid": FMNIST_CONVERGED_GRID, "comparisons": FMNIST_CONVERGED_COMPARISONS,
    "title": "DST methods on Fashion-MNIST, converged tier: LeNet-300-100 at 90/95/98% "
             "and MLP 1024-1024 at 90/95% (ERK), RigL's MNIST protocol"}}

# -- dst_cifar10 ----------------------------------------------------------------------
#
# No converged tier: the cpu preset measured 77.2 CPU-s for 9,000 ResNet-20
# examples (8.6 ms each), so one epoch of the 50,000 training images costs
# about 430 CPU-s (about 215 s of wall time on 2 idle cores) and the ~30
# epochs ResNet-20 needs to pass 0.80 test accuracy about 1.8 hours per run:
# about 59 hours for the study's 33 runs, against the ~10 hours the converged
# tier has for all studies. Its claims are "not testable on this machine";
# `--preset paper` is the experiment for an accelerator.

# -- dst_cifar10 --------------------------------------------------------------------

RESNET20 = {"name": "resnet20", "args": {}}
CIFAR_SPARSITIES = (0.9, 0.95)
CIFAR_PAIRS = [("dstee", "set"), ("dstee", "rigl"), ("dstee", "dense"), ("rigl", "set"),
               ("set", "static"), ("gmp", "rigl")]


def _cifar_grid():
    grid, comparisons = [_dense_cell("resnet20", RESNET20)], []
    for s in CIFAR_SPARSITIES:
        grid += _sparse_cells("resnet20", RESNET20, s, ("static", "set", "rigl", "dstee"))
        grid.append(_gmp_cell("resnet20", RESNET20, s))
        comparisons += _pairs("resnet20", s, CIFAR_PAIRS)
    return grid, comparisons


CIFAR_GRID, CIFAR_COMPARISONS = _cifar_grid()

DST_CIFAR10 = {
    "name": "dst_cifar10",
    "title": "DST methods on CIFAR-10: ResNet-20 at 90% and 95% (ERK)",
    "recipe": "gradual_resnet20_cifar10",
    "baseline": "resnet20_dense",
    "grid": CIFAR_GRID,
    "comparisons": CIFAR_COMPARISONS,
    "seeds": 3,
    "presets": {
        # SGD momentum 0.9, LR 0.1 divided by 10 at 50% and 75%, weight decay
        # 1e-4 (the recipe's He et al. schedule) for every method.
        # Batch 32 (LR / 4) so BatchNorm's moving statistics see ~280 steps:
        # at batch 128 (96 steps) test accuracy lagged train accuracy badly.
        "cpu": preset(3, 3000, eval_subset=5000, batch_size=32,
                      optimizer={"args": {"learning_rate": {"args": {
                          "values": [0.025, 0.0025, 0.00025]}}}}),
        "paper": preset(164, None, egf_examples=1000),
    },
    "claims": [
        {"id": "D1", "claim": "DST-EE beats SET and RigL at the same sparsity.",
         "how": "comparisons resnet20_dstee_<s> vs resnet20_set_<s>, resnet20_rigl_<s>"},
        {"id": "D2", "claim": "DST-EE matches or beats the dense network (the paper: "
                              "ResNet-50/CIFAR-10).",
         "how": "comparisons resnet20_dstee_<s> vs resnet20_dense"},
        {"id": "R1", "claim": "RigL >= SET >= Static, and gradual pruning >= RigL.",
         "how": "comparisons rigl vs set, set vs static, gmp vs rigl"},
    ],
}

# -- dstee_exploration ---------------------------------------------------------------

EXPLORATION_CS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
STEPS_CS = (1e-5, 1e-4, 1e-3, 1e-2)
RELATIVE_CS = (0.1, 1.0, 10.0)


def _exploration_grid():
    s, group, model = 0.98, "lenet300", MODELS["lenet300"]
    base = {"model": model, "sparsity": s, "sparsify": {}}
    grid = [cell("rigl", "RigL", group, s, dict(base, method=rigl()))]
    grid += [cell(f"dstee_c{c:g}", f"DST-EE c={c:g}", group, s, dict(base, method=dstee(c)))
             for c in EXPLORATION_CS]
    grid += [cell(f"dstee_steps_c{c:g}", f"DST-EE c={c:g} t=steps", group, s,
                  dict(base, method=dstee(c, t="steps"))) for c in STEPS_CS]
    grid += [cell(f"dstee_rel_c{c:g}", f"DST-EE c={c:g}*mean|g|", group, s,
                  dict(base, method=dstee(c, c_scale="relative"))) for c in RELATIVE_CS]
    return grid


DSTEE_EXPLORATION = {
    "name": "dstee_exploration",
    "title": "DST-EE exploration bonus: c sweep vs RigL, LeNet-300-100 / Fashion-MNIST at 98%",
    "recipe": "quickstart",
    "baseline": "rigl",
    "grid": _exploration_grid(),
    "comparisons": [],
    "seeds": 3,
    "presets": {
        "cpu": preset(5, None, optimizer=adam(1e-3), batch_size=128),
        "paper": preset(30, None, optimizer=adam(1e-3), batch_size=128, egf_examples=1000),
    },
    "claims": [
        {"id": "D1", "claim": "DST-EE beats RigL at 98% sparsity (for some c in the "
                              "paper's range 1e-5 to 1e-2).",
         "how": "each dstee_* cell vs rigl (paired, Holm); dst/itop, dst/grown_ever and "
                "dst/regrown_fraction show whether the bonus changes the masks"},
    ],
}

# -- nm_dst ------------------------------------------------------------------------------
#
# The accuracy cost of N:M structure in dynamic sparse training: RigL and SET
# with NM(2, 4) (50%) and NM(1, 4) (75%) against the same method unstructured
# at the same sparsity, and against gradual magnitude pruning with the same
# structure. Every arm splits its sparsity "uniform" across layers, as N:M
# does (each layer holds n of every m). LeNet-300-100's kernels (784, 300,
# 100 inputs) all divide by 4.

NM_STRUCTURES = {0.5: ("nm24", "2:4"), 0.75: ("nm14", "1:4")}


def _nm_cells(group, model, sparsity):
    key, structure = NM_STRUCTURES[sparsity]
    t = tag(sparsity)
    base = {"model": model, "sparsity": sparsity, "distribution": "uniform"}
    cells = []
    for name, (label, method) in (("rigl", SPARSE["rigl"]), ("set", SPARSE["set"])):
        cells.append(cell(f"{group}_{name}_{key}", f"{label} {structure}", group, sparsity,
                          dict(base, method=method(), sparsify={"structure": structure})))
        cells.append(cell(f"{group}_{name}_{t}", label, group, sparsity,
                          dict(base, method=method(), sparsify={})))
    schedule_gmp = gmp(sparsity)
    schedule_gmp["args"]["distribution"] = "uniform"
    cells.append(cell(f"{group}_gmp_{key}", f"GMP {structure}", group, sparsity,
                      dict(base, method=schedule_gmp,
                           sparsify={"start_sparsity": 0.0, "structure": structure})))
    return cells


def _nm_grid():
    group, model = "lenet300", MODELS["lenet300"]
    grid, comparisons = [_dense_cell(group, model)], []
    for s, (key, _) in NM_STRUCTURES.items():
        grid += _nm_cells(group, model, s)
        t = tag(s)
        comparisons += [[f"{group}_{m}_{key}", f"{group}_{m}_{t}"] for m in ("rigl", "set")]
        comparisons += [[f"{group}_{m}_{key}", f"{group}_gmp_{key}"] for m in ("rigl", "set")]
    return grid, comparisons


NM_GRID, NM_COMPARISONS = _nm_grid()

NM_DST = {
    "name": "nm_dst",
    "title": "N:M dynamic sparse training: RigL and SET with 2:4 and 1:4 vs unstructured "
             "and GMP, LeNet-300-100 / Fashion-MNIST",
    "recipe": "quickstart",
    "baseline": "lenet300_dense",
    "grid": NM_GRID,
    "comparisons": NM_COMPARISONS,
    "seeds": 3,
    "presets": {
        "cpu": preset(5, 10000, optimizer=adam(1e-3), batch_size=128),
        "paper": preset(30, None, optimizer=adam(1e-3), batch_size=128, egf_examples=1000),
    },
    "claims": [
        {"id": "S1", "claim": "Measurement, not a claim: the accuracy cost of N:M structure "
                              "in RigL and SET at 50% (2:4) and 75% (1:4) sparsity.",
         "how": "comparisons <method>_nm24 vs <method>_s50 and <method>_nm14 vs "
                "<method>_s75 (paired over seeds)"},
        {"id": "S2", "claim": "Measurement: N:M drop-and-grow against gradual magnitude "
                              "pruning to the same structure.",
         "how": "comparisons <method>_<nm> vs gmp_<nm>"},
    ],
}

STUDIES = [DST_FASHION_MNIST, DST_CIFAR10, DSTEE_EXPLORATION, NM_DST]
