"""`DenseGradientRequests`: who asked the train step for dense gradients, when."""

import tensorflow as tf

from keras_sparse.layers.parameter import DENSE_GRAD
from keras_sparse.utils.argument_validation import check_number

__all__ = ["DenseGradientRequests"]


class DenseGradientRequests:
    """The requests of every owner (callback) for `dL/d(W*M)`, composed.

    The train step keeps the gradient at the union of the steps the owners
    ask for, into each parameter's `dense_grad` state. There is one buffer
    per weight, so owners must agree on `momentum`. A plain object (not a
    dict) so Keras does not track it as model state.

    Example:

    ```python
    requests = DenseGradientRequests()
    requests.request(model.masked_weights, when=clock.captures, owner=callback)
    requests.when(step)             # a boolean tensor, traced into the step
    ```
    """

    def __init__(self):
        self.by_owner = {}  # id(owner) -> (owner, when, momentum)

    def request(self, parameters, when=None, momentum=0.0, owner=None):
        """Adds (or replaces) `owner`'s request; see `SparseModel.request_dense_gradients`.

        Raises:
            ValueError: `momentum` differs from another owner's.
        """
        momentum = check_number(momentum, "momentum", 0, 1, high_open=True)
        clash = [(holder, theirs) for key, (holder, _, theirs) in self.by_owner.items()
                 if key != id(owner) and theirs != momentum]
        if clash:
            holder, theirs = clash[0]
            raise ValueError(
                f"request_dense_gradients: `momentum`={momentum} differs from "
                f"momentum={theirs} already requested by {type(holder).__name__}; "
                "the model keeps one dense-gradient buffer, so requesters must "
                "agree on it."
            )
        for p in parameters:
            p.add_state(DENSE_GRAD, synchronization="on_read", aggregation="sum")
        self.by_owner[id(owner)] = (owner, when or (lambda step: True), momentum)

    def release(self, owner=None):
        """Withdraws `owner`'s request; True if it held one."""
        return self.by_owner.pop(id(owner), None) is not None

    def when(self, step):
        """True at steps for which any owner asked (the union)."""
        asks = [tf.convert_to_tensor(when(step)) for _, when, _ in self.by_owner.values()]
        return tf.reduce_any(tf.stack(asks)) if len(asks) > 1 else asks[0]

    def due(self, step):
        """Like `when`, on the host: `step` a Python int, the answer a bool."""
        return any(bool(when(step)) for _, when, _ in self.by_owner.values())

    @property
    def momentum(self):
        return next(iter(self.by_owner.values()))[2]

    def store(self, parameters, gradients, when, optimizer):
        """Keeps `gradients` (loss-scaled, one per parameter) on steps where `when`."""
        momentum = self.momentum

        def store():
            # Inside the branch, so steps that do not capture pay nothing.
            unscale = 1.0 / optimizer.scale_loss(tf.constant(1.0))
            for p, gradient in zip(parameters, gradients):
                p.store_dense_gradient(gradient, unscale, momentum)
            return tf.constant(True)

        static = tf.get_static_value(when)
        if static is None:
            tf.cond(when, store, lambda: tf.constant(False))
        elif static:
            store()

    @staticmethod
    def read(parameters):
        """The stored dense gradients of `parameters`.

        Raises:
            ValueError: none were requested.
        """
        if not parameters or not all(p.has_state(DENSE_GRAD) for p in parameters):
            raise ValueError("dense_gradients(): call request_dense_gradients() before fit.")
        return [p.dense_gradient() for p in parameters]
