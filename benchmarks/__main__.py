"""`python -m benchmarks run [--quick] [--only NAME]`, `list`, `report`."""

import argparse
import importlib
import sys

from benchmarks import NAMES, harness


def _module(name):
    return importlib.import_module(f"benchmarks.{name}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run benchmarks, write JSON and BENCHMARKS.md")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced sizes, under 5 minutes on 2 cores")
    size.add_argument("--tiny", action="store_true", help="smallest sizes, a few seconds (for tests)")
    run.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                     help=f"run only NAME (repeatable); one of {', '.join(NAMES)}")
    for sub in (run, commands.add_parser("report", help="regenerate BENCHMARKS.md from the JSON")):
        sub.add_argument("--results", default=harness.RESULTS_DIR, help="directory of the JSON results")
        sub.add_argument("--report", default=harness.REPORT_PATH, help="path of the Markdown report")
    commands.add_parser("list", help="name every benchmark")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in NAMES:
            print(f"{name:18} {_module(name).TITLE}")
        return 0
    failed = []
    if args.command == "run":
        settings = harness.Settings("quick" if args.quick else "tiny" if args.tiny else "full")
        for name in args.only or NAMES:
            print(f"[benchmarks] {name} ({settings.mode}) ...", flush=True)
            result = harness.run(_module(name), settings, args.results)
            print(f"[benchmarks] {name}: {result['status']} in {result['duration_s']} s", flush=True)
            for c in result["comparisons"]:
                if c["target"] is not None:
                    ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.3g}"
                    target = f"{c['target']['op']} {c['target']['value']:g}"
                    print(f"    {c['name']}: {ratio} (target {target}) {c['status']}", flush=True)
            if result["status"] == "error":
                failed.append(name)
                print(result["notes"][-1], file=sys.stderr)
    harness.write_report(args.results, args.report, order=NAMES)
    print(f"[benchmarks] wrote {args.report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
