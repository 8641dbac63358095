"""keras_sparse.analysis: statistics against scipy, and the resumable grid runner."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import scipy.stats

from keras_sparse.analysis import stats, sweep

# A hand-made table: accuracy of three methods on the same 4 and 7 seeds.
BASE4 = [0.812, 0.804, 0.821, 0.809]
METHOD4 = [0.825, 0.811, 0.830, 0.809]
BASE7 = [0.81, 0.79, 0.84, 0.80, 0.83, 0.77, 0.82]
METHOD7 = [0.83, 0.80, 0.85, 0.83, 0.82, 0.80, 0.86]


def test_summarize_matches_scipy():
    out = stats.summarize(BASE7)
    assert out["n"] == 7
    assert out["mean"] == pytest.approx(sum(BASE7) / 7, abs=1e-15)
    assert out["std"] == pytest.approx(float(scipy.stats.tstd(BASE7)), rel=1e-12)
    lo, hi = scipy.stats.t.interval(0.95, 6, loc=out["mean"], scale=scipy.stats.sem(BASE7))
    assert out["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    one = stats.summarize([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["std"]) and one["n"] == 1


def test_paired_test_matches_scipy_and_names_the_test():
    small = stats.paired_test(METHOD4, BASE4)  # n < 6: paired t-test
    ref = scipy.stats.ttest_rel(METHOD4, BASE4)
    assert small["test"] == "ttest" and small["n"] == 4
    assert small["statistic"] == float(ref.statistic)
    assert small["p_value"] == float(ref.pvalue)
    assert small["mean_diff"] == pytest.approx(sum(m - b for m, b in zip(METHOD4, BASE4)) / 4)
    large = stats.paired_test(METHOD7, BASE7)  # n >= 6: Wilcoxon signed-rank
    ref = scipy.stats.wilcoxon(METHOD7, BASE7)
    assert large["test"] == "wilcoxon"
    assert large["statistic"] == float(ref.statistic)
    assert large["p_value"] == float(ref.pvalue)
    forced = stats.paired_test(METHOD7, BASE7, test="ttest")
    assert forced["p_value"] == float(scipy.stats.ttest_rel(METHOD7, BASE7).pvalue)
    same = stats.paired_test(BASE4, BASE4)
    assert same["p_value"] == 1.0 and same["mean_diff"] == 0.0


def test_holm_hand_computed():
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06 (monotone), 0.5*1=0.5
    assert stats.holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert stats.holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])  # capped at 1, then monotone
    assert stats.holm([]) == []


def test_kendall_matches_scipy():
    x, y = [0.1, 0.4, 0.35, 0.8, 0.5], [1.0, 2.0, 2.5, 4.0, 3.0]
    ref = scipy.stats.kendalltau(x, y)
    out = stats.kendall(x, y)
    assert out == {"tau": float(ref.statistic), "p_value": float(ref.pvalue), "n": 5,
                   "omitted": 0}


@pytest.mark.parametrize("call, match", [
    (lambda: stats.summarize([]), "at least one"),
    (lambda: stats.paired_test([1, 2], [1, 2, 3]), "same length"),
    (lambda: stats.paired_test([1], [2]), "at least 2"),
    (lambda: stats.paired_test([1, 2], [2, 3], test="sign"), "test='sign'"),
    (lambda: stats.holm([0.5, 1.5]), r"\[0, 1\]"),
    (lambda: stats.kendall([1, 2], [1]), "same length"),
])
def test_stats_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


TOY = textwrap.dedent("""
    import sys, time
    from keras_sparse.analysis import sweep
    out, calls = sys.argv[1], sys.argv[2]
    def run_cell(cell, seed):
        with open(calls, "a") as f:
            f.write(f"{cell['name']} {seed}\\n")
        time.sleep(float(sys.argv[3]))
        return {"score": cell["x"] * 10 + seed, "pad": "x" * 200000}
    cells = [{"name": f"c{i}", "x": i} for i in range(4)]
    sweep.run_grid(cells, [0, 1], run_cell, out, headline="score")
""")


def test_run_grid_resumes_after_kill(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(TOY)
    out, calls = tmp_path / "out", tmp_path / "calls.txt"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(calls), "0.3"],
                            env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(list(out.glob("*/seed_*/summary.json"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    finished = {(p.parent.parent.name, int(p.parent.name[5:]))
                for p in out.glob("*/seed_*/summary.json")}
    assert 3 <= len(finished) < 8
    for path in out.glob("*/seed_*/summary.json"):  # never half-written
        json.loads(path.read_text())
    calls.write_text("")
    done = subprocess.run([sys.executable, str(script), str(out), str(calls), "0"], env=env,
                          capture_output=True, text=True, check=True)
    rerun = {(n, int(s)) for n, s in (line.split() for line in calls.read_text().splitlines())}
    assert not rerun & finished  # finished runs were skipped
    assert rerun | finished == {(f"c{i}", s) for i in range(4) for s in (0, 1)}
    assert f"{len(finished)} of 8 runs already done" in done.stdout
    assert "[8/8] c3 seed=1 score=31" in done.stdout and "ETA 0:00:00" in done.stdout
    results = sweep.load_results(out)
    assert [(c, s, r["score"]) for c, s, r in results] == [
        (f"c{i}", s, i * 10 + s) for i in range(4) for s in (0, 1)]


def test_run_grid_progress_lines_and_return(tmp_path):
    lines = []
    got = sweep.run_grid([{"name": "a", "v": 1.0}, {"name": "b", "v": 2.0}], [3],
                         lambda cell, seed: {"final": {"acc": cell["v"] / 4}},
                         tmp_path, headline="final.acc", log=lines.append)
    assert [g["result"]["final"]["acc"] for g in got] == [0.25, 0.5]
    assert lines[0].startswith("[1/2] a seed=3 final.acc=0.2500  0s  ETA 0:00:0")
    assert lines[1].startswith("[2/2] b seed=3 final.acc=0.5000")
    assert (tmp_path / "b" / "seed_3" / "summary.json").exists()


@pytest.mark.parametrize("cells, seeds, match", [
    ([{"name": "a"}, {"name": "a"}], [0], "unique"),
    ([{"x": 1}], [0], "'name'"),
    ([{"name": "a/b"}], [0], "'name'"),
    ([{"name": "a"}], [], "seeds"),
    ([{"name": "a"}], [0, 0], "seeds"),
])
def test_run_grid_bad_input_writes_nothing(tmp_path, cells, seeds, match):
    with pytest.raises(ValueError, match=match):
        sweep.run_grid(cells, seeds, lambda c, s: {}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
