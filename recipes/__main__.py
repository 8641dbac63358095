"""Command line: `python -m recipes list`, `run NAME ...` and `study NAME ...`."""

import argparse
import sys

from recipes import configs, launch


def _list(data_dir=None):
    from recipes import listing  # reads the TFDS data directory: only for `list`

    print(listing.render(data_dir))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recipes",
                                     description="Run the papers' experiments.")
    commands = parser.add_subparsers(dest="command", required=True)
    listed = commands.add_parser("list", help="list the recipes: dataset (prepared here?), "
                                              "cpu preset time here, paper budget")
    listed.add_argument("--data-dir", help="TFDS data directory to check (default: "
                                           "$TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    run = commands.add_parser("run", help="run one recipe")
    run.add_argument("name", help="recipe name (see `list`)")
    run.add_argument("--preset", choices=("cpu", "paper", "converged"), default="cpu",
                     help="cpu: reduced scale (default); paper: the paper's settings; "
                            "converged: the paper's protocol on the whole small dataset, "
                            "trained to a plateau (studies that define it)")
    run.add_argument("--epochs", type=int, help="override the preset's epochs")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--out", help="output directory (default runs/NAME)")
    run.add_argument("--export-root", help="TF Serving export root (default saved_models/)")
    launch.add_run_options(run)
    study = commands.add_parser("study", help="run a study: a grid of cells x seeds")
    study.add_argument("name", help="study name (one of: see recipes/studies/)")
    study.add_argument("--preset", choices=("cpu", "paper", "converged"), default="cpu",
                       help="cpu: reduced scale (default); paper: the paper's settings; "
                            "converged: the paper's protocol on the whole small dataset, "
                            "trained to a plateau (studies that define it)")
    study.add_argument("--seeds", type=int, help="number of seeds (default: the study's)")
    study.add_argument("--out", help="output directory (default results/NAME)")
    study.add_argument("--cells", help="comma-separated cell names to run (default: all)")
    study.add_argument("--commit", action="store_true",
                       help="git-commit the output after every finished run (long studies)")
    study.add_argument("--aggregate-only", action="store_true",
                       help="only re-aggregate the finished runs under --out")
    launch.add_run_options(study)
    args = parser.parse_args(argv)

    if args.command == "list":
        _list(args.data_dir)
        return 0
    if args.command == "study":
        return _study(parser, args)
    if args.name not in configs.RECIPES:
        parser.error(f"unknown recipe {args.name!r}; choose one of: {', '.join(configs.names())} "
                     "(see `python -m recipes list`)")
    from recipes import runner  # imports TensorFlow: only when running

    options = launch.run_options(args)
    try:  # errors found before anything is written: a message, not a traceback
        runner.preflight(args.name, args.preset, args.epochs, strategy=options["strategy"],
                         jit_compile=options["jit_compile"], data_dir=options["data_dir"],
                         download=options["download"])
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"python -m recipes run: error: {error}\n")
    runner.run(args.name, preset=args.preset, epochs=args.epochs, seed=args.seed,
               out=args.out, export_root=args.export_root, **options)
    return 0


def _study(parser, args):
    from recipes import analysis_studies, studies

    known = studies.names() + analysis_studies.names()
    if args.name not in known:
        parser.error(f"unknown study {args.name!r}; choose one of: {', '.join(known)}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    if args.name in analysis_studies.STUDIES:  # SC-SDC sweeps and loss paths
        given = [flag for flag, value in (("--cells", args.cells),
                                          ("--strategy", args.strategy != "none"),
                                          ("--mixed-precision", args.mixed_precision),
                                          ("--jit-compile", args.jit_compile is not None),
                                          ("--data-dir", args.data_dir),
                                          ("--download", args.download)) if value]
        if given:
            parser.error(f"{', '.join(given)}: not supported by the analysis study "
                         f"{args.name!r} (it runs on the default device with "
                         "$TFDS_DATA_DIR); leave them out")
        try:
            analysis_studies.resolve(args.name, args.preset, args.seeds)  # nothing written yet
        except ValueError as error:
            parser.error(str(error))
        if args.aggregate_only:
            analysis_studies.report(args.name, args.preset, args.out)
        else:
            log = print
            if args.commit:
                from recipes.study import git_committer

                log = git_committer(args.out or analysis_studies.default_out(args.name,
                                                                             args.preset))
            analysis_studies.run(args.name, args.preset, args.seeds, args.out, log=log)
        return 0
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
        print(f"aggregated into {args.out or study.default_out(args.name, args.preset)}")
        return 0
    try:
        study.run(args.name, preset=args.preset, seeds=args.seeds, out=args.out, cells=cells,
                  commit=args.commit, **launch.run_options(args))
    except ValueError as error:  # e.g. a strategy this machine cannot provide
        parser.error(str(error))
    except FileNotFoundError as error:  # a dataset that is not prepared
        parser.exit(2, f"python -m recipes study: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
