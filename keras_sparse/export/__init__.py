"""Export for TF Serving (versioned SavedModels, dense or with sparse kernels) and TFLite.

```python
path = ks.export.export_for_serving(model, "saved_models/mlp", sparse_format="auto")
print(ks.export.report(path)["kernels"])  # per layer: timings and the kernel chosen
```
"""

from keras_sparse.export.report import report
from keras_sparse.export.serving import SPARSE_FORMATS, export_for_serving
from keras_sparse.export.tflite import export_tflite

__all__ = ["SPARSE_FORMATS", "export_for_serving", "export_tflite", "report"]
