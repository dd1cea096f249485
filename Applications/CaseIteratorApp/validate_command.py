"""``caseiterator validate``: check every case of a batch, list what is wrong."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.loading import CaseReport, inspect_case
from CaseIteratorCoreLib.site_policy import load_site_batch
from CaseIteratorCoreLib.sources import open_source

from . import console


def _unusable(message: str, as_json: bool) -> int:
    if as_json:
        console.print_json({"error": message, "cases": [], "skipped": []})
    console.err.print(f"[red]error:[/red] {escape(message)}")
    return 2


def run_validate(source_path: str, *, as_json: bool = False, pixels: bool = True) -> int:
    """Check a batch; print a table (or JSON); return 0, 1 or 2 (see ``caseiterator --help``)."""
    try:
        batch = load_site_batch(source_path)
        source = open_source(batch)
    except BatchDefinitionError as exc:
        return _unusable(str(exc), as_json)
    reports: list[CaseReport] = []
    with source, console.progress_bar("Checking cases") as progress:
        try:
            cases = list(source.iter_cases(progress))
        except BatchDefinitionError as exc:
            return _unusable(str(exc), as_json)
        for number, case in enumerate(cases):
            progress(number, len(cases), case.name)
            reports.append(inspect_case(source, case, pixels=pixels))
        progress(len(cases), len(cases), "done")
    skipped = source.skipped
    if not reports:
        reason = f"the batch has no cases ({len(skipped)} files or series skipped)"
        if skipped:
            reason += f"; first skipped: {skipped[0].path}: {skipped[0].reason}"
        if as_json:
            console.print_json(
                {
                    "error": reason,
                    "cases": [],
                    "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
                }
            )
        else:
            console.err.print(f"[red]error:[/red] {escape(reason)}")
        return 2
    bad = [r for r in reports if not r.ok]
    if as_json:
        console.print_json(
            {
                "cases": [
                    {"id": r.case.id, "ok": r.ok, "problems": [p.message for p in r.problems]}
                    for r in reports
                ],
                "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
            }
        )
    else:
        _print_table(batch.name, reports, bad, skipped)
    return 1 if bad else 0


def _print_table(name: str, reports: list[CaseReport], bad: list[CaseReport], skipped) -> None:
    table = Table(title=f"{escape(name)}: {len(reports)} cases", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Case")
    table.add_column("Status")
    table.add_column("Problems")
    for report in reports:
        status = (
            "[green]ok[/green]"
            if report.ok
            else (
                "[red]error[/red]"
                if any(p.is_error for p in report.problems)
                else "[yellow]warning[/yellow]"
            )
        )
        problems = "\n".join(escape(p.message) for p in report.problems)
        table.add_row(str(report.case.index + 1), escape(report.case.name), status, problems)
    console.out.print(table)
    if skipped:
        console.out.print(f"{len(skipped)} files or series skipped:")
        for item in skipped[:20]:
            console.out.print(f"  {escape(item.path)}: {escape(item.reason)}")
        if len(skipped) > 20:
            console.out.print(f"  ... and {len(skipped) - 20} more (see --json)")
    verdict = (
        "all cases are fine" if not bad else f"{len(bad)} of {len(reports)} cases have problems"
    )
    console.out.print(verdict)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator validate`` to the command line."""
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
    parser.set_defaults(
        run=lambda args: run_validate(args.source, as_json=args.json, pixels=not args.headers_only)
    )
