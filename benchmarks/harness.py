"""Side-by-side timing, machine description, subprocess workers, results.

Every benchmark module measures through these helpers, so every comparison
in `BENCHMARKS.md` is measured the same way:

- `interleaved` runs the compared configurations in alternating order
  (A B, B A, A B, ...), after warm-up rounds that are not recorded, so slow
  drift of a shared machine hits both sides alike;
- `summary` reports the median and the spread (quartiles, min, max);
- `ratio` builds a comparison with its target and says met / not met.

This module imports only the standard library: worker processes that must
not load Keras (the TensorFlow-only export loader, the tf_keras baseline)
use it too.
"""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

SCHEMA_VERSION = 1
MODES = ("full", "quick", "tiny")
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
REPORT_PATH = ROOT / "benchmarks" / "BENCHMARKS.md"
STATUSES = ("met", "not met", "not available", "info")
_REPLY = "@@benchmarks "


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


# -- timing -------------------------------------------------------------------


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


def ratio(name, numerator, denominator, target=None, op="<=", description="", paired=None):
    """A comparison `numerator / denominator` against a target.

    Args:
        name: short label of the comparison.
        numerator, denominator: measurement dicts (from `summary`/`value`) or
            `None` when not available; their medians are divided.
        target: the bound on the ratio, or `None` for an informational row.
        op: `"<="` or `">="`: how the ratio must relate to `target`.
        description: what the ratio means, for the report.
        paired: optional `(numerator_samples, denominator_samples)` from the
            same rounds of `interleaved`; their per-round ratios give the
            spread of the ratio.

    Example:

    ```python
    ratio("sparse / dense step", sparse, dense, target=1.05, op="<=")
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
        ratio_q1=None,
        ratio_q3=None,
        target=None if target is None else dict(op=op, value=float(target)),
        status="not available",
    )
    if numerator is None or denominator is None or not denominator["median"]:
        return comparison
    comparison["ratio"] = numerator["median"] / denominator["median"]
    if paired is not None:
        per_round = sorted(a / b for a, b in zip(*paired) if b)
        if per_round:
            comparison["ratio_q1"] = _quantile(per_round, 0.25)
            comparison["ratio_q3"] = _quantile(per_round, 0.75)
    if target is None:
        comparison["status"] = "info"
    else:
        comparison["status"] = "met" if _OPS[op](comparison["ratio"], target) else "not met"
    return comparison


def missing(name, target, op="<=", description=""):
    """A comparison that could not be measured (status "not available")."""
    return ratio(name, None, None, target=target, op=op, description=description)


# -- the machine --------------------------------------------------------------


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine():
    """Describes this machine and the software versions, for the report.

    Versions come from package metadata: tensorflow_model_optimization is
    never imported here (it would switch the process to tf_keras).
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:
        gpus = []
    return dict(
        cpu=_cpu_model(),
        logical_cores=os.cpu_count(),
        usable_cores=usable,
        memory_gb=_memory_gb(),
        gpus=gpus,
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        platform=platform.platform(),
        python=platform.python_version(),
        versions={
            p: _version(p)
            for p in ("tensorflow", "keras", "numpy", "tensorflow-datasets",
                      "tf-keras", "tensorflow-model-optimization")
        },
    )


