"""K-starts (Haroon 2022): pick the fittest of k random masks early in training."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_sparse import distributions, structures
from keras_sparse.callbacks.base import MaskCallback, log_sparsity
from keras_sparse.layers.registry import without_masks
from keras_sparse.masks import stateless_uniform
from keras_sparse.pruning.base import check_scope, masks_from_scores
from keras_sparse.utils import keras_compat
from keras_sparse.utils.argument_validation import check_choice, check_int, check_sparsity

__all__ = ["FITNESS", "MODES", "KStarts"]

FITNESS = ("magnitude", "gradient", "both")
MODES = ("union", "independent")
GRAD_SUM = "kstarts_grad"
UNSUPPORTED_STRATEGIES = (tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.TPUStrategy,
                          tf.distribute.experimental.ParameterServerStrategy)  # per-weight sum of abs(g) over the selection steps


@keras.saving.register_keras_serializable(package="keras_sparse")
class KStarts(MaskCallback):
    """Trains k random masks briefly and keeps the fittest.

    Candidate `i` is a random mask with exactly the target count of zeros
    per layer (budgets from `distribution`, by default "uniform": the
    paper's "k random p-sparse matrices"; or one global ranking with
    `scope="global"`), drawn with stateless RNG keyed by (seed, i, layer),
    so it can be rebuilt at any time (`candidate(i)`) and every replica
    draws the same one. All candidates share the model's initial weights:
    start from a dense-initialised model (`ks.sparsify(model, 0.0)`);
    weights already zero stay zero.

    Fitness of a candidate mask `m`: `magnitude` = `sum(abs(w) * m)`;
    `gradient` = `sum(G * m)`, `G` the per-weight sum of `abs(dL/dw)` over
    the selection steps; `both` = the two summed after dividing each by its
    mean over the candidates. The fittest (lowest index on ties) is kept,
    every other weight is zeroed with its optimizer slots, and training
    continues.

    Modes:

    - `"independent"` (default; the paper's reading: each of the k random
      p-sparse networks is trained on its own, then the fittest is kept; k
      times costlier during selection): candidate `i` trains alone during
      epochs `i * selection_epochs .. (i + 1) * selection_epochs - 1`, each
      from the same initial weights and optimizer state (step counter
      included, so the winner continues exactly as if it alone had been
      trained: a learning-rate schedule sees the winner's own steps).
      Selection uses `k * selection_epochs` epochs of `fit`, so a fit with
      fewer epochs is refused when it starts; trained candidates are kept in
      this process's host memory until selection, so a run cannot be resumed
      in the middle of it, and multi-worker, TPU and parameter-server
      strategies are refused (each worker would hold its own copies, lost
      on a worker restart). One machine with `MirroredStrategy` works.
    - `"union"` (interpretation, as cheap as normal training): for epochs
      `0 .. selection_epochs - 1` the model trains with the union of the k
      candidates, then selects. The candidates share their training, and
      the k - 1 losers' weights are removed at once at the selection.

    Epochs are Keras' epoch indices (`initial_epoch` counts on resume). In
    union mode the masks and the gradient sums are model variables, so a run
    resumed with `BackupAndRestore` during selection continues it exactly.
    `gradient` and `both` read the dense-gradient hook of the model every
    step of the selection and need `steps_per_execution=1`; they combine
    with other callbacks reading the plain dense gradient (RigL: the model
    keeps it at the steps either asks for), not with SNFS's gradient
    momentum (ValueError).

    Logs at the selection epoch `kstarts_fitness_<i>` for every candidate
    and `kstarts_winner`; `sparsity` every epoch.

    Args:
        sparsity: target fraction of zeros of every candidate, in [0, 1).
        k: number of candidates (>= 1, default 5).
        selection_epochs: training epochs before the selection (2).
        fitness: "magnitude" (default; interpretation: the paper lets the
            criterion depend on the architecture), "gradient" or "both".
        mode: "independent" (default) or "union".
        distribution, scope, dense_layers: layer budgets, as in
            `ks.sparsify` ("uniform", "layer", none by default).
        seed: seed of the candidate masks.
        structure: None (default: the structure the weights hold, set by
            `ks.sparsify(..., structure=...)`) or that same structure; every
            candidate holds it (random scores pooled per block, or the top
            `n` of each N:M group). `mode="union"` with N:M is refused: the
            union of N:M masks is not N:M.

    Raises:
        TypeError, ValueError: a bad argument, naming it and what is allowed,
            before training starts; `fit` raises a TypeError if the model is
            not a `ks.SparseModel`, and a ValueError before the first step
            if `mode="independent"` gets fewer epochs than its selection
            needs or an unsupported `tf.distribute` strategy.

    Example:

    ```python
    model = ks.sparsify(dense, 0.0)
    # 5 candidates x 2 epochs of selection, then 20 epochs for the winner.
    model.fit(x, y, epochs=30, callbacks=[ks.callbacks.KStarts(0.9, k=5)])
    ```
    """

    def __init__(self, sparsity, k=5, selection_epochs=2, fitness="magnitude",
                 mode="independent", distribution="uniform", scope="layer", dense_layers=None,
                 seed=0, structure=None):
        super().__init__()
        self.structure = None if structure is None else structures.get(structure)
        self.sparsity = check_sparsity(sparsity)
        self.k = check_int(k, "k", minimum=1)
        self.selection_epochs = check_int(selection_epochs, "selection_epochs", minimum=1)
        self.fitness = check_choice(fitness, "fitness", FITNESS)
        self.mode = check_choice(mode, "mode", MODES)
        self.distribution = distributions.check_distribution(distribution)
        self.scope = check_scope(scope)
        self.dense_layers = (None if dense_layers is None else
                             distributions.check_names(None, dense_layers, "dense_layers"))
        self.seed = check_int(seed, "seed")
        self._selected = False

    def get_config(self):
        return {"sparsity": self.sparsity, "k": self.k,
                "selection_epochs": self.selection_epochs, "fitness": self.fitness,
                "mode": self.mode, "distribution": self.distribution,
                "scope": self.scope, "dense_layers": self.dense_layers,
                "seed": self.seed,
                "structure": None if self.structure is None else
                keras.saving.serialize_keras_object(self.structure)}

    @property
    def _uses_gradients(self):
        return self.fitness != "magnitude"

    @property
    def _selection_end(self):
        return self.selection_epochs * (self.k if self.mode == "independent" else 1)

    def set_model(self, model):
        super().set_model(model)
        held = structures.check_agrees(model.masked_weights, self.structure, "KStarts")
        if self.mode == "union" and any(s.fixed_sparsity is not None for s in held):
            raise ValueError(
                f"KStarts(mode='union'): the model holds N:M weights {sorted(map(repr, held))}, "
                "and the union of N:M masks is not N:M. Use mode='independent'.")
        if held:  # a target not reachable in whole units fails here
            distributions.budgets(model.masked_weights, self.sparsity, self.distribution,
                                  dense_layers=self.dense_layers)
        self._selecting = False
        if self._uses_gradients:
            with model.distribute_strategy.scope():
                self._capturing = tf.Variable(False, trainable=False)
                for mw in model.masked_weights:
                    mw.layer.add_mask_state(GRAD_SUM, dtype=mw.weight.dtype)
            model.request_dense_gradients(when=lambda step: self._capturing, owner=self)
            self._accumulate = tf.function(self._accumulate_gradients)

    def candidate(self, index):
        """Candidate `index`'s masks, `{path: tensor}` (the model must be set)."""
        weights = self.model.masked_weights
        scores = {mw.path: stateless_uniform(mw.weight.shape, self.seed, index, i)
                  for i, mw in enumerate(weights)}
        return masks_from_scores(self.model, scores, self.sparsity, self.distribution,
                                 self.scope, self.dense_layers)

    # -- training hooks -----------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.mode == "independent" and not self._selected:
            self._check_independent()
        if self._uses_gradients and getattr(self.model, "steps_per_execution", 1) > 1:
            raise ValueError(
                f"KStarts(fitness={self.fitness!r}) sums gradients of every step; "
                f"compile with steps_per_execution=1 (got "
                f"{self.model.steps_per_execution})."
            )

    def _check_independent(self):
        strategy = self.model.distribute_strategy
        if isinstance(strategy, UNSUPPORTED_STRATEGIES):
            raise ValueError(
                f"KStarts(mode='independent') does not support a multi-worker, TPU or "
                f"parameter-server strategy (got {type(strategy).__name__}): "
                "it keeps the trained candidates in this process's host memory between "
                "epochs, so each worker would hold its own copies and a restarted worker "
                "would lose them. Use mode='union', or one machine (MirroredStrategy)."
            )
        planned = (self.params or {}).get("epochs")
        if planned is not None and planned < self._selection_end:
            raise ValueError(
                f"KStarts(mode='independent', k={self.k}, selection_epochs="
                f"{self.selection_epochs}) needs {self._selection_end} epochs to train every "
                f"candidate before it selects, but this fit plans {planned} (epochs={planned}); "
                f"give epochs > {self._selection_end} so the winner also trains after the "
                "selection, or use mode='union'."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._selected = self._selected or epoch >= self._selection_end
        self._selecting = not self._selected
        if self._uses_gradients:
            self._capturing.assign(self._selecting)
        if not self._selecting:
            return
        if self.mode == "union":
            if epoch == 0:
                union = self.candidate(0)
                for i in range(1, self.k):
                    union = {p: tf.maximum(m, union[p]) for p, m in self.candidate(i).items()}
                self.model.set_masks(union)
                self._reset_gradient_sums()
            return  # resumed mid-selection: masks and sums came with the model
        block, position = divmod(epoch, self.selection_epochs)
        if position:
            return
        if epoch == 0:
            if not self.model.optimizer.built:  # its slots must be in the snapshot
                with self.model.distribute_strategy.scope():
                    self.model.optimizer.build(self.model.trainable_variables)
            self._initial, self._raw, self._trained = self._snapshot(), [], []
        elif not hasattr(self, "_initial"):
            raise RuntimeError(
                "KStarts(mode='independent') cannot resume in the middle of the "
                f"selection (epoch {epoch} < {self._selection_end}); restart from "
                "epoch 0 or use mode='union'."
            )
        self._load(self.candidate(block), self._initial)
        self._reset_gradient_sums()

    def on_train_batch_end(self, batch, logs=None):
        if self._selecting and self._uses_gradients:
            self._accumulate()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if self._selecting:
            if self.mode == "union":
                if epoch == self.selection_epochs - 1:
                    raw = [self._raw_fitness(self.candidate(i)) for i in range(self.k)]
                    winner = self._select(raw, logs)
                    self.model.set_masks(self.candidate(winner))
            elif epoch % self.selection_epochs == self.selection_epochs - 1:
                block = epoch // self.selection_epochs
                self._raw.append(self._raw_fitness(self.candidate(block)))
                self._trained.append(self._snapshot())
                if block == self.k - 1:
                    winner = self._select(self._raw, logs)
                    self._load(self.candidate(winner), self._trained[winner])
                    del self._initial, self._raw, self._trained
        log_sparsity(self.model, logs)

    def on_train_end(self, logs=None):
        if self._uses_gradients:
            self.model.release_dense_gradients(owner=self)
        if not self._selected:
            warnings.warn(
                f"KStarts: training ended before the selection (it needs "
                f"{self._selection_end} epochs); the model keeps the selection masks.",
                stacklevel=2,
            )

    # -- fitness --------------------------------------------------------------

    def _raw_fitness(self, masks):
        """`(sum(abs(w) * m), sum(G * m))` of one candidate."""
        magnitude, gradient = 0.0, 0.0
        for mw in self.model.masked_weights:
            m = tf.cast(masks[mw.path], tf.float64)
            weight = tf.cast(tf.convert_to_tensor(mw.weight), tf.float64)
            magnitude += float(tf.reduce_sum(tf.abs(weight) * m))
            if self._uses_gradients:
                grads = tf.cast(tf.convert_to_tensor(mw.state(GRAD_SUM)), tf.float64)
                gradient += float(tf.reduce_sum(grads * m))
        return magnitude, gradient

    def _select(self, raw, logs):
        magnitude, gradient = (np.array(v) for v in zip(*raw))

        def normalized(values):
            mean = values.mean()
            return values / mean if mean > 0 else np.zeros_like(values)

        fitness = {"magnitude": magnitude, "gradient": gradient,
                   "both": normalized(magnitude) + normalized(gradient)}[self.fitness]
        winner = int(np.argmax(fitness))
        for i, value in enumerate(fitness):
            logs[f"kstarts_fitness_{i}"] = float(value)
        logs["kstarts_winner"] = winner
        self._selected, self._selecting = True, False
        if self._uses_gradients:
            self._capturing.assign(False)
        return winner

    # -- state ----------------------------------------------------------------

    def _accumulate_gradients(self):
        for mw, grad in zip(self.model.masked_weights, self.model.dense_gradients()):
            total = mw.state(GRAD_SUM)
            total.assign_add(tf.abs(tf.cast(grad, total.dtype)))

    def _reset_gradient_sums(self):
        if self._uses_gradients:
            for mw in self.model.masked_weights:
                total = mw.state(GRAD_SUM)
                total.assign(tf.zeros_like(total.value))

    def _state_variables(self):
        """Model variables but masks, and every optimizer slot and counter."""
        model_vars = without_masks(self.model.weights, self.model)
        optimizer = self.model.optimizer
        optimizer_vars = list(optimizer.variables) if getattr(optimizer, "built", False) else []
        return model_vars + optimizer_vars

    def _snapshot(self):
        return [keras_compat.to_numpy(v) for v in self._state_variables()]

    def _load(self, masks, snapshot):
        """Sets `masks`, then every other variable from `snapshot`, masked."""
        self.model.set_masks(masks)
        for variable, value in zip(self._state_variables(), snapshot):
            variable.assign(value)
        self.model.apply_masks()
