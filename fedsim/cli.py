"""The ``fedsim`` command line: ``run``, ``sweep``, ``report``, ``list``, ``plot``.

Exit codes: 0 success; 2 a bad scenario or argument (one message, no traceback); 1 a failed
run (for ``sweep``: at least one failed point, the others having run); 130 interrupted (every
finished round, and every finished sweep point, is already on disk).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from fedsim.errors import FedsimError, InvalidSettingError, ScenarioError
from fedsim.run.logs import quiet_flower

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsim", description="Federated-learning security simulator"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log Flower and fedsim details"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario")
    run.add_argument("file", help="scenario YAML file")
    run.add_argument("--out", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key (dotted path; value parsed as YAML); repeatable",
    )
    run.add_argument("--no-progress", action="store_true", help="no live display or final table")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run of FILE from its last checkpoint (checkpoint_every)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without it such a directory is refused)",
    )

    sweep = sub.add_parser("sweep", help="run every point of a scenario's sweep: grid")
    sweep.add_argument("file", help="scenario YAML file with a sweep: block")
    sweep.add_argument("--out", help="sweep directory (default: runs/<name>-sweep-<timestamp>)")
    sweep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key before expanding the grid; repeatable",
    )
    sweep.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="run N points at once as Ray tasks, each on its scenario's runtime (inline or "
        "vectorized; points on the ray runtime run here one after another, after the tasks); "
        "default 1: one after another in this process; with --ray-address: the cluster's CPUs",
    )
    sweep.add_argument(
        "--ray-address", metavar="ADDR", help="run the points on this Ray cluster (e.g. auto)"
    )
    sweep.add_argument(
        "--no-progress", action="store_true", help="no progress bar or per-point lines"
    )

    report = sub.add_parser(
        "report",
        help="write report.md for a run directory (by threat direction) or a sweep directory "
        "(mean ± std tables)",
    )
    report.add_argument("directory", help="a directory written by fedsim run or fedsim sweep")

    sub.add_parser("list", help="list registered datasets, models, aggregators and attacks")

    plot = sub.add_parser("plot", help="write accuracy/loss PNGs for a run directory")
    plot.add_argument("run_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsim`` console script.

    Without ``argv`` (the console script, ``python -m fedsim.cli``) an interrupted command
    also ends the process cleanly: see :func:`_end_after_interrupt`.
    """
    code = _main(argv)
    if code == INTERRUPTED and argv is None:
        _end_after_interrupt()
    return code


INTERRUPTED = 130


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    _quiet(args.verbose)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "report":
            return _report(args.directory)
        if args.command == "list":
            return _list()
        return _plot(args)
    except (ScenarioError, InvalidSettingError) as e:
        print(f"fedsim: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedsim: interrupted; finished rounds are in the run directory", file=sys.stderr)
        return INTERRUPTED
    except FedsimError as e:
        print(f"fedsim: run failed: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001  (one line for the user; details with -v)
        if args.verbose:
            raise
        print(
            f"fedsim: run failed: {type(e).__name__}: {_one_line(e)} (rerun with -v for details)",
            file=sys.stderr,
        )
        return 1


def _run(args: argparse.Namespace) -> int:
    from fedsim.run.runner import run_scenario
    from fedsim.scenario import load_scenario

    scenario = load_scenario(args.file, args.overrides)
    run_scenario(
        scenario,
        args.out,
        show_progress=not args.no_progress,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from fedsim.run.sweep import run_sweep

    try:
        outcome = run_sweep(
            args.file,
            args.out,
            args.overrides,
            parallel=args.parallel,
            ray_address=args.ray_address,
            show_progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            "fedsim: interrupted; finished points are kept (run the same command to resume)",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(outcome.sweep_dir / "results.csv")
    if outcome.report_error is not None:
        print(
            f"fedsim: the report could not be written ({outcome.report_error}); "
            f"try fedsim report {outcome.sweep_dir}",
            file=sys.stderr,
        )
        return 1
    print(outcome.sweep_dir / "report.md")
    if outcome.failed:
        print(
            f"fedsim: {outcome.failed} of {outcome.ran} point(s) failed; see the status column "
            "and error.txt in their directories",
            file=sys.stderr,
        )
        return 1
    return 0


def _report(directory: str) -> int:
    """A run directory (``metrics.jsonl``) gets the per-run report, anything else a sweep's."""
    from fedsim.reporting.run_report import write_run_report
    from fedsim.reporting.sweep_report import write_report

    if (Path(directory) / "metrics.jsonl").is_file():
        print(write_run_report(directory))
    else:
        print(write_report(directory))
    return 0


def _list() -> int:
    from fedsim.attacks import attack_names
    from fedsim.data import DATASETS
    from fedsim.data.tasks import TASKS
    from fedsim.evasion import EVASION_ATTACKS
    from fedsim.models import MODELS
    from fedsim.personalization import PERSONALIZATION
    from server import aggregators
    from server.probes import PROBES

    for kind, names in (
        ("datasets", DATASETS.names()),
        ("models", MODELS.names()),
        ("tasks", TASKS.names()),
        ("personalization", PERSONALIZATION.names()),
        ("aggregators", aggregators.names()),
        ("pre-stages", aggregators.pre_names()),
        ("attacks", attack_names()),
        ("evasion attacks", EVASION_ATTACKS.names()),
        ("probes", PROBES.names()),
    ):
        print(f"{kind}: {', '.join(names)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from fedsim.reporting.plots import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _one_line(error: BaseException) -> str:
    """An error's message on one line (the CLI's promise: one line, no traceback)."""
    return " ".join(str(error).split())


def _end_after_interrupt() -> None:
    """After an interrupt's one clean message: end the process now, with exit code 130.

    A normal interpreter exit after Ctrl-C can still go wrong in two ways: another SIGINT
    while it shuts down prints a ``KeyboardInterrupt`` traceback from ``threading._shutdown``
    (or, once Python has restored the default handler, kills the process), and a thread that
    is not a daemon and still runs (a Flower or Ray helper blocked on a reply that will never
    come) keeps it waiting forever. Every finished round and point is already on disk, and
    Ray was shut down where it was started, so the process flushes its output and exits at
    once, with SIGINT ignored meanwhile.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _quiet(verbose: bool) -> None:
    """Keep Flower's and Ray's per-round logging out of the way unless asked for."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    quiet_flower(verbose)
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())
