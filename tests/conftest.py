"""Shared fixtures. Keep small: per-file helpers live in the test files."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_python():
    """Runs Python code in a fresh process (repo importable); returns stdout.

    For what must not share this process: a clean `import keras_sparse`,
    logical devices for tf.distribute, loading without keras_sparse.
    """

    def run(code, timeout=300, env=None):
        environ = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
        environ.update(env or {})
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environ,
            capture_output=True, text=True, timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    return run
