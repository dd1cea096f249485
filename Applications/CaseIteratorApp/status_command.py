"""``caseiterator status``: a reader's progress on a batch."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.paths import default_reader
from CaseIteratorCoreLib.progress_store import CaseStatus, ProgressStore
from CaseIteratorCoreLib.site_policy import load_site_batch
from CaseIteratorCoreLib.sources import open_source

from . import console


def run_status(source_path: str, *, reader: str | None = None, as_json: bool = False) -> int:
    """Print counts per status and each case's progress; return 0 (2 when unusable)."""
    batch = load_site_batch(source_path)
    reader = reader or default_reader()
    with open_source(batch) as source, console.progress_bar("Listing cases") as progress:
        cases = list(source.iter_cases(progress))
    with ProgressStore() as store:
        view = store.for_batch(batch.key, reader)
        states = {case.id: view.get(case.id) for case in cases}
        counts = view.counts([case.id for case in cases])
    if as_json:
        console.print_json(
            {
                "batch": batch.name,
                "reader": reader,
                "counts": {str(status): counts.get(status, 0) for status in CaseStatus},
                "cases": [
                    {
                        "id": case.id,
                        "name": case.name,
                        "status": str(states[case.id].status),
                        "reason": states[case.id].reason,
                        "seconds": round(states[case.id].seconds, 1),
                        "results": list(states[case.id].results),
                    }
                    for case in cases
                ],
            }
        )
        return 0
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in CaseStatus)
    table = Table(
        title=f"{escape(batch.name)} — reader {escape(reader)}: {summary}", title_justify="left"
    )
    for column in ("#", "Case", "Status", "Time", "Note"):
        table.add_column(column, justify="right" if column in ("#", "Time") else "left")
    for case in cases:
        state = states[case.id]
        minutes, seconds = divmod(int(state.seconds), 60)
        table.add_row(
            str(case.index + 1),
            escape(case.name),
            str(state.status),
            f"{minutes}:{seconds:02d}",
            escape(state.reason or ""),
        )
    console.out.print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator status`` to the command line."""
    parser = sub.add_parser(
        "status",
        help="show the reading progress of a batch",
        description="Progress of a reader on a batch: counts per status and each case.",
    )
    parser.add_argument("source", help="batch .toml file, CSV table or DICOM folder")
    parser.add_argument("--reader", help="reader name (default: $CASEITERATOR_READER or login)")
    parser.add_argument("--json", action="store_true", help="print the progress as JSON")
    parser.set_defaults(
        run=lambda args: run_status(args.source, reader=args.reader, as_json=args.json)
    )
