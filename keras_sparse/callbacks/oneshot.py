"""`OneShotPruning`: train dense for some epochs, then prune once."""

import keras

from keras_sparse import pruning
from keras_sparse.callbacks.base import MaskCallback
from keras_sparse.callbacks.parts import check_number
from keras_sparse.conversion import sparsity_report

CRITERIA = ("magnitude", "random")


@keras.saving.register_keras_serializable(package="keras_sparse")
class OneShotPruning(MaskCallback):
    """Prunes a dense-initialised `SparseModel` once, at the end of an epoch.

    At the end of epoch number `epoch` (1-based: `epoch=3` prunes after
    three epochs of training) the masks are set to exactly the target
    sparsity with `ks.pruning.magnitude` or `ks.pruning.random` (per-layer
    budgets from `distribution`); dropped weights and their optimizer slots
    become 0 and the mask stays fixed afterwards. This is the control for
    methods that reach their sparsity only after some epochs of denser
    training (K-starts, dissipating gradients): the same dense epochs, then
    a plain pruning rule. Logs `sparsity` at each epoch end.

    Args:
        sparsity: target fraction of zeros, in [0, 1).
        epoch: number of training epochs before the pruning, an int >= 1.
        criterion: "magnitude" (keep the largest `abs(w)`) or "random".
        distribution: per-layer split, "erk" (default), "er" or "uniform".
        seed: seed of the random mask.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)          # masks all ones
    model.fit(x, y, epochs=10,
              callbacks=[ks.callbacks.OneShotPruning(0.9, epoch=3)])
    ```
    """

    def __init__(self, sparsity, epoch, criterion="magnitude", distribution="erk", seed=0):
        super().__init__()
        check_number(sparsity, "sparsity", lambda v: 0 <= v < 1, "in [0, 1)")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"`epoch` must be an int >= 1; got epoch={epoch!r}.")
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}; got criterion={criterion!r}.")
        if distribution not in ("erk", "er", "uniform"):
            raise ValueError("`distribution` must be one of ('erk', 'er', 'uniform'); "
                             f"got distribution={distribution!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be an int >= 0; got seed={seed!r}.")
        self.sparsity, self.epoch, self.criterion = float(sparsity), epoch, criterion
        self.distribution, self.seed = distribution, seed

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            pruning.get(self.criterion)(self.model, self.sparsity,
                                        distribution=self.distribution, seed=self.seed)
        if logs is not None:
            logs["sparsity"] = sparsity_report(self.model)[-1]["sparsity"]

    def get_config(self):
        return dict(sparsity=self.sparsity, epoch=self.epoch, criterion=self.criterion,
                    distribution=self.distribution, seed=self.seed)
