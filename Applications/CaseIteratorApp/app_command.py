"""``caseiterator app``: open the reading window (the built-in demo batch by default)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator app`` to the command line."""
    parser = sub.add_parser(
        "app",
        help="open the reading window (the built-in demo batch when no batch is given)",
        description="Open CaseIterator's reading window on a batch (.toml, .csv or DICOM "
        "folder). Without a batch, the site's batch or the built-in demo batch opens.",
    )
    parser.add_argument("batch", nargs="?", type=Path, help="batch .toml, CSV table or folder")
    parser.add_argument("--reader", help="reader name (otherwise asked once at start)")
    parser.add_argument(
        "--kiosk", action="store_true", help="full screen, reading workflow only (stations)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from .app_main import AppOptions, run_app

    return run_app(AppOptions(batch=args.batch, reader=args.reader, kiosk=args.kiosk))
