"""`DensityTrace`: the compute-weighted density of the kernels at every step, and FLOPs.

```python
from recipes.density_trace import DensityTrace
trace = DensityTrace(batch_size=128)
model.fit(train, epochs=3, callbacks=[trace])
trace.per_epoch, trace.flops, trace.reads   # reads: times the masks were summed
```
"""

import math

import keras
import tensorflow as tf


class DensityTrace(keras.callbacks.Callback):
    """Records the compute-weighted density of the kernels each step, and FLOPs.

    The density of a step is `sum_l macs_l * active_l / sum_l macs_l *
    size_l` over the kernels (the prunable weights of a sparse model, every
    `kernel` of a dense one), `macs_l` the multiply-adds per weight and
    example of layer `l` (1 for a Dense kernel, the output's spatial size
    for a convolution), read from the masks before the step. Summed over
    steps it gives the training cost in dense-equivalent epochs of the
    model trained; `flops` estimates the training FLOPs of the kernels as
    `6 * sum_steps sum_l macs_l * active_l * batch_size` (2 FLOPs per
    multiply-add, backward twice the forward; interpretation: biases,
    normalisation, the dense gradients some methods read at update steps and
    a smaller last batch are not counted). Also records the sparsity at the
    start and at each epoch end.

    The per-step sum is accumulated on the device and read once per epoch
    (reading the masks on the host every step doubled the step time of a
    LeNet-300-100 on a loaded 2-core machine), and the masks are summed only
    when one changed: each parameter's `mask_version` counts its changes,
    and the weighted active count is kept between changes.

    Args:
        batch_size: examples per step (for `flops`).

    Attributes:
        per_epoch: mean density per epoch.
        steps: dense-equivalent steps so far.
        flops: estimated training FLOPs of the kernels so far.
        start_sparsity, end_sparsity: at `on_train_begin`; at each epoch end.
        reads: how many times the masks were summed on the device.

    Example:

    ```python
    trace = DensityTrace(64)
    model.fit(x, y, batch_size=64, callbacks=[trace])
    dense_equivalent_epochs = trace.steps / steps_per_epoch
    ```
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.steps, self.flops, self.per_epoch, self.end_sparsity = 0.0, 0.0, [], []
        self.start_sparsity = 0.0
        self._kernels = []

    def set_model(self, model):
        super().set_model(model)
        masked = getattr(model, "masked_weights", None) or []
        if masked:
            self._kernels = [(p.variable, p.mask, p.mask_version,
                              _macs_per_weight(p.layer, p.variable)) for p in masked]
        else:
            self._kernels = [(w, None, None, _macs_per_weight(layer, w))
                             for layer in model.layers for w in layer.weights
                             if w.path.endswith("kernel")]
        self._full = sum(m * math.prod(w.shape) for w, _, _, m in self._kernels)
        self._sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self._active = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self._seen = tf.Variable(-1, dtype=tf.int64, trainable=False)  # -1: never read
        self._reads = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._add = tf.function(self._accumulate)

    @property
    def reads(self):
        """How many times the masks were summed (once, plus once per change)."""
        return int(self._reads.numpy())

    def _version(self):
        """The sum of the masks' change counters: moves whenever a mask changes."""
        versions = [tf.convert_to_tensor(v) for _, _, v, _ in self._kernels if v is not None]
        return tf.add_n(versions) if versions else tf.constant(0, tf.int64)

    def _weighted_active(self):
        """`sum_l macs_l * active_l` as a float64 tensor (no host read)."""
        total = tf.constant(0.0, tf.float64)
        for w, mask, _, m in self._kernels:
            active = (float(math.prod(w.shape)) if mask is None else
                      tf.reduce_sum(tf.cast(tf.convert_to_tensor(mask), tf.float64)))
            total += m * active
        return total

    def _accumulate(self):
        version = self._version()

        def recompute():
            self._seen.assign(version)
            self._reads.assign_add(1)
            return self._active.assign(self._weighted_active())

        active = tf.cond(tf.equal(version, self._seen), lambda: tf.identity(self._active),
                         recompute)
        self._sum.assign_add(active)

    def sparsity(self):
        size = sum(math.prod(w.shape) for w, _, _, _ in self._kernels)
        active = sum(math.prod(w.shape) if mask is None else float(keras.ops.sum(mask))
                     for w, mask, _, _ in self._kernels)
        return 1.0 - active / size if size else 0.0

    def on_train_begin(self, logs=None):
        self.start_sparsity = self.sparsity()

    def on_epoch_begin(self, epoch, logs=None):
        self._sum.assign(0.0)
        self._count = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._add()
        self._count += 1

    def on_epoch_end(self, epoch, logs=None):
        macs = float(self._sum.numpy())
        density = macs / self._full if self._full else float(self._count)
        self.per_epoch.append(density / max(self._count, 1))
        self.steps += density
        self.flops += 6.0 * macs * self.batch_size
        self.end_sparsity.append(self.sparsity())


def _macs_per_weight(layer, weight):
    """Multiply-adds per weight and example: the output's spatial size for a conv."""
    if len(weight.shape) <= 2:
        return 1
    try:
        return max(1, math.prod(layer.output.shape[1:-1]))
    except (AttributeError, ValueError, TypeError):
        return 1
