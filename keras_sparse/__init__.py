"""keras_sparse: sparse neural-network training for Keras 3.

```python
import keras_sparse as ks
model = ks.sparsify(dense_model, 0.9, distribution="erk")
model.compile(...)
model.fit(x, y, callbacks=[ks.callbacks.RigL()])
```

Importing the package changes no environment variable, logging level or
Keras setting, and loads neither tensorflow-datasets nor matplotlib
(`ks.data` imports tensorflow-datasets on first use).
"""

from keras_sparse import (
    analysis,
    applications,
    callbacks,
    data,
    diagnostics,
    distributions,
    export,
    layers,
    parameters,
    pruning,
    schedules,
    structures,
    utils,
)
from keras_sparse.conversion import sparsify, sparsity_report, strip
from keras_sparse.model import SparseModel
from keras_sparse.parameters import count_params, summary

__version__ = "0.1.0"

__all__ = [
    "SparseModel",
    "analysis",
    "applications",
    "callbacks",
    "count_params",
    "data",
    "diagnostics",
    "distributions",
    "export",
    "layers",
    "parameters",
    "pruning",
    "schedules",
    "sparsify",
    "sparsity_report",
    "strip",
    "structures",
    "summary",
    "utils",
]
