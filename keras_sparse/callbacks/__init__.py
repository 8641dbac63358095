"""Keras callbacks that train sparse networks.

The named methods (`SET`, `RigL`, `SNFS`, `DSTEE`) are presets of
`DynamicSparsity`, which is built from parts exported here too: drop and
grow rules (`Magnitude`, `Random`, `Gradient`, `Momentum`, `Exploration`,
added with `+`), the `MeanScoreRedistribution` of regrowth across layers,
and the drop-fraction schedules (`drop_schedules`: `CosineDecay`,
`Constant`, `LinearDecay`; base class `DropSchedule`). A new method can
also be written from the `UpdateClock` (which steps to act on) and the
model's parameters (`model.masked_weights`: `read()`, `mask`,
`assign_mask`).

```python
grow = ks.callbacks.Gradient() + ks.callbacks.Exploration(c=1e-4)
model.fit(x, y, callbacks=[ks.callbacks.DynamicSparsity(grow=grow)])
```
"""

from keras_sparse.callbacks import drop_schedules
from keras_sparse.callbacks.base import MaskCallback
from keras_sparse.callbacks.clock import UpdateClock
from keras_sparse.callbacks.dissipating import DissipatingGradients
from keras_sparse.callbacks.drop_grow import (
    Exploration,
    Gradient,
    LayerUpdate,
    Magnitude,
    MeanScoreRedistribution,
    Momentum,
    Random,
    Rule,
    Sum,
)
from keras_sparse.callbacks.drop_schedules import DropSchedule
from keras_sparse.callbacks.dynamic import DynamicSparsity
from keras_sparse.callbacks.egf import EGFLogger
from keras_sparse.callbacks.gradual import GradualMagnitudePruning
from keras_sparse.callbacks.kstarts import KStarts
from keras_sparse.callbacks.presets import DSTEE, SET, SNFS, RigL
from keras_sparse.callbacks.oneshot import OneShotPruning
from keras_sparse.callbacks.static import Static

__all__ = [
    "DSTEE",
    "SET",
    "SNFS",
    "DissipatingGradients",
    "DropSchedule",
    "DynamicSparsity",
    "EGFLogger",
    "Exploration",
    "Gradient",
    "GradualMagnitudePruning",
    "KStarts",
    "LayerUpdate",
    "Magnitude",
    "MaskCallback",
    "MeanScoreRedistribution",
    "Momentum",
    "OneShotPruning",
    "Random",
    "RigL",
    "Rule",
    "Static",
    "Sum",
    "UpdateClock",
    "drop_schedules",
]
