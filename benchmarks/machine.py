"""The machine and the process: CPU, memory, versions, load, resident memory.

Standard library only; TensorFlow is imported lazily (for the GPU list).
"""

import importlib.metadata
import os
import platform
import sys
from pathlib import Path


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
