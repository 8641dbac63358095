"""Command line: `python -m recipes list`, `run NAME ...` and `study NAME ...`."""

import argparse
import sys

from recipes import configs


def _list():
    width = max(len(n) for n in configs.names())
    for name in configs.names():
        recipe = configs.get(name)
        presets = ", ".join(sorted(recipe.get("presets", {}))) or "-"
        print(f"{name:<{width}}  {recipe['title']}  [presets: {presets}]")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recipes",
                                     description="Run the papers' experiments.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the recipes")
    run = commands.add_parser("run", help="run one recipe")
    run.add_argument("name", help="recipe name (see `list`)")
    run.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                     help="cpu: reduced scale (default); paper: the paper's settings")
    run.add_argument("--epochs", type=int, help="override the preset's epochs")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--out", help="output directory (default runs/NAME)")
    run.add_argument("--export-root", help="TF Serving export root (default saved_models/)")
    study = commands.add_parser("study", help="run a study: a grid of cells x seeds")
    study.add_argument("name", help="study name (one of: see recipes/studies/)")
    study.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                       help="cpu: reduced scale (default); paper: the paper's settings")
    study.add_argument("--seeds", type=int, help="number of seeds (default: the study's)")
    study.add_argument("--out", help="output directory (default results/NAME)")
    study.add_argument("--cells", help="comma-separated cell names to run (default: all)")
    study.add_argument("--aggregate-only", action="store_true",
                       help="only re-aggregate the finished runs under --out")
    args = parser.parse_args(argv)

    if args.command == "list":
        _list()
        return 0
    if args.command == "study":
        return _study(parser, args)
    if args.name not in configs.RECIPES:
        parser.error(f"unknown recipe {args.name!r}; choose one of: {', '.join(configs.names())} "
                     "(see `python -m recipes list`)")
    from recipes import runner  # imports TensorFlow: only when running

    try:  # configuration errors: a message, not a traceback
        runner.resolve(args.name, args.preset, args.epochs)
    except ValueError as error:
        parser.error(str(error))
    try:
        runner.run(args.name, preset=args.preset, epochs=args.epochs, seed=args.seed,
                   out=args.out, export_root=args.export_root)
    except FileNotFoundError as error:  # a dataset that is not prepared
        parser.exit(2, f"python -m recipes run: error: {error}\n")
    return 0


def _study(parser, args):
    from recipes import studies

    if args.name not in studies.STUDIES:
        parser.error(f"unknown study {args.name!r}; choose one of: {', '.join(studies.names())}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    from recipes import study  # imports TensorFlow: only when running

    cells = args.cells.split(",") if args.cells else None
    try:  # configuration errors: a message, nothing written
        if args.aggregate_only:
            study.aggregate(args.name, args.out, preset=args.preset)
        else:
            study.plan(args.name, args.preset, args.seeds, cells)
    except ValueError as error:
        parser.error(str(error))
    if args.aggregate_only:
        print(f"aggregated into {args.out or study.default_out(args.name)}")
        return 0
    try:
        study.run(args.name, preset=args.preset, seeds=args.seeds, out=args.out, cells=cells)
    except FileNotFoundError as error:  # a dataset that is not prepared
        parser.exit(2, f"python -m recipes study: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
