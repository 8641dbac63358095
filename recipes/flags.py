"""The flags of `python -m recipes run|study`, and which kind of run refuses which, and why.

`run` and `study` take the same flags. A kind of run either uses a flag or
refuses it with the reason (`refused`), before anything is written:

- "recipe": `run NAME`, one recipe and one seed;
- "grid": `study NAME` of a recipe over a grid of cells (`recipes/studies/`);
- "analysis": `study NAME` of an analysis study (`recipes.analysis_studies`);

and with `--aggregate-only` a study trains nothing, so the training flags
are refused too.

```python
parser = argparse.ArgumentParser()
flags.add(parser)
args = parser.parse_args(["quickstart", "--seeds", "2"])
flags.refused("recipe", args)   # ["--seeds: `run` trains one seed (--seed S); ..."]
```
"""

import argparse

from recipes import launch

KINDS = ("recipe", "grid", "analysis")

_NOT_ONE_SEED = ("a study runs seeds 0..N-1 (--seeds N), so that its cells pair by seed "
                 "in the paired tests")
_PRESET_EPOCHS = ("a study's epochs are part of its preset's protocol (and differ between "
                  "its cells); use a preset, or `run` for one recipe")
_NO_EXPORT = "a study exports no model (its runs keep metrics and summaries only)"
_NO_TRAINING = "--aggregate-only trains nothing"

REFUSED = {
    "recipe": {
        "seeds": "`run` trains one seed (--seed S); `study` runs several",
        "cells": "a recipe is one cell; a study's grid has cells",
        "aggregate_only": "a run has nothing to aggregate: its summary.json, table and "
                          "plots are written when it finishes",
    },
    "grid": {"seed": _NOT_ONE_SEED, "epochs": _PRESET_EPOCHS, "export_root": _NO_EXPORT},
    "analysis": {
        "seed": _NOT_ONE_SEED, "epochs": _PRESET_EPOCHS, "export_root": _NO_EXPORT,
        "strategy": "ks.analysis (sc_sdc's runs, evci_solutions, bezier_path) builds and "
                    "trains its networks on the default device and takes no "
                    "tf.distribute strategy",
        "mixed_precision": "the study measures gradient norms, EGF and loss barriers, "
                           "defined here in float32; float16 would change what is measured",
        "jit_compile": "ks.analysis compiles its networks with Keras' default "
                       "(jit_compile='auto') and takes no jit_compile",
    },
}
# With --aggregate-only, on top of the kind's own refusals.
REFUSED_AGGREGATING = {
    "seeds": "--aggregate-only aggregates every finished seed",
    "cells": "--aggregate-only aggregates every finished cell",
    **{flag: _NO_TRAINING for flag in ("strategy", "mixed_precision", "jit_compile",
                                       "data_dir", "download")},
}


def add(parser):
    """Adds every flag of `run` and `study` to an argparse (sub)parser; returns it.

    Args:
        parser: an `argparse.ArgumentParser` (e.g. the `run` subcommand's).
    """
    parser.add_argument("name", help="recipe name (run; see `list`) or study name (study)")
    parser.add_argument("--preset", choices=("cpu", "paper", "converged"), default="cpu",
                        help="cpu: reduced scale (default); paper: the paper's settings; "
                             "converged: the paper's protocol on the whole small dataset, "
                             "trained to a plateau (where defined)")
    parser.add_argument("--epochs", type=int, help="run: override the preset's epochs")
    parser.add_argument("--seed", type=int, help="run: random seed (default 0)")
    parser.add_argument("--seeds", type=int, help="study: number of seeds (default: the "
                                                  "study's)")
    parser.add_argument("--cells", help="study: comma-separated cells to run (grid cells; "
                                        "an analysis study's tasks or parts); default all")
    parser.add_argument("--out", help="output directory (default runs/NAME for run, "
                                      "results/NAME[/PRESET] for study)")
    parser.add_argument("--export-root", help="run: TF Serving export root (default "
                                              "saved_models/)")
    parser.add_argument("--commit", action="store_true",
                        help="git-commit the output after every finished run")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="study: only re-aggregate the finished runs under --out")
    return launch.add_run_options(parser)


def refused(kind, args):
    """`["--flag: reason", ...]` for the flags given in `args` that `kind` does not use.

    Args:
        kind: one of `KINDS`.
        args: the parsed `argparse.Namespace` of `add`'s flags.

    Example:

    ```python
    refused("analysis", parser.parse_args(["evci_paths", "--strategy", "mirrored"]))
    ```
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got kind={kind!r}.")
    reasons = dict(REFUSED[kind])
    if getattr(args, "aggregate_only", False) and kind != "recipe":
        reasons = {**REFUSED_AGGREGATING, **reasons}
    return [f"{_option(flag)}: {reason}" for flag, reason in reasons.items()
            if _given(args, flag)]


def _given(args, flag):
    """Whether `flag` was given (its value differs from the default)."""
    value = getattr(args, flag)
    if flag == "strategy":
        return value != "none"
    if flag == "jit_compile":
        return value is not None  # --no-jit-compile counts
    return value is not None and value is not False  # --seed 0 counts


def _option(flag):
    return "--" + flag.replace("_", "-")


def defaults(args):
    """`args` with the defaults of the flags a kind leaves unset (`--seed` 0)."""
    return argparse.Namespace(**{**vars(args), "seed": 0 if args.seed is None else args.seed})
