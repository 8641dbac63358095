"""Would masks stored as bool or uint8 pay? The masked train step per mask dtype.

`python -m benchmarks.mask_dtype [--quick]` times one masked training step
of a Dense kernel (forward `x @ (W masked)`, backward, the gradient masked,
an SGD update) with its mask held three ways, in alternating rounds (paired
ratios against float32, geometric mean with its 95% CI, `benchmarks.paired`):

- float32, the weight's dtype (what the layers keep): `W * M`, and the
  gradient by `multiply_no_nan`;
- bool: `tf.where(M, W, 0)`, and the gradient by `tf.where`;
- uint8: cast to float32 at each use, then as float32.

Shapes: the 4096 x 4096 layer of the MLP 784-4096-4096-10 and the first
layer of LeNet-300-100 (784 x 300), batch 128, 98% inactive. It also prints
the bytes a mask takes per dtype. A standalone study (it prints a table and
writes nothing); what it found is in `docs/dynamic-sparse-training.md`.
"""

import argparse

import numpy as np
import tensorflow as tf

from benchmarks import paired, timing

BATCH = 128
SHAPES = ((4096, 4096), (784, 300))
SPARSITY = 0.98
DTYPES = ("float32", "bool", "uint8")


def _step(kernel, mask, x, dtype):
    """One masked SGD step with the mask held as `dtype` (a `tf.function`)."""
    def masked(t, multiply):
        if dtype == "bool":
            return tf.where(mask, t, 0.0)
        return multiply(t, mask if dtype == "float32" else tf.cast(mask, tf.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.relu(x @ masked(kernel, tf.multiply)))
        kernel.assign_sub(1e-6 * masked(tape.gradient(loss, kernel), tf.math.multiply_no_nan))
        return loss
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mask_dtype",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    rounds, calls = (7, 3) if args.quick else (25, 5)
    rng = np.random.default_rng(0)
    print(f"masked Dense step, batch {BATCH}, {SPARSITY:.0%} inactive: ms per step (median of "
          f"{rounds} rounds of {calls}); ratio = this row / float32, geometric mean [95% CI]")
    for shape in SHAPES:
        active = rng.random(shape) >= SPARSITY
        x = tf.constant(rng.standard_normal((BATCH, shape[0])).astype("float32"))
        steps = {}
        for dtype in DTYPES:
            kernel = tf.Variable(rng.standard_normal(shape).astype("float32") * active)
            steps[dtype] = _step(kernel, tf.Variable(active.astype(dtype)), x, dtype)
            steps[dtype]()  # traced outside the timing

        def block(step):
            def run():
                for _ in range(calls):
                    out = step()
                out.numpy()
            return run

        times = timing.interleaved({d: block(s) for d, s in steps.items()}, rounds)
        for dtype, samples in times.items():
            ci = paired.log_ratio_ci(samples, times["float32"])
            size = np.dtype(dtype).itemsize * shape[0] * shape[1]
            print(f"{shape[0]}x{shape[1]} {dtype:8} {np.median(samples) / calls * 1e3:8.3f} ms  "
                  f"{ci['ratio']:.3f}x [{ci['low']:.3f}-{ci['high']:.3f}]  mask {size / 2**20:.2f} MiB",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
