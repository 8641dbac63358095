"""The recipe registry: every recipe is a plain dict (data, no code).

A recipe holds:

- `name`, `title`, `paper`: identification (the paper as a citation);
- `model`: `{"name": <ks.models name>, "args": {...}}` (`input_shape` and
  `num_classes` come from the dataset);
- `data`: `{"name": <ks.data name>, "train_split", "eval_split", "subset",
  "eval_subset", "augment"}` (`subset`/`eval_subset`: first N examples, or
  None for all);
- `batch_size`, `epochs`;
- `optimizer`: an object spec `{"class": "keras.optimizers.SGD", "args":
  {...}}`; any `args` value may itself be an object spec (an LR schedule);
- `label_smoothing`: 0.0, or the smoothing of a one-hot cross-entropy;
- `validation_freq`: evaluate on the eval split every N epochs (1); the
  final test accuracy needs N to divide `epochs` (studies set N = epochs);
- `method`: `None` (dense training), `{"name": <ks.callbacks name>,
  "args": {...}}` (`Static`, `RigL`, `SET`, `SNFS`, `DSTEE`,
  `GradualMagnitudePruning`, `KStarts`, ...), or a list of them used
  together (callbacks that take a `seed` get the run's seed unless given);
- `sparsity`, `distribution`, `mask_init` and `sparsify` (extra
  `ks.sparsify` arguments: `dense_layers`, `custom`, `scale_init`, ...;
  `start_sparsity` there overrides `sparsity` at conversion, e.g. 0.0 for
  gradual pruning from dense);
- `egf`: `{"num_examples": 1000, "every": "epoch"}` for `EGFLogger`;
- `baseline`: `None` or overrides giving a second model trained with the
  same budget (e.g. `{"label": "dense", "method": None}`);
- `published`: a list of `{"setting", "metric", "value", "source"}`;
  `value` is None where the number could not be checked (see `note`);
- `notes`: what is taken from the paper and what is an interpretation;
- `presets`: `{"paper": {...}, "cpu": {...}}`, overrides merged into the
  recipe (dicts merge key by key, anything else replaces).

Any string `"<x>*total_steps"`, `"<x>*steps_per_epoch"`, `"total_steps"` or
`"steps_per_epoch"` in `optimizer` or `method` args becomes an integer step
count once the data (and `--epochs`) are known.
"""

from recipes.configs import (
    dettmers_snfs,
    evci_rigl,
    haroon,
    huang_dstee,
    lee_snip,
    mocanu_set,
    quickstart,
    tessera,
    zhu_gupta,
)

RECIPES = {
    recipe["name"]: recipe
    for module in (quickstart, evci_rigl, huang_dstee, mocanu_set, dettmers_snfs,
                   tessera, haroon, zhu_gupta, lee_snip)
    for recipe in module.RECIPES
}


def names():
    """The recipe names, in registry order."""
    return list(RECIPES)


def get(name):
    """The recipe called `name` (ValueError naming the known ones)."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe: name={name!r}. Known recipes: {', '.join(RECIPES)}.")
    return RECIPES[name]
