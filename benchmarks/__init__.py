"""Benchmarks of keras_sparse against dense Keras and tfmot, side by side.

`python -m benchmarks run [--quick] [--only NAME]` runs them, writes
`benchmarks/results/<NAME>.json` and regenerates `benchmarks/BENCHMARKS.md`;
`python -m benchmarks list` names them. Each module in `NAMES` has `NAME`,
`TITLE`, `TARGETS` and `run(settings) -> dict` (see `harness.run`).
"""

# Report order; each is a module of this package.
NAMES = ("train_step", "sparse_train_step", "mask_update", "gradual_vs_tfmot", "export", "memory",
         "tflite")
