"""The one cell executor: every (cell, seed) run of `run`, `study` and the analysis studies.

It plans the (cell, seed) list, skips the runs already finished (a run
directory holding its `summary.json`), runs the rest, records each result
atomically, logs one progress line per run with an ETA and, with `commit`,
commits the output directory with git after every finished run.

```python
from recipes import executor

def train(cell, seed):
    return {"accuracy": 0.9}                     # any JSON-serializable dict

executor.execute([{"name": "sgd"}, {"name": "adam"}], [0, 1], train,
                 executor.grid_dirs("results/opt"), headline="accuracy")
```
"""

import os
import subprocess
from pathlib import Path

from keras_sparse.analysis import sweep

SUMMARY = sweep.SUMMARY


def default_out(name, preset="cpu"):
    """A study's output directory: `results/NAME` for the cpu tier, else `results/NAME/PRESET`.

    Args:
        name: the study name.
        preset: "cpu", "converged" or "paper".
    """
    return Path("results") / name if preset == "cpu" else Path("results") / name / preset


def grid_dirs(out):
    """`where(cell_name, seed) -> out/<cell_name>/seed_<seed>` (a study's layout).

    Args:
        out: the root of the runs (e.g. `results/NAME/runs`).
    """
    return lambda name, seed: sweep.run_dir(out, name, seed)


def plan(cells, seeds, where):
    """The runs in order (cell by cell, seeds inner): `[(cell, seed, run_dir, finished)]`.

    Args:
        cells: list of dicts, each with a unique "name" (`sweep.check_grid`).
        seeds: list of distinct ints >= 0.
        where: `where(cell_name, seed) -> directory` of one run.

    Raises:
        ValueError: bad `cells` or `seeds`.

    Example:

    ```python
    plan([{"name": "a"}], [0, 1], grid_dirs("results/toy"))  # [(cell, 0, ..., False), ...]
    ```
    """
    seeds = sweep.check_grid(cells, seeds)
    return [(cell, seed, Path(where(cell["name"], seed)),
             (Path(where(cell["name"], seed)) / SUMMARY).exists())
            for cell in cells for seed in seeds]


def execute(cells, seeds, run_cell, where, *, headline=None, log=print, commit=None,
            resume=True):
    """Runs `run_cell(cell, seed)` for every planned run not finished yet.

    After each run its result is written to `<run_dir>/summary.json` and one
    line is logged: `[k/N] <cell> seed=<s> <headline>=<v>  <secs>s  ETA
    <h:mm:ss>`, the ETA being the mean time of the runs done in this
    invocation times the runs left.

    Args:
        cells, seeds, where: as in `plan`.
        run_cell: `run_cell(cell, seed) -> dict` (JSON-serializable); it may
            write more files into the run's directory.
        headline: key of the result shown in the progress line (dots reach
            into nested dicts, e.g. "final.val_accuracy"), or None.
        log: called with each progress line.
        commit: a directory to `git commit` after every finished run (the
            progress line is the message), or None.
        resume: skip finished runs (False: run them again, replacing them).

    Returns:
        `[{"cell", "seed", "result"}]` for every planned run, in order.

    Example:

    ```python
    execute([{"name": "a", "lr": 0.1}], [0, 1], lambda cell, seed: {"acc": 0.9},
            grid_dirs("results/toy"), headline="acc", commit="results/toy")
    ```
    """
    runs = plan(cells, seeds, where)
    if commit is not None:
        log = git_committer(commit, log)
    return sweep.run_grid(cells, seeds, run_cell, _common_root(runs), headline=headline,
                          log=log, where=where, resume=resume)


def git_committer(out, log=print):
    """A `log` that also commits `out` with git after every line.

    For long studies: each finished run is committed at once with its
    progress line as the message, so a run cut off loses at most the run in
    progress. Run it from a `git worktree` pinned at the commit the study
    should use. Nothing staged: no commit.

    Args:
        out: the directory to add and commit.
        log: called with each line first.
    """

    def commit(line):
        log(line)
        subprocess.run(["git", "add", "--", str(out)], check=True)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode
        if staged:
            subprocess.run(["git", "commit", "-q", "-m", f"{out}: {line}"], check=True)

    return commit


def _common_root(runs):
    """The directory holding every run (for the "already done" line)."""
    return Path(os.path.commonpath([str(directory) for _, _, directory, _ in runs]))


