"""`UpdateLog`: what drop-and-grow updates report, per epoch and to TensorBoard."""

import tensorflow as tf

from keras_sparse.masks import warn_non_finite
from keras_sparse.utils import tensorboard

__all__ = ["UpdateLog"]


class UpdateLog:
    """Sums the updates of an epoch into `dst/*` logs; writes TensorBoard.

    Epoch logs: `dst/drop_fraction` (of the epoch's last update, 0 if
    none), `dst/updates`, `dst/changed`, `dst/churn`, `dst/itop`,
    `dst/regrown_fraction`, `dst/grown_ever`, `dst/update_ms` (see
    `ks.callbacks.DynamicSparsity`). With `log_dir`, every update also writes
    these and `changed`, `itop`, `sparsity` per weight path.

    Args:
        who: the owner's name, for warnings and the TensorBoard writer.
        log_dir: a TensorBoard directory, or None.

    Example:

    ```python
    log = UpdateLog("RigL")
    stats = log.record(model.masked_weights, 100, 0.3, out, elapsed_ms)
    log.write(logs)
    ```
    """

    def __init__(self, who, log_dir=None):
        self.who, self.log_dir = who, log_dir
        self.itop, self.grown_ever = 0.0, 0
        self._writer = None
        self.new_epoch()

    def new_epoch(self):
        self._epoch = dict(fraction=0.0, updates=0, changed=0, active=0, ms=0.0, grown=0,
                           regrown=0)

    def union(self, ever, active, total):
        """The ever-active union counted `ever` of `total` weights, `active` now."""
        self.itop = ever / total
        self.grown_ever = int(round(ever - active))

    def record(self, weights, step, fraction, out, elapsed_ms):
        """Adds one update's per-layer `out`; returns `{path: {stat: value}}`."""
        stats = {}
        for i, mw in enumerate(weights):
            if not out["finite"][i]:
                warn_non_finite(self.who, mw.path, when=f" at step {step}")
            stats[mw.path] = {k: out[k][i].item() for k in out}
        changed = int(out["changed"].sum())
        self.itop = float(out["ever"].sum()) / sum(mw.size for mw in weights)
        self.grown_ever = int(out["ever"].sum() - out["active"].sum())
        e = self._epoch
        e["grown"] += int(out["grown"].sum())
        e["regrown"] += int(out["regrown"].sum())
        e["fraction"] = fraction
        e["updates"] += 1
        e["changed"] += changed
        e["active"] += int(out["active"].sum())
        e["ms"] += elapsed_ms
        self._summaries(step, fraction, changed, elapsed_ms, weights, out)
        return stats

    def write(self, logs):
        """Writes the epoch's `dst/*` values into `logs`."""
        e = self._epoch
        logs["dst/drop_fraction"] = e["fraction"]
        logs["dst/updates"] = e["updates"]
        logs["dst/changed"] = e["changed"]
        logs["dst/churn"] = e["changed"] / e["active"] if e["active"] else 0.0
        logs["dst/itop"] = self.itop
        logs["dst/regrown_fraction"] = e["regrown"] / e["grown"] if e["grown"] else 0.0
        logs["dst/grown_ever"] = self.grown_ever
        logs["dst/update_ms"] = e["ms"] / e["updates"] if e["updates"] else 0.0
        if self._writer:
            self._writer.flush()

    def _summaries(self, step, fraction, changed, elapsed_ms, weights, out):
        if self.log_dir is None:
            return
        if self._writer is None:
            self._writer = tensorboard.summary_writer(self.log_dir, self.who) or False
        if not self._writer:
            return
        with self._writer.as_default(step=step):
            tf.summary.scalar("dst/drop_fraction", fraction)
            tf.summary.scalar("dst/changed", changed)
            tf.summary.scalar("dst/itop", self.itop)
            tf.summary.scalar("dst/update_ms", elapsed_ms)
            for i, mw in enumerate(weights):
                tf.summary.scalar(f"dst/changed/{mw.path}", out["changed"][i])
                tf.summary.scalar(f"dst/itop/{mw.path}", out["ever"][i] / mw.size)
                tf.summary.scalar(f"dst/sparsity/{mw.path}", 1.0 - out["active"][i] / mw.size)
