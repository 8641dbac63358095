"""Subprocess workers answering JSON requests (`Worker`, and `serve` on their side).

Standard library only: workers that must not load Keras (the TensorFlow-only
export loader, the tf_keras baseline) import it.
"""

import json
import os
import subprocess
import sys
import tempfile
import traceback
from benchmarks.paths import ROOT

_REPLY = "@@benchmarks "


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
