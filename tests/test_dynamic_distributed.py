"""RigL and SET under MirroredStrategy on two logical CPUs (a subprocess:
logical devices must be configured before TensorFlow initializes)."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import keras_sparse as ks
    from keras_sparse.callbacks import drop_grow_indexed
    from keras_sparse.model import DENSE_GRAD

    def components(variable):
        return [np.asarray(v.numpy()) for v in variable.value.values]

    x = np.random.RandomState(0).randn(128, 8).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    final, default = {}, drop_grow_indexed.MIN_SIZE
    for name in ("rigl", "set", "rigl_indexed"):
        # rigl_indexed: the indexed round forced on these small layers.
        drop_grow_indexed.MIN_SIZE = 0 if name == "rigl_indexed" else default
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((8,))
            hidden = ks.layers.SparseDense(16, activation="relu")(inputs)
            model = ks.SparseModel(inputs, ks.layers.SparseDense(2)(hidden))
            ks.pruning.random(model, 0.7, distribution="uniform")
            model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = [np.asarray(mw.mask.numpy()) for mw in model.masked_weights]
        cb = ks.callbacks.SET(delta_t=2, seed=3) if name == "set" else ks.callbacks.RigL(delta_t=2)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[cb])
        same, counts_kept, moved, zero_inactive = True, True, False, True
        for mw, first in zip(model.masked_weights, start):
            masks = components(mw.mask)
            weights = components(mw.weight)
            same &= all(np.array_equal(masks[0], m) for m in masks[1:])
            same &= all(np.array_equal(weights[0], w) for w in weights[1:])
            counts_kept &= all(m.sum() == first.sum() for m in masks)
            moved |= bool((masks[0] != first).any())
            zero_inactive &= bool((weights[0][masks[0] == 0] == 0).all())
        entry = dict(same=bool(same), counts_kept=bool(counts_kept), moved=moved,
                     zero_inactive=zero_inactive, updates=sum(history.history["dst/updates"]))
        final[name] = [components(mw.mask)[0] for mw in model.masked_weights] + [
            components(mw.weight)[0] for mw in model.masked_weights]
        if name == "rigl":
            # What the update read: the sum of the replicas' buffers (each
            # holds the gradient of its share of the 1/num_replicas loss).
            buffer = model.masked_weights[0].state(DENSE_GRAD)
            parts = components(buffer)
            read = model.dense_gradients()[0].numpy()
            entry["all_reduced"] = bool(np.allclose(read, parts[0] + parts[1]))
            entry["replicas_differ"] = bool(not np.allclose(parts[0], parts[1]))
        result[name] = entry
    result["indexed_equals_dense"] = all(
        np.array_equal(a, b) for a, b in zip(final["rigl"], final["rigl_indexed"]))
    print("RESULT" + json.dumps(result))
    """
)


def test_masks_identical_across_replicas():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT"):])
    assert result["replicas"] == 2
    for name in ("rigl", "set", "rigl_indexed"):
        entry = result[name]
        assert entry["updates"] == 6, entry  # 16 steps, end 12 (included): steps 2..12
        assert entry["moved"] and entry["same"] and entry["counts_kept"] and entry["zero_inactive"], entry
    assert result["rigl"]["all_reduced"] and result["rigl"]["replicas_differ"], result["rigl"]
    # The indexed round (in-place edits of every replica's copy) trains the same model.
    assert result["indexed_equals_dense"], result
