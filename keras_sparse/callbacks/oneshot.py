"""`OneShotPruning`: train dense for some epochs, then prune once."""

import keras

from keras_sparse import pruning
from keras_sparse.callbacks.base import MaskCallback, log_sparsity
from keras_sparse.distributions import check_distribution
from keras_sparse.utils.argument_validation import check_choice, check_int, check_sparsity

__all__ = ["OneShotPruning"]

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

    Raises:
        TypeError, ValueError: a bad argument, naming it and what is allowed,
            before training starts; `fit` raises a TypeError if the model is
            not a `ks.SparseModel`.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)          # masks all ones
    model.fit(x, y, epochs=10,
              callbacks=[ks.callbacks.OneShotPruning(0.9, epoch=3)])
    ```
    """

    def __init__(self, sparsity, epoch, criterion="magnitude", distribution="erk", seed=0):
        super().__init__()
        self.sparsity = check_sparsity(sparsity)
        self.epoch = check_int(epoch, "epoch", minimum=1)
        self.criterion = check_choice(criterion, "criterion", CRITERIA)
        self.distribution = check_distribution(distribution)
        self.seed = check_int(seed, "seed", minimum=0)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            pruning.get(self.criterion)(self.model, self.sparsity,
                                        distribution=self.distribution, seed=self.seed)
        log_sparsity(self.model, logs)

    def get_config(self):
        return dict(sparsity=self.sparsity, epoch=self.epoch, criterion=self.criterion,
                    distribution=self.distribution, seed=self.seed)
