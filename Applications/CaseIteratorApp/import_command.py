"""``caseiterator import``: copy DICOM files into the local DICOM database."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from CaseIteratorCoreLib.dicom_database import (
    DicomDatabaseError,
    LocalDicomDatabase,
    default_database_dir,
)

from . import console

#: Skipped files listed in the text output (all of them are in --json).
SHOWN_SKIPPED = 20


def _unusable(message: str, as_json: bool) -> int:
    if as_json:
        console.print_json({"error": message, "imported": 0, "already_present": 0, "skipped": []})
    console.err.print(f"[red]error:[/red] {escape(message)}")
    return 2


def run_import(folders: Sequence[Path], db: Path | None = None, *, as_json: bool = False) -> int:
    """Import ``folders`` (and files) into the database ``db``; print the counts.

    Returns 0 when the import ran (files that are not DICOM are reported, not an error), 2
    when a given folder does not exist or the database cannot be opened.
    """
    missing = [f for f in folders if not Path(f).exists()]
    if missing:
        return _unusable(
            f"no such file or folder: {', '.join(str(m) for m in missing)}", as_json=as_json
        )
    db = Path(db) if db is not None else default_database_dir()
    try:
        with (
            LocalDicomDatabase(db) as database,
            console.progress_bar("Importing DICOM files") as progress,
        ):
            report = database.import_paths([Path(f) for f in folders], progress)
    except DicomDatabaseError as exc:
        return _unusable(str(exc), as_json)
    skipped = report.skipped
    if as_json:
        console.print_json(
            {
                "database": str(database.folder),
                "imported": report.imported,
                "already_present": report.already_present,
                "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
            }
        )
        return 0
    console.err.print(f"Database: {escape(str(database.folder))}")
    console.out.print(
        f"imported {report.imported}, already present {report.already_present}, "
        f"skipped {len(skipped)}"
    )
    for item in skipped[:SHOWN_SKIPPED]:
        console.out.print(f"  {escape(item.path)}: {escape(item.reason)}")
    if len(skipped) > SHOWN_SKIPPED:
        console.out.print(f"  ... and {len(skipped) - SHOWN_SKIPPED} more (see --json)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator import`` to the command line."""
    parser = sub.add_parser(
        "import",
        help="copy DICOM files into the local DICOM database",
        description="Copy every DICOM file under the given folders (and files) into the local "
        'DICOM database, which a batch then reads with [source] type = "dicom-db". Importing '
        "again skips instances already there. Exit 0: imported (files that are not DICOM are "
        "listed); 2: a folder does not exist or the database cannot be used.",
    )
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="what to import")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="DBDIR",
        # Not default_database_dir() here: building the parser must not create folders.
        help="database folder (default: dicom-db in the per-user data folder, which "
        "$CASEITERATOR_DATA_DIR moves)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=lambda args: run_import(args.folders, args.db, as_json=args.json))
