"""`EGFLogger`: logs Effective Gradient Flow and gradient norms during `fit`."""

import keras
import tensorflow as tf

from keras_sparse.callbacks.clock import UpdateClock
from keras_sparse.diagnostics.gradient_flow import GradientFlow, as_dataset, check_norms
from keras_sparse.utils.argument_validation import check_int
from keras_sparse.utils.tensorboard import summary_writer

__all__ = ["EGFLogger"]


@keras.saving.register_keras_serializable(package="keras_sparse")
class EGFLogger(keras.callbacks.Callback):
    """Logs Effective Gradient Flow (Tessera et al. 2021) while training.

    On a fixed evaluation set (the first `num_examples` examples of `data`,
    taken once and held for the whole run) it computes the mean gradient of
    the data loss (no regularization) and logs:

    - `egf_l1`, `egf_l2`: `mean_l norm_p(g_l * M_l) / sum(M_l)` over the
      prunable weights (M = 1 for a plain Keras model);
    - `grad_norm_l1`, `grad_norm_l2`: `norm_p(g)` over all trainable weights.

    Values go into the epoch `logs` (History, CSVLogger and the progress bar
    show them; list this callback *before* CSVLogger/TensorBoard callbacks so
    they see the keys) and, with `log_dir`, to TensorBoard. Works with sparse
    and plain models. The gradient is taken in inference mode (see
    `keras_sparse.diagnostics.gradient_flow.GradientFlow`).

    Args:
        data: a `tf.data.Dataset` of `(x, y)` batches (as for `fit`; typically
            the training set without augmentation) or an `(x, y)` tuple of
            arrays.
        every: `"epoch"` (measure at each epoch end) or an integer N (measure
            after every N-th optimizer step; the epoch logs then carry the
            latest values, TensorBoard gets every measurement at its step).
        p: 1, 2 or a tuple of them: which EGF norms to log.
        num_examples: size of the fixed evaluation set (default 1000).
        log_dir: TensorBoard directory (scalars `egf_l1`, ...; step = epoch
            index with `every="epoch"`, else the optimizer step), or None.
        loss: the data loss; default: the model's compiled loss.
        batch_size: batch size for the gradient computation.

    The evaluation data is not part of `get_config()`; pass it again:
    `EGFLogger.from_config({**config, "data": data})`.

    Raises:
        TypeError: `data` is neither a dataset nor an `(x, y)` tuple, or an
            integer argument of the wrong type.
        ValueError: a bad `every`, `p`, `num_examples` or `batch_size`; when
            training starts, a model without a loss or without weights
            `ks.sparsify` can mask.

    Example:

    ```python
    egf = ks.callbacks.EGFLogger((x_train, y_train), num_examples=1000)
    history = model.fit(x_train, y_train, epochs=5,
                        callbacks=[egf, keras.callbacks.CSVLogger("log.csv")])
    history.history["egf_l2"]
    ```
    """

    def __init__(self, data, every="epoch", p=(1, 2), num_examples=1000, log_dir=None,
                 loss=None, batch_size=128):
        super().__init__()
        if every != "epoch":
            if isinstance(every, str):
                raise ValueError(f'`every` must be "epoch" or a positive integer; got every={every!r}.')
            every = check_int(every, "every", minimum=1, allowed=' or "epoch"')
        self.every = every
        self.p = check_norms(p)
        self.num_examples = check_int(num_examples, "num_examples", minimum=1)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.log_dir = log_dir
        self.loss = loss
        self.data = as_dataset(data, batch_size, num_examples)
        self._flow = None
        self._writer = None
        self._last = None
        self._clock = None if every == "epoch" else UpdateClock(every, who="EGFLogger")

    def on_train_begin(self, logs=None):
        # Built here, not in set_model: the model is compiled by now.
        if self._flow is None or self._flow.model is not self.model:
            self._flow = GradientFlow(self.model, self.loss)
        self._last = None
        if self._clock is not None:
            self._clock.start(self.params)
        self._writer = summary_writer(self.log_dir, "EGFLogger")

    def measure(self):
        """Computes the logged values now: `{"egf_l2": float, ...}`."""
        if self._flow is None or self._flow.model is not self.model:
            self._flow = GradientFlow(self.model, self.loss)
        self._last = self._flow(self.data, self.p)
        return dict(self._last)

    def _write(self, values, step):
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(key, value)
        self._writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        if self._clock is not None:
            self._clock.epoch_begin(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self._clock is not None:
            self._clock.batch_begin(batch, self.model)

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 this is called once per execution:
        # the clock says whether a multiple of `every` was passed.
        if self._clock is not None and self._clock.batch_end(batch, self.model) is not None:
            values = self.measure()
            self._write(values, self._clock.step)
            if logs is not None:
                logs.update(values)

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch" or self._last is None:
            values = self.measure()
            if self.every == "epoch":
                self._write(values, epoch)
        if logs is not None:
            logs.update(self._last)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        loss = self.loss
        if loss is not None and not isinstance(loss, str):
            loss = keras.saving.serialize_keras_object(loss)
        return dict(every=self.every, p=self.p, num_examples=self.num_examples,
                    log_dir=self.log_dir, loss=loss, batch_size=self.batch_size)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "data" not in config:
            raise ValueError(
                "EGFLogger.from_config: `config` needs a `data` entry (the "
                "evaluation data is not serialized): "
                "EGFLogger.from_config({**config, 'data': data})."
            )
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
