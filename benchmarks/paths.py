"""Where results and the report live."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
REPORT_PATH = ROOT / "benchmarks" / "BENCHMARKS.md"
