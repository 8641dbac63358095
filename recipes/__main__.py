"""Command line: `python -m recipes list`, `run NAME ...` and `study NAME ...`.

`run` and `study` take the same flags (`recipes.flags`); each kind of run
uses a flag or refuses it with the reason. Every run goes through the one
cell executor (`recipes.executor`).
"""

import argparse
import sys

from recipes import configs, flags, launch


def _list(data_dir=None):
    from recipes import listing  # reads the TFDS data directory: only for `list`

    print(listing.render(data_dir))


def parser():
    """The `python -m recipes` argument parser."""
    main = argparse.ArgumentParser(prog="python -m recipes",
                                   description="Run the papers' experiments.")
    commands = main.add_subparsers(dest="command", required=True)
    listed = commands.add_parser("list", help="list the recipes: dataset (prepared here?), "
                                              "cpu preset time here, paper budget; and the "
                                              "studies")
    listed.add_argument("--data-dir", help="TFDS data directory to check (default: "
                                           "$TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    flags.add(commands.add_parser("run", help="run one recipe (one cell, one seed)"))
    flags.add(commands.add_parser("study", help="run a study: a grid of cells x seeds"))
    return main


def kind(command, name):
    """"recipe", "grid" or "analysis": which runner `command NAME` is (None: unknown)."""
    from recipes import analysis_studies, studies

    if command == "run":
        return "recipe" if name in configs.RECIPES else None
    if name in analysis_studies.STUDIES:
        return "analysis"
    return "grid" if name in studies.STUDIES else None


def main(argv=None):
    cli = parser()
    args = cli.parse_args(argv)
    if args.command == "list":
        _list(args.data_dir)
        return 0
    which = kind(args.command, args.name)
    if which is None:
        cli.error(_unknown(args.command, args.name))
    refusals = flags.refused(which, args)
    if refusals:
        cli.error(f"not supported by `{args.command} {args.name}`: " + "; ".join(refusals))
    if args.seeds is not None and args.seeds < 1:
        cli.error(f"--seeds must be at least 1; got {args.seeds}")
    args = flags.defaults(args)
    prog = f"python -m recipes {args.command}"
    try:  # errors found before anything is written: a message, not a traceback
        _preflight(which, args)
    except ValueError as error:  # a bad argument or config, an unavailable strategy
        cli.error(str(error))
    except FileNotFoundError as error:  # a dataset that is not prepared
        cli.exit(2, f"{prog}: error: {error}\n")
    {"recipe": _run, "grid": _grid, "analysis": _analysis}[which](args)
    return 0


def _unknown(command, name):
    from recipes import analysis_studies, studies

    if command == "run":
        return (f"unknown recipe {name!r}; choose one of: {', '.join(configs.names())} "
                "(see `python -m recipes list`)")
    known = studies.names() + analysis_studies.names()
    return f"unknown study {name!r}; choose one of: {', '.join(known)}"


def _cells(args):
    return args.cells.split(",") if args.cells else None


def _preflight(which, args):
    """Every check of the run before anything is written (TensorFlow is imported here)."""
    from recipes import analysis_studies, runner, study

    options = launch.run_options(args)
    if which == "recipe":
        runner.preflight(args.name, args.preset, args.epochs, strategy=options["strategy"],
                         jit_compile=options["jit_compile"], data_dir=options["data_dir"],
                         download=options["download"])
    elif args.aggregate_only:  # the study and preset exist
        (analysis_studies.plan if which == "analysis" else study.plan)(args.name, args.preset)
    elif which == "analysis":
        analysis_studies.preflight(args.name, args.preset, args.seeds, _cells(args),
                                   args.data_dir, args.download)
    else:
        study.preflight(args.name, args.preset, args.seeds, _cells(args), options["strategy"],
                        options["data_dir"], options["download"])


def _run(args):
    from recipes import runner

    runner.run(args.name, preset=args.preset, epochs=args.epochs, seed=args.seed,
               out=args.out, export_root=args.export_root, commit=args.commit,
               **launch.run_options(args))


def _grid(args):
    from recipes import executor, study

    if args.aggregate_only:
        out = args.out or executor.default_out(args.name, args.preset)
        _aggregate(args, out, lambda: study.aggregate(args.name, out, preset=args.preset))
        print(f"aggregated into {out}")
        return
    study.run(args.name, preset=args.preset, seeds=args.seeds, out=args.out,
              cells=_cells(args), commit=args.commit, **launch.run_options(args))


def _analysis(args):
    from recipes import analysis_studies, executor

    if args.aggregate_only:
        out = args.out or executor.default_out(args.name, args.preset)
        _aggregate(args, out, lambda: analysis_studies.report(args.name, args.preset, out))
        return
    analysis_studies.run(args.name, args.preset, args.seeds, args.out, cells=_cells(args),
                         data_dir=args.data_dir, download=args.download, commit=args.commit)


def _aggregate(args, out, aggregate):
    """Runs `aggregate()`; with --commit, commits what it wrote."""
    from recipes import executor

    try:
        aggregate()
    except ValueError as error:  # no finished runs under `out`
        print(f"python -m recipes study: error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.commit:
        executor.git_committer(out, log=lambda line: None)(f"aggregated ({args.preset})")


if __name__ == "__main__":
    sys.exit(main())
