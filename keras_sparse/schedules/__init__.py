"""Pruning schedules: `schedule(step) -> (should_prune, sparsity)` (tfmot's protocol)."""

from keras_sparse.schedules.pruning_schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    deserialize,
    serialize,
)
