"""The paired scoring of `benchmarks/paired.py` on synthetic timings:
CI, A/A control, met / not met / unresolved, and more rounds until
resolved. No real timing, no thresholds on speed."""

import math
import statistics

import pytest

from benchmarks import paired
from benchmarks.timing import ratio, summary


def _ci(ratio_value, low, high, n=10):
    return dict(ratio=ratio_value, low=low, high=high, n=n)


def test_t_quantiles_match_the_table_and_the_normal_limit():
    assert paired.t_quantile(1) == 12.706
    assert paired.t_quantile(30) == 2.042
    assert paired.t_quantile(40) == pytest.approx(2.021, abs=1e-3)
    assert paired.t_quantile(120) == pytest.approx(1.980, abs=1e-3)
    assert paired.t_quantile(10**6) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="df"):
        paired.t_quantile(0)


def test_ci_is_a_t_interval_on_log_ratios():
    num = [2.0, 2.4, 1.9, 2.2, 2.1]
    den = [1.0, 1.1, 1.0, 1.05, 0.95]
    logs = [math.log(a / b) for a, b in zip(num, den)]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = 2.776 * sd / math.sqrt(5)
    ci = paired.log_ratio_ci(num, den)
    assert ci["n"] == 5
    assert ci["ratio"] == pytest.approx(math.exp(mean))
    assert (ci["low"], ci["high"]) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    # b / a mirrors a / b.
    back = paired.log_ratio_ci(den, num)
    assert back["ratio"] == pytest.approx(1 / ci["ratio"])
    assert (back["low"], back["high"]) == pytest.approx((1 / ci["high"], 1 / ci["low"]))


def test_ci_is_paired_a_shared_slowdown_cancels():
    # The machine's speed varies 3x between rounds; the ratio is always 2.
    load = [1.0, 3.0, 1.5, 2.5, 1.2]
    ci = paired.log_ratio_ci([2 * x for x in load], load)
    assert (ci["ratio"], ci["low"], ci["high"]) == pytest.approx((2.0, 2.0, 2.0))


def test_ci_edge_cases():
    assert paired.log_ratio_ci([], [])["ratio"] is None
    one = paired.log_ratio_ci([2.0], [1.0])
    assert one["ratio"] == 2.0 and one["low"] == 0 and math.isinf(one["high"])
    assert paired.log_ratio_ci([2.0, 0.0, 4.0], [1.0, 1.0, 2.0])["n"] == 2  # skips a zero


@pytest.mark.parametrize("ci, target, op, want", [
    (_ci(2.5, 2.3, 2.7), 2.0, ">=", "met"),
    (_ci(1.8, 1.7, 1.9), 2.0, ">=", "not met"),
    (_ci(2.0, 1.9, 2.1), 2.0, ">=", "unresolved"),  # CI contains the target
    (_ci(1.00, 0.99, 1.005), 1.01, "<=", "met"),
    (_ci(1.05, 1.03, 1.07), 1.01, "<=", "not met"),
    (_ci(1.01, 1.0, 1.02), 1.01, "<=", "unresolved"),
    (_ci(3.0, 3.0, 3.2), 3.0, ">=", "met"),  # touching the target counts
])
def test_status_without_control(ci, target, op, want):
    assert paired.status(ci, target, op) == want


def test_status_is_unresolved_when_the_control_is_noisier_than_the_margin():
    ci = _ci(1.03, 1.02, 1.04)  # clearly above 1.01 by its own CI; margin ~2%
    quiet = _ci(1.0, 0.995, 1.01)  # A/A within 1%
    loud = _ci(1.04, 1.02, 1.06)  # A/A reads 4-6% with no difference
    assert paired.status(ci, 1.01, "<=", quiet) == "not met"
    assert paired.status(ci, 1.01, "<=", loud) == "unresolved"
    # A control with one round (unbounded) resolves nothing.
    assert paired.status(ci, 1.01, "<=", _ci(1.0, 0.0, math.inf, n=1)) == "unresolved"
    assert paired.noise(None) is None
    assert paired.noise(_ci(1.0, 0.9, 1.05)) == pytest.approx(-math.log(0.9))


def test_rows_within_5_percent_of_their_target_need_a_control():
    assert paired.needs_control(1.04, 1.0) and paired.needs_control(2.9, 3.0)
    assert not paired.needs_control(1.06, 1.0) and not paired.needs_control(2.5, 3.0)
    assert not paired.needs_control(None, 1.0)
    with pytest.raises(ValueError, match="op"):
        paired.status(_ci(1, 1, 1), 1, "<")


def test_ratio_scores_paired_samples_with_a_control():
    dense = [1.0, 1.2, 0.9, 1.1]
    sparse = [0.4, 0.5, 0.36, 0.44]
    m = {k: summary(k, v, "s") for k, v in (("dense", dense), ("sparse", sparse))}
    row = ratio("dense / sparse", m["dense"], m["sparse"], target=2.0, op=">=",
                paired=(dense, sparse), control=(dense, dense))
    assert row["status"] == "met" and row["rounds"] == 4
    assert row["control"]["ratio"] == pytest.approx(1.0)
    assert row["ci_low"] <= row["ratio"] <= row["ci_high"]


def _synthetic(ratio_value, spread, seed=0):
    """`run_rounds` for `resolve`: deterministic pseudo-random rounds of a given ratio."""
    import random
    rng = random.Random(seed)
    calls = []

    def run_rounds(n, warmup):
        calls.append((n, warmup))
        base = [rng.uniform(0.5, 2.0) for _ in range(n)]
        return {"dense": base,
                "sparse": [b / ratio_value * math.exp(rng.gauss(0, spread)) for b in base]}

    return run_rounds, calls


def _score(target):
    def score(samples):
        return [paired.status(paired.log_ratio_ci(samples["dense"], samples["sparse"]),
                              target, ">=")]
    return score


def test_resolve_stops_at_once_when_resolved():
    run_rounds, calls = _synthetic(3.0, 0.01)
    samples, info = paired.resolve(run_rounds, _score(2.0), repeats=5, time_box_s=60,
                                   max_rounds=40)
    assert calls == [(5, 1)] and info["stopped"] == "resolved" and info["rounds"] == 5
    assert len(samples["dense"]) == 5


def test_resolve_adds_rounds_until_resolved():
    run_rounds, calls = _synthetic(2.04, 0.1)  # 2% above the target, noisy rounds
    _, info = paired.resolve(run_rounds, _score(2.0), repeats=4, time_box_s=60, max_rounds=400)
    assert info["stopped"] == "resolved" and info["rounds"] > 4
    assert calls[0] == (4, 1) and all(c == (4, 0) for c in calls[1:])  # warm-up once


def test_resolve_gives_up_at_the_round_cap_and_says_so():
    run_rounds, _ = _synthetic(2.0, 0.1)  # exactly on the target: never resolves
    samples, info = paired.resolve(run_rounds, _score(2.0), repeats=3, time_box_s=60,
                                   max_rounds=9)
    assert info["rounds"] == 9 and len(samples["sparse"]) == 9
    assert info["stopped"] == "unresolved at 9 rounds (cap 9)"


def test_resolve_gives_up_when_the_time_box_is_spent():
    run_rounds, _ = _synthetic(2.0, 0.1)
    _, info = paired.resolve(run_rounds, _score(2.0), repeats=3, time_box_s=0, max_rounds=90)
    assert info["rounds"] == 3 and "time box" in info["stopped"]
