"""``caseiterator compare``: agreement between the segmentations of every case of a batch."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.atomic_files import replace_file
from CaseIteratorCoreLib.comparison import (
    CaseComparison,
    csv_rows,
    iter_comparisons,
    report_json,
    summarize,
    write_csv,
)
from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.site_policy import load_site_batch
from CaseIteratorCoreLib.sources import open_source

from . import console


def _unusable(message: str, as_json: bool) -> int:
    if as_json:
        console.print_json({"error": message, "cases": [], "summary": []})
    console.err.print(f"[red]error:[/red] {escape(message)}")
    return 2


def _number(value: object, digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    return f"{float(value):.{digits}f}"


def run_compare(
    batch_path: str,
    *,
    csv_path: str | None = None,
    as_json: bool = False,
    workers: int | None = None,
) -> int:
    """Compare a batch; print a table (or JSON), write a CSV; return 0, 1 or 2."""
    try:
        batch = load_site_batch(batch_path)
        if batch.compare is None:
            raise BatchDefinitionError(
                batch.path,
                "the batch has no [compare] table, so there is nothing to compare.",
                fix='add [compare] with columns = ["mask", "prediction"] (csv batches) or '
                "[[compare.series]] tables (DICOM batches); see docs/comparison.md.",
            )
        source = open_source(batch)
    except BatchDefinitionError as exc:
        return _unusable(str(exc), as_json)
    spec = batch.compare
    results: list[CaseComparison] = []
    workers = workers or min(4, os.cpu_count() or 1)
    with source, console.progress_bar("Comparing") as progress:
        try:
            for result in iter_comparisons(
                source, spec, templates=batch.segments, workers=workers, progress=progress
            ):
                results.append(result)
        except BatchDefinitionError as exc:
            return _unusable(str(exc), as_json)
    if csv_path:
        _write_csv_file(Path(csv_path), results)
    if not results:
        return _unusable("the batch has no cases", as_json)
    bad = [r for r in results if not r.ok or r.problems]
    if as_json:
        console.print_json(
            {"batch": batch.name, "reference": spec.reference, **report_json(results)}
        )
    else:
        _print_tables(batch.name, spec.reference, results)
        if csv_path:
            console.out.print(f"{len(csv_rows(results))} rows written to {escape(csv_path)}")
    return 1 if bad else 0


def _write_csv_file(path: Path, results: list[CaseComparison]) -> None:
    """Write the CSV atomically: a half-written table is never left behind."""
    text = io.StringIO(newline="")
    write_csv(results, text)
    replace_file(path, text.getvalue().encode("utf-8"))


def _print_tables(name: str, reference: str, results: list[CaseComparison]) -> None:
    table = Table(
        title=f"{escape(name)}: {len(results)} cases, reference {escape(reference)}",
        title_justify="left",
    )
    for column in ("#", "Case", "Segment", "Other", "Dice", "Jaccard", "HD95", "HD max"):
        table.add_column(
            column, justify="left" if column in ("Case", "Segment", "Other") else "right"
        )
    table.add_column("MSD", justify="right")
    table.add_column("Vol ref/other mL", justify="right")
    for result in results:
        first = True
        for item in result.segments:
            m = item.metrics
            table.add_row(
                str(result.case.index + 1) if first else "",
                escape(result.case.name) if first else "",
                escape(item.segment),
                escape(item.other) + (" (resampled)" if item.other in result.resampled else ""),
                _number(m.dice),
                _number(m.jaccard),
                _number(m.hd95_mm, 2),
                _number(m.hd_max_mm, 2),
                _number(m.msd_mm, 2),
                f"{m.volume_reference_ml:.2f} / {m.volume_other_ml:.2f}",
            )
            first = False
        for problem in result.problems:
            style = "red" if problem.is_error else "yellow"
            table.add_row(
                str(result.case.index + 1) if first else "",
                escape(result.case.name) if first else "",
                f"[{style}]{escape(problem.message)}[/{style}]",
            )
            first = False
    console.out.print(table)
    summary = Table(title="Per segment (mean / median / worst case)", title_justify="left")
    for column in ("Segment", "Other", "Cases", "Dice", "HD95 mm", "MSD mm", "Volume diff mL"):
        summary.add_column(column, justify="left" if column in ("Segment", "Other") else "right")
    for item in summarize(results):

        def cell(metric: str, digits: int, item=item) -> str:
            s = item.metrics[metric]
            if s.mean is None:
                return "—"
            text = f"{s.mean:.{digits}f} / {s.median:.{digits}f} / {s.worst:.{digits}f}"
            text += f" ({escape(str(s.worst_case))})"
            if s.undefined:
                text += f", {s.undefined} undefined"
            return text

        summary.add_row(
            escape(item.segment),
            escape(item.other),
            str(item.cases),
            cell("dice", 3),
            cell("hd95_mm", 2),
            cell("msd_mm", 2),
            cell("volume_diff_ml", 2),
        )
    console.out.print(summary)
    compared = sum(1 for r in results if r.ok)
    with_problems = sum(1 for r in results if r.problems)
    console.out.print(
        f"{compared} of {len(results)} cases compared"
        + (f"; {with_problems} with problems (listed above)" if with_problems else "")
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator compare`` to the command line."""
    parser = sub.add_parser(
        "compare",
        help="compare the segmentations of every case (Dice, Hausdorff, volumes)",
        description="Compare the segmentations the batch's [compare] table names for each case "
        "with the reference one, segment by segment: Dice, Jaccard, HD95 and maximum "
        "Hausdorff distance, mean surface distance (mm), volumes (mL). Exit 0: every case "
        "compared without problems; 1: some case has a problem; 2: the batch is unusable.",
    )
    parser.add_argument("batch", help="batch .toml file with a [compare] table")
    parser.add_argument("--csv", metavar="OUT", help="write one row per case and segment")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--workers", type=int, default=None, help="background workers (default: up to 4)"
    )
    parser.set_defaults(
        run=lambda args: run_compare(
            args.batch, csv_path=args.csv, as_json=args.json, workers=args.workers
        )
    )
