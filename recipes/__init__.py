"""Recipes: the papers' experiments as configs, run by one runner.

```bash
python -m recipes list
python -m recipes run quickstart
python -m recipes run rigl_wrn22_2_cifar10 --preset paper --seed 1
python -m recipes run rigl_wrn22_2_cifar10 --preset paper --strategy mirrored \
    --mixed-precision --data-dir ~/tensorflow_datasets --download
```

`recipes.launch` holds how a recipe trains (tf.distribute strategy, mixed
precision, XLA, TFDS data preparation); `recipes.listing` renders `list`;
`recipes.flags` the flags of `run` and `study` and which kind of run
refuses which; `recipes.executor` runs every (cell, seed), of a recipe
(`run`, one cell), a study (`recipes.study`) or an analysis study
(`recipes.analysis_studies`).

A recipe is data (`recipes/configs/`, format described there); the runner
(`recipes.runner`) builds the model, data, optimizer and callbacks from it and
calls `model.fit`.
"""