def rss_mb():
    """`(current, peak)` resident set size of this process, in MiB.

    The peak is Linux's VmHWM, which `reset_peak_rss` can restart; elsewhere
    `ru_maxrss` (peak since the process started) and no current value.
    """
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return None, peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss():
    """Restarts the peak of `rss_mb` at the current RSS (Linux); True if it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- worker processes ---------------------------------------------------------


class Worker:
    """A Python subprocess answering JSON requests, one line each.

    The worker module calls `serve({command: handler})`. Requests and
    replies are JSON objects; a reply line starts with a marker, so whatever
    libraries print to stdout is skipped. An exception in the worker is
    raised here as `RuntimeError` with the worker's traceback.

    Args:
        module: the module to run with `python -m`.
        *args: its command-line arguments.
        env: environment variables to set on top of this process's.

    Example:

    ```python
    with Worker("benchmarks.tfmot_worker", env={"TF_USE_LEGACY_KERAS": "1"}) as w:
        seconds = w.request("train", steps=100)["seconds"]
    ```
    """

    def __init__(self, module, *args, env=None):
        self.module = module
        full_env = dict(os.environ)
        full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p
        )
        full_env.update(env or {})
        # stderr (TensorFlow's logs) goes to a file: shown only on failure.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=ROOT,
            env=full_env,
        )

    def _stderr_tail(self, lines=30):
        self._stderr.seek(0)
        return "".join(self._stderr.readlines()[-lines:])

    def request(self, command, **arguments):
        """Sends one request and returns the worker's reply (a dict)."""
        try:
            self.process.stdin.write(json.dumps(dict(arguments, command=command)) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # reported below with the worker's stderr
        for line in self.process.stdout:
            if line.startswith(_REPLY):
                reply = json.loads(line[len(_REPLY):])
                if "error" in reply:
                    raise RuntimeError(f"{self.module} worker failed on {command!r}:\n{reply['error']}")
                return reply
        self.process.wait()
        raise RuntimeError(
            f"{self.module} worker exited with code {self.process.returncode} "
            f"during {command!r}; its stderr ends with:\n{self._stderr_tail()}"
        )

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"command": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def reply(message):
    """Worker side: sends one reply (a JSON-able dict) to the parent."""
    sys.stdout.write(_REPLY + json.dumps(message) + "\n")
    sys.stdout.flush()


def next_request():
    """Worker side: the next request as `(command, arguments)`; "quit" at EOF."""
    line = sys.stdin.readline()
    if not line:
        return "quit", {}
    request = json.loads(line)
    return request.pop("command"), request


def serve(handlers):
    """The worker side of `Worker`: answers requests until "quit" or EOF.

    Args:
        handlers: `{command: fn}`; `fn(**arguments)` returns a JSON-able dict.
            A handler may itself `reply` and wait for `next_request` to hand
            control back to the parent midway (see `paced`).
    """
    while True:
        command, arguments = next_request()
        if command == "quit":
            return
        try:
            if command not in handlers:
                raise ValueError(f"unknown command {command!r}; known: {sorted(handlers)}")
            message = handlers[command](**arguments)
        except Exception:  # the parent re-raises it with this traceback
            message = {"error": traceback.format_exc()}
        reply(message)


def paced(callback_class, block_steps):
    """A `fit` callback pausing every `block_steps` steps for the parent.

    Lets two worker processes each run one ordinary `fit` while the parent
    alternates them block by block (interleaved timing without splitting
    training into many `fit` calls). Before the first step of each block but
    the first, the worker replies `{"seconds": previous block's time,
    "step": steps done}` and waits for a "continue" request; the last
    block's time is `last_seconds` after `fit`. Works with Keras 3 and
    tf_keras callbacks (`callback_class`).

    It uses `on_train_batch_begin` only: a callback overriding
    `on_train_batch_end` makes Keras 3 run every step's batch-end work
    synchronously, which would slow the measured side down.

    Example:

    ```python
    pacer = harness.paced(keras.callbacks.Callback, 100)()
    model.fit(ds, epochs=epochs, callbacks=[pacer])   # handler of "train"
    return {"seconds": pacer.last_seconds}
    ```
    """

    class Pacer(callback_class):
        def on_train_begin(self, logs=None):
            self.step, self.last_seconds = 0, None
            self.start = time.perf_counter()

        def _block_time(self):
            int(self.model.optimizer.iterations)  # waits for the device
            return time.perf_counter() - self.start

        def on_train_batch_begin(self, batch, logs=None):
            if self.step and self.step % block_steps == 0:
                reply({"seconds": self._block_time(), "step": self.step})
                command, _ = next_request()
                if command != "continue":
                    raise RuntimeError(f"paced: expected 'continue', got {command!r}")
                self.start = time.perf_counter()
            self.step += 1

        def on_train_end(self, logs=None):
            self.last_seconds = self._block_time()

    return Pacer


def blocks(worker, start="train"):
    """A callable for `interleaved` that advances a `paced` worker one block.

    The first call sends `start` (which begins `fit`), later ones "continue";
    each returns the seconds the worker measured for its block.
    """
    started = []

    def run():
        message = worker.request("continue" if started else start)
        started.append(True)
        return message["seconds"]

    return run


# -- results ------------------------------------------------------------------


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


def load_results(results_dir=RESULTS_DIR, order=()):
    """Every `<name>.json` in `results_dir`, the names in `order` first."""
    files = {p.stem: p for p in Path(results_dir).glob("*.json")}
    names = [n for n in order if n in files] + sorted(set(files) - set(order))
    return [json.loads(files[n].read_text()) for n in names]


# -- the report ---------------------------------------------------------------


def _number(x, digits=3):
    if x is None:
        return "–"
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:.2e}"


