"""Analysis tools: same-capacity comparisons, loss-landscape paths, sweeps, statistics.

- `same_capacity`: a dense network and a wider sparse one with exactly as
  many active weights (SC-SDC, Tessera et al. 2021); `sc_sdc` runs the
  sweep over optimizers, activations and regularizers.
- `linear_path`, `bezier_path`, `barrier`: loss along paths between two
  solutions, in the sparse or the dense subspace (Evci et al. 2019);
  `evci_solutions` trains the solutions I, P, S, L compared there.
- `stats` summarises seeds and compares methods (paired tests, Holm
  correction, Kendall's tau); `sweep` runs a grid of cells times seeds,
  resumably, one result file per run.

```python
import keras_sparse as ks
dense, sparse = ks.analysis.same_capacity(build, dense_width=100, sparse_width=400)
points = ks.analysis.linear_path(model, start_weights, end_weights, (x, y))
ks.analysis.barrier(points)
```
"""

from keras_sparse.analysis import stats, sweep
from keras_sparse.analysis.capacity import same_capacity
from keras_sparse.analysis.paths import barrier, bezier_path, linear_path
from keras_sparse.analysis.scsdc import sc_sdc
from keras_sparse.analysis.solutions import evci_solutions

__all__ = [
    "barrier",
    "bezier_path",
    "evci_solutions",
    "linear_path",
    "same_capacity",
    "sc_sdc",
    "stats",
    "sweep",
]
