"""`raw_reads`: the train step's forward pass reads the raw prunable variables."""

import contextlib

__all__ = ["raw_reads"]


@contextlib.contextmanager
def raw_reads(parameters, when=None):
    """Layers read the raw variables of `parameters`, not `weight * mask`.

    The train step's forward pass: it keeps inactive weights at exactly
    0.0, so `W == W * M` (one multiply fewer per kernel) and the gradient
    each variable receives is the dense `dL/d(W*M)`, which it then masks. A
    layer computing with the active weights only computes that dense
    gradient on the steps where `when` (a boolean tensor, or None for
    never) is true. Also for evaluations that want the variables unmasked
    (points of a path in the dense space). A count, not a flag, so that
    replicas tracing the step in turn (`tf.distribute`) all see it.

    Example:

    ```python
    with raw_reads(model.masked_weights, when):
        y_pred = model(x, training=True)
    ```
    """
    parameters = list(parameters)
    for p in parameters:
        p._depth += 1
        p._when = when
    try:
        yield
    finally:
        for p in parameters:
            p._depth -= 1
            if not p._depth:
                p._when = None
