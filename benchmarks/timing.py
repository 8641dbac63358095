"""Side-by-side timing and comparisons: `interleaved`, `summary`, `ratio`.

- `interleaved` runs the compared configurations in alternating order
  (A B, B A, A B, ...), after warm-up rounds that are not recorded, so slow
  drift of a shared machine hits both sides alike;
- `summary` reports the median and the spread (quartiles, min, max);
- `ratio` builds a comparison with its target, scored on paired rounds
  (`paired`: 95% CI, A/A control, met / not met / unresolved).

Standard library only (worker processes use it too).
"""

import statistics
import time

from benchmarks.paired import log_ratio_ci, status


def interleaved(candidates, repeats, warmup=1):
    """Times callables side by side, alternating their order each round.

    Args:
        candidates: `{name: fn}`; `fn()` runs one block of work and returns
            when it is finished. It may return the seconds it measured itself
            (e.g. inside a worker process); otherwise the wall time of the
            call is used.
        repeats: recorded rounds; every candidate runs once per round.
        warmup: rounds run first and not recorded (tracing, caches).

    Returns:
        `{name: [seconds per round]}`; index `i` of every list comes from the
        same round, so the lists can be compared pairwise.

    Example:

    ```python
    times = interleaved({"dense": run_dense, "sparse": run_sparse}, repeats=5)
    ```
    """
    if not candidates:
        raise ValueError("`candidates` must name at least one callable.")
    if int(repeats) < 1:
        raise ValueError(f"`repeats` must be >= 1; got {repeats!r}.")
    if int(warmup) < 0:
        raise ValueError(f"`warmup` must be >= 0; got {warmup!r}.")
    names = list(candidates)
    samples = {name: [] for name in names}
    for round_index in range(int(warmup) + int(repeats)):
        # A B, B A, A B, ...: a linear drift in machine speed cancels out.
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            measured = candidates[name]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(float(measured) if measured is not None else elapsed)
    return samples


def _quantile(sorted_values, q):
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summary(name, samples, unit, scale=1.0):
    """Median and spread of `samples` (each multiplied by `scale`).

    Returns a measurement dict: `name`, `unit`, `median`, `q1`, `q3`, `min`,
    `max`, `n` and the `samples` themselves.

    Example:

    ```python
    summary("lenet/dense", seconds, "ms/step", scale=1000 / steps)
    ```
    """
    values = sorted(float(s) * scale for s in samples)
    if not values:
        raise ValueError(f"summary({name!r}): no samples.")
    return dict(
        name=name,
        unit=unit,
        median=statistics.median(values),
        q1=_quantile(values, 0.25),
        q3=_quantile(values, 0.75),
        min=values[0],
        max=values[-1],
        n=len(values),
        samples=[float(s) * scale for s in samples],
    )


def value(name, number, unit):
    """A single-number measurement (a size, an accuracy), same keys as `summary`."""
    return summary(name, [number], unit)


_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def ratio(name, numerator, denominator, target=None, op="<=", description="", paired=None,
          control=None):
    """A comparison `numerator / denominator` against a target.

    Args:
        name: short label of the comparison.
        numerator, denominator: measurement dicts (from `summary`/`value`) or
            `None` when not available.
        target: the bound on the ratio, or `None` for an informational row.
        op: `"<="` or `">="`: how the ratio must relate to `target`.
        description: what the ratio means, for the report.
        paired: optional `(numerator_samples, denominator_samples)` from the
            same rounds of `interleaved`. The ratio is then the geometric
            mean of the per-round ratios, with its 95% CI, and the status
            comes from `paired.status`. Without it (single numbers, e.g. a
            size) the ratio of the medians is compared with the target.
        control: optional `(samples, samples)`: an A/A control (the
            baseline against itself) from the same rounds.

    Example:

    ```python
    ratio("sparse / dense step", sparse, dense, target=1.05, op="<=",
          paired=(t["sparse"], t["dense"]), control=(t["dense, again"], t["dense"]))
    ```
    """
    if op not in _OPS:
        raise ValueError(f"`op` must be one of {sorted(_OPS)}; got {op!r}.")
    comparison = dict(
        name=name,
        description=description,
        numerator=numerator["name"] if numerator else None,
        denominator=denominator["name"] if denominator else None,
        ratio=None,
        ci_low=None,
        ci_high=None,
        rounds=None,
        control=None,
        target=None if target is None else dict(op=op, value=float(target)),
        status="not available",
    )
    if numerator is None or denominator is None or not denominator["median"]:
        return comparison
    if paired is None:
        comparison["ratio"] = numerator["median"] / denominator["median"]
        ok = target is not None and _OPS[op](comparison["ratio"], target)
        comparison["status"] = "info" if target is None else "met" if ok else "not met"
        return comparison
    ci = log_ratio_ci(*paired)
    comparison.update(ratio=ci["ratio"], ci_low=ci["low"], ci_high=ci["high"], rounds=ci["n"])
    if control is not None:
        comparison["control"] = log_ratio_ci(*control)
    if target is None:
        comparison["status"] = "info"
    else:
        comparison["status"] = status(ci, target, op, comparison["control"])
    return comparison


def missing(name, target, op="<=", description=""):
    """A comparison that could not be measured (status "not available")."""
    return ratio(name, None, None, target=target, op=op, description=description)
