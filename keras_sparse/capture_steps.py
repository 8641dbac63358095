"""Two train functions: steps that keep dense gradients, and steps that do not.

A mask rule reads the dense gradient `dL/d(W*M)` on a few steps (RigL:
one in 100). Traced into one train function, the choice is a `tf.cond` on
the step counter that every step pays for (on LeNet-300-100, ~4% of a
step). When each call of the train function runs one step
(`steps_per_execution=1`), the model instead traces two functions, one
that keeps the gradients and one without the branch, and picks one per
call in Python from a step count kept on the host, so that no step reads
the device to choose.
"""

import keras

from keras_sparse.utils import keras_compat

__all__ = ["StepCount", "CountSteps", "split_train_function"]


class StepCount:
    """The model's step counter (`optimizer.iterations`), followed on the host.

    Read from the device on the first call after `resync()` (`fit` resyncs
    at the start of training and of each epoch, after any callback may have
    moved the counter; `train_on_batch` before each call), then counted:
    one per completed call. With `follow=False` it is read on every call
    (a `fit` given a `CallbackList`, where `CountSteps` cannot be added).
    """

    def __init__(self):
        self.value = None
        self.follow = True

    def resync(self):
        self.value = None

    def current(self, model):
        if self.value is None or not self.follow:
            self.value = int(keras_compat.to_numpy(model.optimizer.iterations))
        return self.value


class CountSteps(keras.callbacks.Callback):
    """Resyncs a `StepCount` where callbacks may have moved the counter.

    Restores (`BackupAndRestore`), candidate loads (`KStarts`) and the
    end-of-epoch correction of `ks.data` pipelines happen at the start of
    training or of an epoch, or at an epoch's end.
    """

    def __init__(self, count):
        super().__init__()
        self.count = count

    def on_train_begin(self, logs=None):
        self.count.resync()

    def on_epoch_begin(self, epoch, logs=None):
        self.count.resync()


def split_train_function(model, make, requests, count):
    """A train function choosing, per call, a traced variant with or without capture.

    Args:
        model: the `SparseModel`; its `_capture` attribute (True/False) is
            what its train step reads while a variant traces.
        make: Keras' `make_train_function(force=True)`, called once per variant.
        requests: the `DenseGradientRequests`; `requests.due(step)` decides.
        count: the `StepCount` of the model.

    Returns:
        A callable with the signature of Keras' train function.

    Example:

    ```python
    model.train_function = split_train_function(model, make, requests, count)
    ```
    """
    variants = {}
    for capture in (True, False):
        model._capture = capture
        variants[capture] = make()  # traced at its first call, with `_capture` set then

    def train_function(data):
        step = count.current(model)
        capture = requests.due(step)
        model._capture = capture
        logs = variants[capture](data)
        count.value = step + 1
        return logs

    return train_function
