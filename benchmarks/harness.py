"""Running a benchmark module and recording its result.

Every benchmark module measures through the helpers re-exported here, so
every comparison in `BENCHMARKS.md` is measured the same way:

- `timing`: `interleaved` side-by-side rounds, `summary`, `ratio`;
- `paired`: the paired CI, A/A control and status behind `ratio`, and
  `resolve` (more rounds until resolved, within a time box);
- `machine`: what the machine and the process are (`machine`, `rss_mb`);
- `workers`: subprocess workers (`Worker`, `serve`);
- `pacing`: `fit` callbacks pausing for the parent (`paced`, `blocks`);
- `report`: the Markdown report (`render`, `write_report`).

Standard library only: worker processes that must not load Keras (the
TensorFlow-only export loader, the tf_keras baseline) use it too.
"""

import dataclasses
import datetime
import json
import os
import time
import traceback
from pathlib import Path

from benchmarks.machine import machine, reset_peak_rss, rss_mb  # noqa: F401
from benchmarks.pacing import blocks, paced  # noqa: F401
from benchmarks.paired import needs_control, resolve  # noqa: F401
from benchmarks.paths import REPORT_PATH, RESULTS_DIR, ROOT  # noqa: F401
from benchmarks.report import load_results, render, write_report  # noqa: F401
from benchmarks.timing import interleaved, missing, ratio, summary, value  # noqa: F401
from benchmarks.workers import Worker, next_request, reply, serve  # noqa: F401

SCHEMA_VERSION = 2  # 2: paired CI, A/A control, "unresolved"
MODES = ("full", "quick", "tiny")
STATUSES = ("met", "not met", "unresolved", "not available", "info")


class NotAvailable(Exception):
    """A feature a benchmark needs is not in this build of keras_sparse."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How big a run is: `full` (the record), `quick` (< 5 min) or `tiny` (tests).

    Example:

    ```python
    steps = settings.pick(full=50, quick=10, tiny=2)
    ```
    """

    mode: str = "full"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; got {self.mode!r}.")

    def pick(self, full, quick, tiny):
        return {"full": full, "quick": quick, "tiny": tiny}[self.mode]


def run(module, settings, results_dir=RESULTS_DIR):
    """Runs one benchmark module and writes `results_dir/<NAME>.json`.

    `module.run(settings)` returns a dict with `measurements`, `comparisons`
    and optionally `config`, `data` and `notes`. A `NotAvailable` exception
    (a feature that has not landed) or any other error is recorded in the
    JSON with every target of `module.TARGETS` marked "not available", so
    the report always shows every target.

    Returns:
        The result dict that was written.
    """
    started = time.time()
    result = dict(
        schema_version=SCHEMA_VERSION,
        benchmark=module.NAME,
        title=module.TITLE,
        mode=settings.mode,
        started=datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine(),
        status="ok",
        config={},
        data={},
        measurements=[],
        comparisons=[],
        notes=[],
    )
    try:
        result.update(module.run(settings))
    except NotAvailable as error:
        result["status"] = "not available"
        result["notes"].append(f"not available: {error}")
    except Exception:
        result["status"] = "error"
        result["notes"].append("error:\n" + traceback.format_exc())
    if result["status"] != "ok":
        result["comparisons"] = [missing(**target) for target in module.TARGETS]
    result["duration_s"] = round(time.time() - started, 1)
    result["machine"]["load_average_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{module.NAME}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
