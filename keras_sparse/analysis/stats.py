"""Statistics of repeated runs: summaries, paired tests, Holm, Kendall's tau.

Small wrappers over scipy (imported when first needed, so importing
`keras_sparse` does not import scipy) that return plain dicts ready for JSON.

```python
from keras_sparse.analysis import stats
stats.summarize([0.91, 0.92, 0.90])        # mean, std, n, 95% CI
stats.paired_test([0.91, 0.92, 0.90], [0.89, 0.90, 0.90])
stats.holm([0.01, 0.04, 0.03])
stats.plateau([0.80, 0.85, 0.871, 0.872, 0.873])   # has a learning curve stopped moving?
stats.kendall_bootstrap(egf, grad_norm, accuracy, groups=configs)  # tau(egf) - tau(norm)
```
"""

import math

# Below this many pairs the Wilcoxon signed-rank test cannot reach p < 0.05
# (two-sided, exact: the smallest p is 2 / 2**n = 0.0625 at n = 5), so "auto"
# uses the paired t-test there.
WILCOXON_MIN_N = 6
TESTS = ("auto", "wilcoxon", "ttest")


def _scipy_stats():
    import scipy.stats  # lazy: only analysis code needs scipy

    return scipy.stats


def _floats(values, name):
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a sequence of numbers; got {values!r}.") from None
    return out


