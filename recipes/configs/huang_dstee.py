"""DST-EE (Huang et al. 2023): VGG-19 and ResNet-50 on CIFAR, ResNet-50 on ImageNet."""

from recipes.configs.common import UNCHECKED, cpu, piecewise, resnet50_imagenet, sgd

PAPER = ("Huang, Lei, Xu, Peng, Sun, Xie, Ding 2023, Dynamic Sparse Training via "
         "Balancing the Exploration-Exploitation Trade-off, DAC")
# The paper preset drops 50% (cosine) every 1000 steps.
METHOD = {"name": "DSTEE", "args": {"c": 1e-5, "alpha": 0.5, "delta_t": 1000,
                                    "drop_schedule": "cosine"}}
NOTES = ("DST-EE rule and paper preset (alpha 0.5 cosine, delta_t 1000) as in docs/dynamic-sparse-training.md; "
         "c = 1e-5 (the paper sweeps 1e-5 to 1e-2; ks.callbacks.DSTEE defaults to 1e-2, "
         "which the dstee_exploration study found to be the only value of that range that "
         "changed RigL's masks on LeNet-300-100, see RESULTS.md). interpretation: the optimizer, "
         "LR schedule and epochs follow the usual CIFAR dynamic-sparse-training "
         "setup (SGD momentum 0.9, LR 0.1 divided by 10 at 50% and 75%, weight "
         "decay 5e-4, 160 epochs), not checked against the paper's text.")


def _cifar(model, label, dataset, classes_note, sparsity):
    tag = int(round(sparsity * 100))
    return {
        "name": f"dstee_{label}_{dataset}_s{tag}",
        "title": f"DST-EE {classes_note} at {tag}% sparsity (ERK)",
        "paper": PAPER,
        "model": model,
        "data": {"name": dataset},
        "batch_size": 128,
        "epochs": 160,
        "optimizer": sgd(piecewise([0.5, 0.75], [0.1, 0.01, 0.001]), nesterov=False,
                         weight_decay=5e-4),
        "method": METHOD,
        "sparsity": sparsity,
        "distribution": "erk",
        "published": [{"setting": f"DST-EE {classes_note}, {tag}%", "metric": "test accuracy",
                       "value": None, "source": PAPER, "note": UNCHECKED}],
        "notes": NOTES + (" The model is keras.applications ResNet-50 at 32x32 "
                          "(ImageNet stem), not a CIFAR-adapted stem."
                          if model["name"] == "resnet50" else ""),
        "presets": {"paper": {},
                    "cpu": cpu(method={"args": {"delta_t": 10}})},
    }


def _imagenet(sparsity):
    tag = int(round(sparsity * 100))
    return resnet50_imagenet(
        name=f"dstee_resnet50_imagenet_s{tag}",
        title=f"DST-EE ResNet-50 / ImageNet at {tag}% sparsity (ERK)",
        paper=PAPER,
        method=METHOD,
        sparsity=sparsity,
        published=[{"setting": f"DST-EE ResNet-50 ImageNet, {tag}%",
                    "metric": "top-1 accuracy (%)", "value": None, "source": PAPER,
                    "note": UNCHECKED}],
        notes="DST-EE rule and paper preset as in docs/dynamic-sparse-training.md. interpretation: "
              "RigL's ImageNet training setup (batch 4096, 100 epochs, LR 1.6 "
              "divided by 10 at epochs 30/70/90, label smoothing 0.1).",
    )


VGG19 = {"name": "vgg19", "args": {}}
RESNET50 = {"name": "resnet50", "args": {}}
RECIPES = (
    [_cifar(VGG19, "vgg19", "cifar100", "VGG-19 / CIFAR-100", s) for s in (0.9, 0.95, 0.98)]
    + [_cifar(RESNET50, "resnet50", "cifar10", "ResNet-50 / CIFAR-10", s) for s in (0.9, 0.95, 0.98)]
    + [_cifar(RESNET50, "resnet50", "cifar100", "ResNet-50 / CIFAR-100", s)
       for s in (0.9, 0.95, 0.98)]
    + [_imagenet(s) for s in (0.8, 0.9, 0.95, 0.98)]
)
