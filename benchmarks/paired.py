"""Paired scoring: a 95% CI from per-round ratios, an A/A control, met / not met / unresolved.

Each round of `timing.interleaved` times the baseline and the candidate back
to back (alternating order), so round `i`'s ratio compares two timings
taken under the same load. The ratio of a comparison is the geometric mean
of the per-round ratios, its 95% confidence interval a Student t interval
on their logarithms (`log_ratio_ci`): ratios of times are skewed, their
logarithms are close to symmetric, and `a/b` and `b/a` get mirrored
intervals.

An A/A control (the baseline against itself, or a second identical
process, timed in the same rounds) shows what the setup reads when there
is no difference: its distance from 1 (`noise`) includes biases the CI
cannot see (order effects, one process luckier than another). `status`:

- "unresolved": the control's noise is wider than the margin between the
  ratio and the target, or the CI contains the target;
- "met": the whole CI is on the target's side;
- "not met": the whole CI is on the wrong side.

`resolve` adds rounds while a row is unresolved, within a time box.

Standard library only (worker processes use it too).
"""

import math
import statistics
import time

__all__ = ["MARGIN_NEEDING_CONTROL", "log_ratio_ci", "margin", "needs_control", "noise",
           "resolve", "status", "t_quantile"]

# A row whose ratio is within 5% of its target needs an A/A control.
MARGIN_NEEDING_CONTROL = math.log(1.05)

# Two-sided 95% Student t quantiles, by degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df):
    """The 97.5% quantile of Student's t with `df` degrees of freedom (>= 1).

    A table up to 30, then the Cornish-Fisher expansion around the normal
    quantile (error < 1e-3).
    """
    if df < 1:
        raise ValueError(f"`df` must be >= 1; got {df!r}.")
    if df <= len(_T975):
        return _T975[int(df) - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def log_ratio_ci(numerator, denominator):
    """Geometric-mean ratio of paired samples and its 95% CI.

    Args:
        numerator, denominator: same-length sequences; entry `i` of both
            comes from round `i`. Pairs with a non-positive entry are
            skipped.

    Returns:
        `dict(ratio, low, high, n)`; with fewer than 2 pairs the interval
        is unbounded (`low=0`, `high=inf`), so nothing is resolved by it.

    Example:

    >>> ci = log_ratio_ci([2.0, 2.2, 1.8], [1.0, 1.1, 0.9])
    >>> round(ci["ratio"], 6), round(ci["low"], 6), round(ci["high"], 6)
    (2.0, 2.0, 2.0)
    """
    logs = [math.log(a / b) for a, b in zip(numerator, denominator) if a > 0 and b > 0]
    n = len(logs)
    if not n:
        return dict(ratio=None, low=None, high=None, n=0)
    mean = statistics.fmean(logs)
    if n < 2:
        return dict(ratio=math.exp(mean), low=0.0, high=math.inf, n=n)
    half = t_quantile(n - 1) * statistics.stdev(logs) / math.sqrt(n)
    return dict(ratio=math.exp(mean), low=math.exp(mean - half), high=math.exp(mean + half), n=n)


def noise(control):
    """How far an A/A control's CI reaches from 1, as a log-ratio (>= 0)."""
    if control is None or control["ratio"] is None:
        return None
    if control["low"] <= 0 or math.isinf(control["high"]):
        return math.inf
    return max(abs(math.log(control["low"])), abs(math.log(control["high"])))


def margin(ratio, target):
    """`|log(ratio / target)|`: how far a ratio is from its target."""
    return abs(math.log(ratio / target))


def status(ci, target, op, control=None):
    """"met", "not met" or "unresolved" for a paired CI against `target`.

    Args:
        ci: from `log_ratio_ci`.
        target: the bound; `op` is "<=" or ">=".
        control: `None` or the A/A control's `log_ratio_ci`.

    Example:

    >>> status(dict(ratio=2.5, low=2.3, high=2.7, n=9), 2.0, ">=")
    'met'
    """
    if ci["ratio"] is None:
        return "not available"
    if op not in ("<=", ">="):
        raise ValueError(f"`op` must be '<=' or '>='; got {op!r}.")
    control_noise = noise(control)
    if control_noise is not None and control_noise > margin(ci["ratio"], target):
        return "unresolved"
    good, bad = (ci["low"], ci["high"]) if op == ">=" else (-ci["high"], -ci["low"])
    bound = target if op == ">=" else -target
    if good >= bound:
        return "met"
    if bad < bound:
        return "not met"
    return "unresolved"


def needs_control(ratio, target):
    """Whether a row this close to its target must carry an A/A control."""
    return ratio is not None and margin(ratio, target) < MARGIN_NEEDING_CONTROL


def resolve(run_rounds, score, repeats, time_box_s, max_rounds):
    """Runs rounds until every scored row is resolved or the time box is spent.

    Args:
        run_rounds: `run_rounds(n, warmup)` times `n` more rounds and returns
            `{name: [seconds per round]}` (e.g. `timing.interleaved`).
        score: `score(samples)` returns the statuses of the target rows for
            the samples so far.
        repeats: rounds of the first batch; each later batch adds as many.
        time_box_s: no new batch starts once this much time has passed or
            the next batch would, at the pace so far, overrun it.
        max_rounds: no new batch past this many rounds in all.

    Returns:
        `(samples, info)`: the concatenated rounds and `dict(rounds,
        seconds, batches, stopped)`; `stopped` says why the loop ended.
    """
    start = time.perf_counter()
    samples = run_rounds(repeats, 1)
    batches = 1
    while True:
        rounds = len(next(iter(samples.values())))
        elapsed = time.perf_counter() - start
        if "unresolved" not in score(samples):
            stopped = "resolved"
            break
        if rounds + repeats > max_rounds:
            stopped = f"unresolved at {rounds} rounds (cap {max_rounds})"
            break
        if elapsed * (batches + 1) / batches > time_box_s:
            stopped = f"unresolved when the {time_box_s:.0f} s time box ran out"
            break
        more = run_rounds(repeats, 0)
        samples = {k: samples[k] + more[k] for k in samples}
        batches += 1
    return samples, dict(rounds=rounds, seconds=round(time.perf_counter() - start, 1),
                         batches=batches, stopped=stopped)
