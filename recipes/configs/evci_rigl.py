"""RigL (Evci et al. 2020): WRN-22-2 on CIFAR-10, ResNet-50 on ImageNet."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, resnet50_imagenet, sgd, steps

PAPER = ("Evci, Gale, Menick, Castro, Elsen 2020, Rigging the Lottery: Making All "
         "Tickets Winners, ICML")
README = "github.com/google-research/rigl README, '1x Training Results' table"

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
    "published": [{"setting": "RigL (ERK) WRN-22-2 CIFAR-10, 90%", "metric": "test accuracy",
                   "value": None, "source": PAPER,
                   "note": "the paper plots CIFAR-10 results (accuracy vs sparsity); "
                           + UNCHECKED}],
    "notes": "Paper preset from the official code's flags (steps, LR schedule, "
             "momentum, mask-update interval and end). interpretation: the L2 "
             "penalty 5e-4 is applied as Keras SGD weight_decay (the same for "
             "plain SGD, slightly different with momentum).",
    "presets": {"paper": {},
                "cpu": cpu(method={"args": {"delta_t": 10}})},
}


def _resnet50_imagenet(sparsity, accuracy):
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
             "value": 76.8, "source": README},
        ],
        notes="interpretation: 100 epochs at batch 4096 stand for the "
              "paper's 1x schedule; weight decay is Keras SGD weight_decay.",
    )


RECIPES = [WRN, _resnet50_imagenet(0.8, 75.12), _resnet50_imagenet(0.9, 73.07)]
