"""A resumable grid runner: cells times seeds, one result file per run.

Every run writes `out_dir/<cell name>/seed_<s>/summary.json` atomically (a
temporary file renamed into place), so a sweep that is killed leaves only
complete result files and a rerun skips the runs that finished.

```python
from keras_sparse.analysis import sweep

cells = [{"name": "sgd"}, {"name": "adam"}]
def run_cell(cell, seed):
    return {"accuracy": train(cell, seed)}   # any JSON-serializable dict

sweep.run_grid(cells, seeds=[0, 1, 2], run_cell=run_cell, out_dir="results/opt",
               headline="accuracy")
for cell, seed, result in sweep.load_results("results/opt"):
    ...
```
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

SUMMARY = "summary.json"
_NAME = re.compile(r"^[A-Za-z0-9_.+=-]+$")


def run_dir(out_dir, cell_name, seed):
    """The directory of one run: `out_dir/<cell_name>/seed_<seed>`."""
    return Path(out_dir) / cell_name / f"seed_{seed}"


def write_json(path, data):
    """Writes `data` as JSON to `path` atomically (temp file + `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_grid(cells, seeds):
    """Raises ValueError unless `cells` have unique safe names and `seeds` are ints."""
    if not isinstance(cells, (list, tuple)) or not cells:
        raise ValueError(f"`cells` must be a non-empty list of dicts; got {cells!r}.")
    names = set()
    for cell in cells:
        name = cell.get("name") if isinstance(cell, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("Every cell must be a dict with a string 'name' of letters, "
                             f"digits and _.+=- (it names a directory); got {cell!r}.")
        if name in names:
            raise ValueError(f"Cell names must be unique; {name!r} appears twice.")
        names.add(name)
    seeds = list(seeds) if isinstance(seeds, (list, tuple, range)) else seeds
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds)):
        raise ValueError(f"`seeds` must be a non-empty list of distinct ints >= 0; got {seeds!r}.")
    return seeds


def clock_text(seconds):
    """`seconds` as `H:MM:SS` (progress lines)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def headline_text(result, headline):
    """` name=value` of a dotted key of `result` (progress lines), or ""."""
    if headline is None:
        return ""
    value = result
    for key in headline.split("."):  # "final.val_accuracy" reaches into dicts
        value = value.get(key) if isinstance(value, dict) else None
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    return f" {headline}={shown}"


def run_grid(cells, seeds, run_cell, out_dir, *, headline=None, log=print, where=None,
             resume=True):
    """Runs `run_cell(cell, seed)` for every cell and seed not done yet.

    Runs go cell by cell, seeds inner. A run is done when its
    `summary.json` exists; it is then read, not rerun. After every run one
    line is logged: `[k/N] <cell> seed=<s> <headline>=<v>  <secs>s  ETA
    <h:mm:ss>`, the ETA being the mean time of the runs done in this
    invocation times the runs left.

    Args:
        cells: list of dicts, each with a unique string "name" (letters,
            digits and `_.+=-`); the rest of the dict is for `run_cell`.
        seeds: list of distinct ints >= 0.
        run_cell: `run_cell(cell, seed) -> dict`, JSON-serializable; it may
            write more files under `run_dir(out_dir, cell["name"], seed)`.
        out_dir: root directory of the results.
        headline: key of the result shown in the progress line (dots reach
            into nested dicts, e.g. "final.val_accuracy"), or None.
        log: function called with each progress line (default `print`).
        where: `where(cell_name, seed) -> directory` of one run; default
            `run_dir(out_dir, cell_name, seed)`.
        resume: skip finished runs (False: run them again, replacing them).

    Returns:
        A list of `{"cell", "seed", "result"}` for every cell and seed, in
        grid order (finished earlier or now).

    Raises:
        ValueError: on bad `cells` or `seeds` (before any run), or if
            `run_cell` returns something other than a dict.

    Example:

    ```python
    run_grid([{"name": "a", "lr": 0.1}], [0, 1],
             lambda cell, seed: {"acc": 0.9}, "results/toy", headline="acc")
    ```
    """
    seeds = check_grid(cells, seeds)
    if not callable(run_cell):
        raise TypeError(f"`run_cell` must be callable; got {run_cell!r}.")
    out_dir = Path(out_dir)
    if where is None:
        def where(name, seed):
            return run_dir(out_dir, name, seed)
    runs = [(cell, seed, Path(where(cell["name"], seed)) / SUMMARY)
            for cell in cells for seed in seeds]
    todo = [run for run in runs if not (resume and run[2].exists())]
    if len(todo) < len(runs):
        log(f"{len(runs) - len(todo)} of {len(runs)} runs already done in {out_dir}; skipped.")
    durations = []
    for k, (cell, seed, summary) in enumerate(todo, start=len(runs) - len(todo) + 1):
        start = time.perf_counter()
        result = run_cell(cell, seed)
        if not isinstance(result, dict):
            raise ValueError(f"`run_cell` must return a dict; got {type(result).__name__} "
                             f"for cell {cell['name']!r} seed {seed}.")
        write_json(summary, result)
        durations.append(time.perf_counter() - start)
        eta = sum(durations) / len(durations) * (len(runs) - k)
        log(f"[{k}/{len(runs)}] {cell['name']} seed={seed}{headline_text(result, headline)}  "
            f"{durations[-1]:.0f}s  ETA {clock_text(eta)}")
    return [{"cell": cell, "seed": seed, "result": json.loads(summary.read_text())}
            for cell, seed, summary in runs]


def load_results(out_dir):
    """Every finished run under `out_dir`: a list of `(cell name, seed, result)`.

    Sorted by cell name, then seed. Temporary files of an interrupted run are
    ignored.
    """
    found = []
    for path in sorted(Path(out_dir).glob(f"*/seed_*/{SUMMARY}")):
        seed = path.parent.name[len("seed_"):]
        if seed.isdigit():
            found.append((path.parent.parent.name, int(seed), json.loads(path.read_text())))
    return sorted(found, key=lambda r: (r[0], r[1]))
