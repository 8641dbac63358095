"""Export for TF Serving (SPEC §9): versioned SavedModels, optionally CSR.

```python
path = ks.export.export_for_serving(model, "saved_models/mlp", sparse_format="csr")
print(ks.export.report(path)["gzip_bytes"])
```
"""

from keras_sparse.export.report import report
from keras_sparse.export.serving import SPARSE_FORMATS, export_for_serving
