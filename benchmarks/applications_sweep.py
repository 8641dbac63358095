"""Sweep: every `keras.applications` constructor through sparsify/fit/strip.

For each constructor (weights=None, a small input, 10 classes): sparsify at
50% (ERK), train one step with clipped SGD on random data, strip, and check
that the stripped model's outputs equal the sparse model's (atol 1e-5). Each model
runs in its own process, so memory is returned and a crash is one "fail".

    python -m benchmarks.applications_sweep              # every constructor
    python -m benchmarks.applications_sweep MobileNetV3Small ResNet50

Prints one line per model: name, ok/fail, seconds (and the error on fail).
Not part of `python -m benchmarks run` (no JSON, no targets): it is a
compatibility check, too slow for CI in full; tests run a subset.
"""

import os
import subprocess
import sys
import time

# Smallest input each family accepts (height = width); 32 otherwise.
MIN_SIDE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
# Constructors that take an extra argument to stay small and fast.
EXTRA = {"MobileNetV3Small": {"minimalistic": True}}


def constructors():
    """Names of every model constructor in `keras.applications`, sorted."""
    import keras

    return sorted(
        name for name in dir(keras.applications)
        if name[0].isupper() and callable(getattr(keras.applications, name))
    )


def check(name, side=None, batch=2, sparsity=0.5, atol=1e-5, **kwargs):
    """Sparsify, train one step, strip `keras.applications.<name>`.

    Returns the largest absolute difference between the stripped and the
    sparse outputs; raises AssertionError when it exceeds `atol`.
    """
    import keras
    import numpy as np

    import keras_sparse as ks

    side = side or MIN_SIDE.get(name, 32)
    constructor = getattr(keras.applications, name)
    kwargs = {**EXTRA.get(name, {}), **kwargs}
    dense = constructor(weights=None, input_shape=(side, side, 3), classes=10, **kwargs)
    sparse = ks.sparsify(dense, sparsity)
    # Clipped: one step on a batch of 2 with 1x1 feature maps in the last
    # stages gives huge BatchNorm gradients, and NaN in dense models too.
    sparse.compile(keras.optimizers.SGD(0.01, global_clipnorm=1.0),
                   "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, side, side, 3)).astype("float32")
    y = rng.integers(0, 10, (batch,))
    sparse.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    plain = ks.strip(sparse)
    expected = keras.ops.convert_to_numpy(sparse(x, training=False))
    actual = keras.ops.convert_to_numpy(plain(x, training=False))
    assert np.all(np.isfinite(expected)), f"{name}: non-finite outputs"
    difference = float(np.max(np.abs(actual - expected)))
    assert difference <= atol, f"{name}: stripped differs from sparse by {difference}"
    return difference


def _run_one(name):
    start = time.perf_counter()
    try:
        difference = check(name)
    except Exception as error:  # report and carry on with the next model
        message = f"{type(error).__name__}: {error}".replace("\n", " ")[:300]
        print(f"{name:20} fail {time.perf_counter() - start:7.1f} s  {message}", flush=True)
        return 1
    print(f"{name:20} ok   {time.perf_counter() - start:7.1f} s  max|diff|={difference:.2e}",
          flush=True)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one"]:
        return _run_one(argv[1])
    names = argv or constructors()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    failed = 0
    total = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.applications_sweep", "--one", name],
            cwd=root, env=env, capture_output=True, text=True,
        )
        lines = [l for l in result.stdout.splitlines() if l.startswith(name)]
        if lines:
            print(lines[-1], flush=True)
        else:  # the process died (e.g. out of memory) before printing
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            print(f"{name:20} fail {time.perf_counter() - start:7.1f} s  "
                  f"exit {result.returncode}: {tail[0][:300]}", flush=True)
        failed += result.returncode != 0
    print(f"{len(names) - failed}/{len(names)} ok in {time.perf_counter() - total:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
