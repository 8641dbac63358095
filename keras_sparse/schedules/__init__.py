"""Pruning schedules: `schedule(step) -> (should_prune, sparsity)` (tfmot's protocol).

These drive `ks.callbacks.GradualMagnitudePruning`. The drop-fraction
schedules of dynamic sparse training are a different protocol and live in
`ks.callbacks` (`drop_schedule=`).
"""

from keras_sparse.schedules.pruning_schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    check_schedule,
    deserialize,
    serialize,
)

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "check_schedule",
    "deserialize",
    "serialize",
]
