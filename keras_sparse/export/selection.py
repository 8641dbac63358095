"""Choosing a kernel per layer and batch size from timings taken at export.

`time_candidates` times each candidate on this machine, side by side
(rounds alternate the order; against a reference, each candidate is scored
by its median ratio to the reference in the same round); `choose` keeps a sparse
kernel only where it beats dense by a margin; `regimes` turns the per-batch
choices into batch-size ranges for the exported layer's dispatch.
"""

import math
import time

import numpy as np

# A sparse kernel must take at most this fraction of the dense time to be
# chosen: timings on a shared machine are noisy, and a tie goes to dense.
MARGIN = 0.9


def time_candidates(functions, inputs, rounds=7, calls=None, warmup=2, round_seconds=0.01,
                    reference=None):
    """Seconds per call of each function, measured side by side.

    Args:
        functions: `{name: fn}`; `fn(x)` returns a tensor.
        inputs: `{batch: x}`.
        rounds, warmup: recorded rounds and unrecorded ones (tracing,
            caches).
        calls: calls per round; None: enough for the first function to
            take about `round_seconds` per round (at least 3): short rounds
            of a fast layer would mostly measure scheduler noise.
        reference: None (each function's median time), or the name of one
            of `functions`: each function's time is then the reference's
            median times the median of its per-round ratios to the
            reference. Both sides of a ratio are timed back to back, so a
            slow stretch of a shared machine moves both: the ratios are
            steadier than the medians.

    Returns:
        `{batch: {name: seconds}}`.

    Example:

    ```python
    timings = time_candidates({"dense": f, "coo": g}, {1: x1, 64: x64})
    ```
    """
    found = {}
    for batch, x in inputs.items():
        samples = {name: [] for name in functions}
        names = list(functions)
        n = calls
        if n is None:
            np.asarray(functions[names[0]](x))  # traced before it is timed
            start = time.perf_counter()
            np.asarray(functions[names[0]](x))
            n = int(min(200, max(3, math.ceil(round_seconds / max(time.perf_counter() - start, 1e-6)))))
        for round_index in range(warmup + rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                for _ in range(n):
                    np.asarray(functions[name](x))
                if round_index >= warmup:
                    samples[name].append((time.perf_counter() - start) / n)
        if reference is None:
            found[batch] = {name: float(np.median(s)) for name, s in samples.items()}
        else:
            base = np.asarray(samples[reference])
            found[batch] = {name: float(np.median(np.asarray(s) / base) * np.median(base))
                            for name, s in samples.items()}
    return found


def choose(timings, margin=MARGIN):
    """`{batch: kernel}`: the fastest kernel, or "dense" unless one is clearly faster.

    Args:
        timings: `{batch: {kernel: seconds}}`, each including "dense".
        margin: a sparse kernel is chosen only if its time is at most
            `margin` times the dense time.

    Example:

    ```python
    choose({1: {"dense": 2.0, "coo": 1.0}, 64: {"dense": 1.0, "coo": 3.0}})
    # {1: "coo", 64: "dense"}
    ```
    """
    chosen = {}
    for batch, times in timings.items():
        if "dense" not in times:
            raise ValueError(f"choose: no dense timing at batch {batch}: {times}.")
        fastest = min(times, key=times.get)
        chosen[batch] = fastest if times[fastest] <= margin * times["dense"] else "dense"
    return chosen


def regimes(chosen):
    """`[(max_batch or None, kernel), ...]` from `{batch: kernel}`.

    A batch size between two measured ones takes the choice of the nearer
    one on a log scale; below the smallest and above the largest measured
    size, the choice of that size. Neighbouring ranges with the same kernel
    are merged; the last range is unbounded (None).

    Example:

    ```python
    regimes({1: "ell_xla", 64: "csr"})  # [(8, "ell_xla"), (None, "csr")]
    ```
    """
    batches = sorted(chosen)
    found = []
    for low, high in zip(batches, batches[1:]):
        bound = int(math.floor(math.sqrt(low * high)))
        if found and found[-1][1] == chosen[low]:
            found[-1] = (bound, chosen[low])
        else:
            found.append((bound, chosen[low]))
    last = chosen[batches[-1]]
    if found and found[-1][1] == last:
        found[-1] = (None, last)
    else:
        found.append((None, last))
    return found
