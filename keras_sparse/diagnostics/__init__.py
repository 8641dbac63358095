"""Diagnostics of sparse training: Effective Gradient Flow and gradient norms.

```python
egf = ks.diagnostics.effective_gradient_flow(model, (x[:1000], y[:1000]), p=2)
```
"""

from keras_sparse.diagnostics.gradient_flow import (
    effective_gradient_flow,
    gradient_flow,
    gradient_norms,
)

__all__ = ["effective_gradient_flow", "gradient_flow", "gradient_norms"]
