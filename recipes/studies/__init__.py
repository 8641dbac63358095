"""The study registry: every study is a plain dict (data, no code).

A study runs one recipe over a grid of cells times seeds (`python -m recipes
study NAME`). It holds:

- `name`, `title`, `recipe` (a recipe name, see `recipes.configs`);
- `grid`: a list of cells, each `{"name": <unique, used as a directory>,
  "overrides": {...}}` plus optional `"method"` (the label used in tables,
  plots and the ranking; default the cell name), `"group"` (cells compared
  and ranked together, e.g. one model; default ""), `"sparsity"` (the
  nominal sparsity in tables and plots; default the config's `sparsity`,
  0 for dense training) and `"baseline"` (this cell's baseline cell, when
  it is not the study's);
- `baseline`: the cell every other cell is tested against (paired over
  seeds), unless a cell names its own;
- `comparisons`: optional `[[a, b], ...]` cell pairs also tested (`a`
  against `b`), Holm-corrected together;
- `seeds`: the number of seeds (0, 1, ..., N-1);
- `presets`: `{"cpu": {...}, "paper": {...}, "converged": {...}}`,
  overrides applied to every cell before the cell's own (the recipe's own
  preset of that name is applied first); a study runs only the presets it
  lists;
- `tiers`: optional `{preset: {...}}` whose keys (`grid`, `comparisons`,
  `baseline`, `seeds`, `title`, `claims`, `protocol`) replace the study's
  under that preset: the converged tier runs the paper's algorithm
  readings, which are other cells than the quick tier's;
- `claims`: `[{"id", "claim", "cells"/"how"}]`, the claims the study tests.

Overrides merge into the recipe config like recipe presets (dicts key by
key), except `method`, `sparsify` and `baseline`, which a cell replaces
whole (a cell's method never inherits another method's arguments).
"""

from recipes.studies import dst, haroon

STUDIES = {study["name"]: study for module in (dst, haroon) for study in module.STUDIES}


def names():
    """The study names, in registry order."""
    return list(STUDIES)


def get(name, preset=None):
    """The study called `name`, as it runs under `preset` (None: as defined).

    Raises:
        ValueError: an unknown study (naming the known ones) or a preset the
            study does not have (naming the ones it has).
    """
    if name not in STUDIES:
        raise ValueError(f"Unknown study: name={name!r}. Known studies: {', '.join(STUDIES)}.")
    study = STUDIES[name]
    if preset is None:
        return study
    if preset not in study["presets"]:
        raise ValueError(f"Study {name!r} has no preset {preset!r}; its presets: "
                         f"{', '.join(study['presets'])}.")
    return {**study, **study.get("tiers", {}).get(preset, {})}