def _target_text(comparison):
    target = comparison["target"]
    return "–" if target is None else f"{target['op']} {_number(target['value'])}"


def _ratio_text(comparison):
    text = _number(comparison["ratio"])
    if comparison.get("ratio_q1") is not None:
        text += f" [{_number(comparison['ratio_q1'])}–{_number(comparison['ratio_q3'])}]"
    return text


def _machine_lines(machines):
    first = machines[0]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v)
    lines = [
        "| | |",
        "|---|---|",
        f"| CPU | {first['cpu']} ({first['usable_cores']} usable of {first['logical_cores']} logical cores) |",
        f"| memory | {first['memory_gb']} GB |",
        f"| GPU | {', '.join(first['gpus']) or 'none'} |",
        f"| platform | {first['platform']}, Python {first['python']} |",
        f"| software | {versions} |",
    ]
    loads = [m.get("load_average") for m in machines if m.get("load_average")]
    if loads:
        worst = max(load[0] for load in loads)
        lines.append(f"| highest 1-min load average at a benchmark start | {worst} |")
    if len({(m["cpu"], m["usable_cores"]) for m in machines}) > 1:
        lines.append("| note | the results below come from different machines |")
    return lines


def render(results):
    """`BENCHMARKS.md` text for a list of result dicts."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks run` from `benchmarks/results/*.json`;",
        "do not edit by hand (`python -m benchmarks report` regenerates it).",
        "Each comparison runs its configurations side by side in one process",
        "run, alternating their order, warm-up excluded; numbers are medians",
        "with the interquartile range of the per-round ratios in brackets.",
        "",
    ]
    if not results:
        return "\n".join(lines + ["No results yet.", ""])
    modes = sorted({r["mode"] for r in results})
    if modes != ["full"]:
        lines += [
            f"**Mode: {', '.join(modes)}.** Not a full run: reduced sizes, not the "
            "project's performance record.",
            "",
        ]
    lines += ["## Machine", ""] + _machine_lines([r["machine"] for r in results]) + [""]
    lines += [
        "## Targets",
        "",
        "| benchmark | comparison | ratio | target | status |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for c in result["comparisons"]:
            if c["target"] is not None:
                lines.append(
                    f"| {result['benchmark']} | {c['name']} | {_ratio_text(c)} | "
                    f"{_target_text(c)} | **{c['status']}** |"
                )
    lines.append("")
    for result in results:
        lines += [
            f"## {result['benchmark']}: {result['title']}",
            "",
            f"Mode `{result['mode']}`, started {result['started']}, took "
            f"{result['duration_s']} s, status {result['status']}.",
            "",
        ]
        for key in ("data", "config"):
            if result.get(key):
                lines.append(f"- {key}: " + "; ".join(f"{k}: {v}" for k, v in result[key].items()))
        if result.get("data") or result.get("config"):
            lines.append("")
        if result["measurements"]:
            lines += ["| measurement | unit | median | q1 | q3 | min | max | n |", "|---|---|---|---|---|---|---|---|"]
            for m in result["measurements"]:
                lines.append(
                    f"| {m['name']} | {m['unit']} | {_number(m['median'])} | {_number(m['q1'])} | "
                    f"{_number(m['q3'])} | {_number(m['min'])} | {_number(m['max'])} | {m['n']} |"
                )
            lines.append("")
        if result["comparisons"]:
            lines += ["| comparison | meaning | ratio | target | status |", "|---|---|---|---|---|"]
            for c in result["comparisons"]:
                lines.append(
                    f"| {c['name']} | {c['description']} | {_ratio_text(c)} | "
                    f"{_target_text(c)} | {c['status']} |"
                )
            lines.append("")
        for note in result.get("notes", []):
            if "\n" in note:  # a traceback: its end says what failed
                lines += ["```", *note.rstrip().splitlines()[-12:], "```"]
            else:
                lines.append(f"- {note}")
        if result.get("notes"):
            lines.append("")
    return "\n".join(lines)


def write_report(results_dir=RESULTS_DIR, report_path=REPORT_PATH, order=()):
    """Regenerates the report from every JSON in `results_dir`."""
    text = render(load_results(results_dir, order))
    Path(report_path).write_text(text)
    return text
