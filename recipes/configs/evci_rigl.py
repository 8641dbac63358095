"""RigL (Evci et al. 2020): WRN-22-2 on CIFAR-10, ResNet-50 on ImageNet."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, resnet50_imagenet, sgd, steps

PAPER = ("Evci, Gale, Menick, Castro, Elsen 2020, Rigging the Lottery: Making All "
         "Tickets Winners, ICML")
README = "github.com/google-research/rigl README, '1x Training Results' table"
README_DENSE = ("github.com/google-research/rigl README, 'Extended Training Results' table, "
                "row '- (DENSE)'")
REPRO = ("Sundar, Dwaraknath 2021, [Re] Rigging the Lottery: Making All Tickets Winners, "
         "ReScience C (ML Reproducibility Challenge 2020), doi:10.5281/zenodo.4835564, "
         "arXiv:2103.15767")
REPRO_TABLE = (REPRO + ", Table 2; also github.com/varun19299/rigl-reproducibility "
               "docs/main_results.rst 'Table of Results' (80% sparsity, CIFAR-10)")

WRN = {
    "name": "rigl_wrn22_2_cifar10",
    "title": "RigL WRN-22-2 / CIFAR-10 at 90% sparsity (ERK)",
    "paper": PAPER,
    "model": {"name": "wrn", "args": {"depth": 22, "width": 2}},
    "data": {"name": "cifar10"},
    "batch_size": 128,
    "epochs": 250,
    # Official code (rigl/cifar_resnet): 97,656 steps, Nesterov momentum 0.9,
    # LR 0.1 divided by 5 at steps 30k/60k/90k, L2 5e-4, mask updates every
    # 100 steps until step 75k.
    "optimizer": sgd(piecewise([0.3072, 0.6144, 0.9216], [0.1, 0.02, 0.004, 0.0008]),
                     weight_decay=5e-4),
    "method": {"name": "RigL", "args": {"delta_t": 100, "alpha": 0.3, "drop_schedule": "cosine",
                                        "end_step": steps(0.768)}},
    "sparsity": 0.9,
    "distribution": "erk",
    "published": [
        {"setting": "RigL (ERK) WRN-22-2 CIFAR-10, 90%", "metric": "test accuracy",
         "value": None, "source": PAPER,
         "note": "the paper plots CIFAR-10 results (accuracy vs sparsity); " + UNCHECKED},
        # A reproduction's numbers (PyTorch re-implementation, mean of 3 seeds,
        # 45k training examples), at 80% sparsity: compare with overrides
        # {"sparsity": 0.8}. "Random" is the report's uniform layer sparsity.
        *[{"setting": f"{method} WRN-22-2 CIFAR-10, 80%", "metric": "test accuracy (%)",
           "value": value, "source": REPRO_TABLE}
          for method, value in [("RigL (ERK)", 93.1), ("RigL (Random)", 92.6),
                                ("SET (ERK)", 92.9), ("SET (Random)", 92.7),
                                ("Static (Random)", 91.2), ("Small dense", 91.0),
                                ("Gradual pruning (Zhu & Gupta)", 93.2)]],
        {"setting": "dense WRN-22-2 CIFAR-10", "metric": "test accuracy (%)", "value": 94.1,
         "source": REPRO + ", section 4.2 (the value the RigL authors report, as quoted "
                           "there; the reproduction's own dense run: 93.4)"},
    ],
    "budget": {"value": "~2 h/run on 1 GTX 1080 (a reproduction)",
               "note": "the RigL paper states no hardware; figure from the reproduction's "
                       "summary (PyTorch, 250 epochs)",
               "source": REPRO + ", Reproducibility Summary"},
    "notes": "Paper preset from the official code's flags (steps, LR schedule, "
             "momentum, mask-update interval and end). interpretation: the L2 "
             "penalty 5e-4 is applied as Keras SGD weight_decay (the same for "
             "plain SGD, slightly different with momentum).",
    "presets": {"paper": {},
                "cpu": cpu(method={"args": {"delta_t": 10}})},
}


def _resnet50_imagenet(sparsity, accuracy, flops):
    tag = int(round(sparsity * 100))
    return resnet50_imagenet(
        name=f"rigl_resnet50_imagenet_s{tag}",
        title=f"RigL ResNet-50 / ImageNet at {tag}% sparsity (ERK, 1x training)",
        paper=PAPER,
        method={"name": "RigL", "args": {"delta_t": 100, "alpha": 0.3,
                                         "drop_schedule": "cosine"}},
        sparsity=sparsity,
        published=[
            {"setting": f"RigL (ERK) {tag}%, 1x", "metric": "top-1 accuracy (%)",
             "value": accuracy, "source": README},
            {"setting": "dense ResNet-50", "metric": "top-1 accuracy (%)",
             "value": 76.8, "source": README_DENSE},
        ],
        budget={"value": f"training FLOPs {flops} of dense (3.2e18)",
                "note": "the README states training FLOPs, not accelerators or hours",
                "source": README + " ('Training FLOPs' column) and 'Extended Training "
                          "Results' table (dense row)"},
        notes="interpretation: 100 epochs at batch 4096 stand for the "
              "paper's 1x schedule; weight decay is Keras SGD weight_decay.",
    )


RECIPES = [WRN, _resnet50_imagenet(0.8, 75.12, "0.42x"), _resnet50_imagenet(0.9, 73.07, "0.24x")]