def summarize(values):
    """Mean, sample standard deviation and t-based 95% confidence interval.

    Args:
        values: a sequence of numbers (e.g. one metric over seeds), at least one.

    Returns:
        `{"mean", "std", "n", "ci95": [lo, hi]}`; `std` uses ddof=1 and the
        interval is `mean -/+ t(0.975, n-1) * std / sqrt(n)`. With one value,
        `std` is NaN and the interval is `[NaN, NaN]`.

    Raises:
        ValueError: if `values` is empty.

    Example:

    >>> summarize([1.0, 2.0, 3.0])["std"]
    1.0
    """
    x = _floats(values, "values")
    if not x:
        raise ValueError("`values` must hold at least one number; got an empty sequence.")
    n = len(x)
    mean = sum(x) / n
    if n < 2:
        return {"mean": mean, "std": math.nan, "n": n, "ci95": [math.nan, math.nan]}
    std = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = _scipy_stats().t.ppf(0.975, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci95": [mean - half, mean + half]}


def paired_test(a, b, test="auto"):
    """Two-sided paired test of `a` against `b` (same seeds, same order).

    Args:
        a: values of one method, one per seed.
        b: values of the other method on the same seeds.
        test: "wilcoxon" (signed-rank, `scipy.stats.wilcoxon`), "ttest"
            (`scipy.stats.ttest_rel`) or "auto": Wilcoxon from 6 pairs on,
            the paired t-test below (Wilcoxon cannot reach p < 0.05 with
            fewer than 6 pairs).

    Returns:
        `{"test": "wilcoxon"|"ttest", "statistic", "p_value", "n",
        "mean_diff"}` with `mean_diff = mean(a - b)`. When all differences
        are 0, `p_value` is 1.0 and `statistic` 0.0 (scipy gives NaN or
        raises there).

    Raises:
        ValueError: if the lengths differ, fewer than 2 pairs are given, or
            `test` is not one of "auto", "wilcoxon", "ttest".

    Example:

    >>> paired_test([0.9, 0.8, 0.7], [0.8, 0.8, 0.6])["test"]
    'ttest'
    """
    if test not in TESTS:
        raise ValueError(f"`test` must be one of {TESTS}; got test={test!r}.")
    x, y = _floats(a, "a"), _floats(b, "b")
    if len(x) != len(y):
        raise ValueError(f"`a` and `b` must pair up (same length); got {len(x)} and {len(y)}.")
    n = len(x)
    if n < 2:
        raise ValueError(f"A paired test needs at least 2 pairs; got {n}.")
    if test == "auto":
        test = "wilcoxon" if n >= WILCOXON_MIN_N else "ttest"
    diffs = [u - v for u, v in zip(x, y)]
    result = {"test": test, "n": n, "mean_diff": sum(diffs) / n}
    if all(d == 0 for d in diffs):
        return dict(result, statistic=0.0, p_value=1.0)
    st = _scipy_stats()
    out = st.wilcoxon(x, y) if test == "wilcoxon" else st.ttest_rel(x, y)
    p = float(out.pvalue)
    return dict(result, statistic=float(out.statistic), p_value=1.0 if math.isnan(p) else p)


def holm(p_values):
    """Holm-Bonferroni adjusted p-values, in the input order.

    The i-th smallest of m p-values becomes `max_{j<=i} min(1, (m - j + 1) *
    p_(j))`; reject where the adjusted value is below the level.

    Args:
        p_values: a sequence of p-values in [0, 1].

    Returns:
        A list of adjusted p-values, same order and length.

    Raises:
        ValueError: if a p-value is outside [0, 1] or NaN.

    Example:

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = _floats(p_values, "p_values")
    bad = [v for v in p if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"`p_values` must lie in [0, 1]; got {bad[0]!r}.")
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def kendall(x, y):
    """Kendall's tau-b between two paired sequences (`scipy.stats.kendalltau`).

    Args:
        x: a sequence of numbers.
        y: a sequence of numbers, same length.

    Returns:
        `{"tau", "p_value", "n", "omitted"}`: pairs holding a non-finite
        value (e.g. the NaN gradient norm of a network that diverged) are
        left out, `n` counts the pairs used and `omitted` the others (NaN
        tau and p when a sequence is constant or fewer than 2 pairs remain).

    Raises:
        ValueError: if the lengths differ or fewer than 2 pairs are given.

    Example:

    >>> round(kendall([1, 2, 3, float("nan")], [1, 3, 2, 4])["tau"], 3)
    0.333
    """
    u, v = _floats(x, "x"), _floats(y, "y")
    if len(u) != len(v):
        raise ValueError(f"`x` and `y` must pair up (same length); got {len(u)} and {len(v)}.")
    if len(u) < 2:
        raise ValueError(f"Kendall's tau needs at least 2 pairs; got {len(u)}.")
    kept = [(a, b) for a, b in zip(u, v) if math.isfinite(a) and math.isfinite(b)]
    omitted = len(u) - len(kept)
    if len(kept) < 2:
        return {"tau": math.nan, "p_value": math.nan, "n": len(kept), "omitted": omitted}
    out = _scipy_stats().kendalltau([a for a, _ in kept], [b for _, b in kept])
    return {"tau": float(out.statistic), "p_value": float(out.pvalue), "n": len(kept),
            "omitted": omitted}


def plateau(curve, fraction=0.2, tolerance=0.003):
    """Whether a learning curve has stopped moving over its last epochs.

    The window is the last `max(2, ceil(fraction * len(curve)))` values; the
    curve has plateaued when the largest and the smallest value in the
    window differ by less than `tolerance` (0.003 = 0.3 accuracy points).

    Args:
        curve: per-epoch values (e.g. test accuracy), at least 2.
        fraction: share of the epochs, at the end, that form the window.
        tolerance: largest spread (max - min) allowed inside the window.

    Returns:
        `{"converged", "window", "change", "tolerance", "last"}`: the
        verdict, the number of epochs in the window, their max - min, the
        tolerance and the last value.

    Raises:
        ValueError: fewer than 2 values, `fraction` outside (0, 1] or a
            negative `tolerance`.

    Example:

    >>> plateau([0.80, 0.85, 0.871, 0.872, 0.873])["converged"]
    True
    >>> plateau([0.80, 0.82, 0.84, 0.86, 0.88])["converged"]
    False
    """
    values = _floats(curve, "curve")
    if len(values) < 2:
        raise ValueError(f"`curve` must hold at least 2 values (one per epoch); got {len(values)}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1]; got fraction={fraction!r}.")
    if tolerance < 0:
        raise ValueError(f"`tolerance` must be >= 0; got tolerance={tolerance!r}.")
    window = min(len(values), max(2, math.ceil(fraction * len(values))))
    tail = values[-window:]
    change = max(tail) - min(tail)
    return {"converged": bool(change < tolerance), "window": window, "change": change,
            "tolerance": tolerance, "last": values[-1]}


def kendall_bootstrap(x, z, y, groups, num_resamples=2000, seed=0):
    """Bootstrap of `tau(x, y) - tau(z, y)` that resamples groups, not items.

    Items of one group (e.g. every network trained in one configuration:
    its seeds, dense and sparse) are not independent, so each resample
    draws as many groups as there are, with replacement, and keeps all the
    items of every drawn group. Both the signed difference and the
    difference of absolute values (`|tau(x, y)| - |tau(z, y)|`: which
    measure correlates more strongly, whatever the sign) are bootstrapped.

    Args:
        x: one measure per item (e.g. EGF at the last epoch).
        z: the measure compared with, per item.
        y: the target per item (e.g. final test accuracy).
        groups: the group label of each item (hashable).
        num_resamples: bootstrap resamples.
        seed: seeds the resampling.

    Returns:
        `{"tau_x", "tau_z", "diff", "abs_diff", "ci95", "abs_ci95",
        "p_value", "abs_p_value", "n", "groups", "num_resamples"}`: the
        taus on the data, the two differences, their percentile 95%
        intervals and two-sided bootstrap p-values, `2 * min(P(d* <= 0),
        P(d* >= 0))` with `(count + 1) / (num_resamples + 1)` for each
        share (capped at 1). Resamples where a tau is undefined (a
        constant sequence) are dropped. Items with a non-finite `x`, `z`
        or `y` (a network that diverged) are left out first; `n` counts
        the items used and `omitted` the others.

    Raises:
        ValueError: lengths that differ, fewer than 2 groups or
            `num_resamples` < 1.

    Example:

    ```python
    out = stats.kendall_bootstrap(egf, grad_norm, accuracy, groups=config_names)
    out["abs_diff"], out["abs_ci95"], out["abs_p_value"]
    ```
    """
    import numpy as np

    u, v, w = _floats(x, "x"), _floats(z, "z"), _floats(y, "y")
    labels = list(groups)
    if not len(u) == len(v) == len(w) == len(labels):
        raise ValueError(f"`x`, `z`, `y` and `groups` must have one entry per item; got lengths "
                         f"{len(u)}, {len(v)}, {len(w)}, {len(labels)}.")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"`num_resamples` must be a positive integer; got {num_resamples!r}.")
    names = list(dict.fromkeys(labels))
    if len(names) < 2:
        raise ValueError(f"`groups` must hold at least 2 distinct groups; got {len(names)}.")
    u, v, w = np.asarray(u), np.asarray(v), np.asarray(w)
    finite = np.isfinite(u) & np.isfinite(v) & np.isfinite(w)
    omitted = int(np.count_nonzero(~finite))
    u, v, w = u[finite], v[finite], w[finite]
    labels = [g for g, keep in zip(labels, finite) if keep]
    names = list(dict.fromkeys(labels))
    members = [np.array([i for i, g in enumerate(labels) if g == name]) for name in names]
    st = _scipy_stats()

    def taus(index):
        a = st.kendalltau(u[index], w[index]).statistic
        b = st.kendalltau(v[index], w[index]).statistic
        return float(a), float(b)

    tau_x, tau_z = taus(np.arange(len(u)))
    rng = np.random.default_rng(seed)
    signed, absolute = [], []
    for _ in range(num_resamples):
        drawn = rng.integers(0, len(members), len(members))
        a, b = taus(np.concatenate([members[k] for k in drawn]))
        if not (math.isnan(a) or math.isnan(b)):
            signed.append(a - b)
            absolute.append(abs(a) - abs(b))

    def interval(d):
        if not d:
            return [math.nan, math.nan], math.nan
        d = np.asarray(d)
        lo, hi = np.percentile(d, [2.5, 97.5])
        below = (np.count_nonzero(d <= 0) + 1) / (len(d) + 1)
        above = (np.count_nonzero(d >= 0) + 1) / (len(d) + 1)
        return [float(lo), float(hi)], float(min(1.0, 2 * min(below, above)))

    ci, p = interval(signed)
    abs_ci, abs_p = interval(absolute)
    return {"tau_x": tau_x, "tau_z": tau_z, "diff": tau_x - tau_z,
            "abs_diff": abs(tau_x) - abs(tau_z), "ci95": ci, "abs_ci95": abs_ci,
            "p_value": p, "abs_p_value": abs_p, "n": len(u), "omitted": omitted,
            "groups": len(names),
            "num_resamples": len(signed)}
