"""Pausing a worker's `fit` every few steps, so two workers alternate block by block."""

import time

from benchmarks.workers import next_request, reply


def paced(callback_class, block_steps):
    """A `fit` callback pausing every `block_steps` steps for the parent.

    Lets two worker processes each run one ordinary `fit` while the parent
    alternates them block by block (interleaved timing without splitting
    training into many `fit` calls). Before the first step of each block but
    the first, the worker replies `{"seconds": previous block's time,
    "step": steps done}` and waits for a "continue" request; the last
    block's time is `last_seconds` after `fit`. Works with Keras 3 and
    tf_keras callbacks (`callback_class`).

    It uses `on_train_batch_begin` only: a callback overriding
    `on_train_batch_end` makes Keras 3 run every step's batch-end work
    synchronously, which would slow the measured side down.

    Example:

    ```python
    pacer = harness.paced(keras.callbacks.Callback, 100)()
    model.fit(ds, epochs=epochs, callbacks=[pacer])   # handler of "train"
    return {"seconds": pacer.last_seconds}
    ```
    """

    class Pacer(callback_class):
        def on_train_begin(self, logs=None):
            self.step, self.last_seconds = 0, None
            self.start = time.perf_counter()

        def _block_time(self):
            int(self.model.optimizer.iterations)  # waits for the device
            return time.perf_counter() - self.start

        def on_train_batch_begin(self, batch, logs=None):
            if self.step and self.step % block_steps == 0:
                reply({"seconds": self._block_time(), "step": self.step})
                command, _ = next_request()
                if command != "continue":
                    raise RuntimeError(f"paced: expected 'continue', got {command!r}")
                self.start = time.perf_counter()
            self.step += 1

        def on_train_end(self, logs=None):
            self.last_seconds = self._block_time()

    return Pacer


def blocks(worker, start="train"):
    """A callable for `interleaved` that advances a `paced` worker one block.

    The first call sends `start` (which begins `fit`), later ones "continue";
    each returns the seconds the worker measured for its block.
    """
    started = []

    def run():
        message = worker.request("continue" if started else start)
        started.append(True)
        return message["seconds"]

    return run
