"""Export for TF Serving: versioned SavedModels, optionally with CSR kernels.

`export_for_serving` writes `base_dir/VERSION/` as TF Serving expects it
(its `model_base_path`); `report` says what a version stores and its size.

```python
path = ks.export.export_for_serving(model, "saved_models/mlp", sparse_format="csr")
print(ks.export.report(path)["gzip_bytes"])
```
"""

from keras_sparse.export.report import report
from keras_sparse.export.serving import SPARSE_FORMATS, export_for_serving

__all__ = ["SPARSE_FORMATS", "export_for_serving", "report"]
