"""The ``caseiterator`` command line.

Exit codes: 0 all good; 1 some case has a problem; 2 the batch or the command is unusable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from CaseIteratorCoreLib import __version__
from CaseIteratorCoreLib.errors import CaseIteratorError
from rich.markup import escape

from . import console

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2


def _add_validate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate",
        help="check every case of a batch and list the problems",
        description="Load every case's headers (and pixels unless --headers-only) and list the "
        "cases with problems. Exit 0: all fine; 1: some case has a problem; 2: the batch "
        "itself is unusable.",
    )
    parser.add_argument("source", help="batch .toml file, CSV table or DICOM folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--headers-only",
        action="store_true",
        help="check headers and geometry only, without decoding pixels",
    )
    parser.set_defaults(run=_run_validate)


def _add_status(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="show the reading progress of a batch",
        description="Progress of a reader on a batch: counts per status and each case.",
    )
    parser.add_argument("source", help="batch .toml file, CSV table or DICOM folder")
    parser.add_argument("--reader", help="reader name (default: $CASEITERATOR_READER or login)")
    parser.add_argument("--json", action="store_true", help="print the progress as JSON")
    parser.set_defaults(run=_run_status)


def _add_demo_data(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo-data",
        help="write synthetic CT studies and a batch file for them",
        description="Write N deterministic synthetic CT studies (DICOM) and demo.toml.",
    )
    parser.add_argument("folder", type=Path, help="folder to write into (created)")
    parser.add_argument("--cases", type=int, default=3, help="number of studies (default 3)")
    parser.add_argument("--size", type=int, default=512, help="image rows and columns")
    parser.add_argument(
        "--slices", type=int, default=None, help="slices per series (default: varied, 100-300)"
    )
    parser.set_defaults(run=_run_demo_data)


def _run_validate(args: argparse.Namespace) -> int:
    from .validate_command import run_validate

    return run_validate(args.source, as_json=args.json, pixels=not args.headers_only)


def _run_status(args: argparse.Namespace) -> int:
    from .status_command import run_status

    return run_status(args.source, reader=args.reader, as_json=args.json)


def _run_demo_data(args: argparse.Namespace) -> int:
    from CaseIteratorCoreLib.demo_data import write_demo_batch

    if args.cases < 1:
        console.err.print(f"[red]--cases must be at least 1, got {args.cases}[/red]")
        return EXIT_UNUSABLE
    with console.progress_bar("Writing demo studies") as progress:
        batch = write_demo_batch(
            args.folder, args.cases, size=args.size, n_slices=args.slices, progress=progress
        )
    console.err.print(f"Wrote {args.cases} demo studies; batch file:")
    console.out.print(str(batch))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``caseiterator`` (one sub-command per task)."""
    parser = argparse.ArgumentParser(
        prog="caseiterator",
        description="CaseIterator: read and segment a batch of imaging cases.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_validate(sub)
    _add_status(sub)
    _add_demo_data(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_UNUSABLE
    try:
        return int(args.run(args))
    except CaseIteratorError as exc:
        console.err.print(f"[red]error:[/red] {escape(str(exc))}")
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        console.err.print("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
