"""keras_sparse: sparse neural-network training for Keras 3.

```python
import keras_sparse as ks
model = ks.sparsify(dense_model, 0.9, distribution="erk")
model.compile(...)
model.fit(x, y, callbacks=[ks.callbacks.RigL()])
```
"""

from keras_sparse import analysis, callbacks, data, diagnostics, distributions, export, layers, models, pruning, schedules
from keras_sparse.conversion import sparsify, sparsity_report, strip
from keras_sparse.model import SparseModel

__version__ = "0.1.0"
