"""``caseiterator outbox``: results waiting to be sent to a DICOMweb server, and a retry."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.outbox import Outbox, OutboxItem, OutboxState, SendReport

from . import console

_STATE_STYLE = {
    OutboxState.QUEUED: "yellow",
    OutboxState.SENDING: "cyan",
    OutboxState.SENT: "green",
    OutboxState.NEEDS_ATTENTION: "red",
}


def _local(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _item_json(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "state": str(item.state),
        "case_id": item.case_id,
        "label": item.label,
        "reader": item.reader,
        "destination": {"name": item.destination.name, "url": item.destination.url},
        "study_uid": item.study_uid,
        "series_uid": item.series_uid,
        "sop_instance_uid": item.sop_instance_uid,
        "created_at": _iso(item.created_at),
        "attempts": item.attempts,
        "last_error": item.last_error,
        "next_attempt_at": _iso(item.next_attempt_at) if item.pending else None,
        "sent_at": _iso(item.sent_at),
        "outcome_unknown": item.outcome_unknown,
        "note": item.note,
        "path": str(item.path),
    }


def _next_attempt(item: OutboxItem, now: datetime) -> str:
    if item.state is OutboxState.NEEDS_ATTENTION:
        return "after a fix: --retry"
    if item.state is not OutboxState.QUEUED:
        return ""
    if item.next_attempt_at <= now:
        return "now"
    return _local(item.next_attempt_at)


def _print_table(outbox: Outbox, items: list[OutboxItem]) -> None:
    now = datetime.now(UTC)
    table = Table(title=f"Outbox {escape(str(outbox.folder))}", title_justify="left")
    for column in ("Saved", "Case", "Reader", "State", "Server", "Tries", "Next", "Last error"):
        table.add_column(column, justify="right" if column == "Tries" else "left")
    for item in items:
        style = _STATE_STYLE[item.state]
        state = f"[{style}]{item.state}[/{style}]"
        if item.note:
            state += f"\n[dim]{escape(item.note)}[/dim]"
        table.add_row(
            _local(item.created_at),
            escape(item.label or item.case_id),
            escape(item.reader),
            state,
            escape(item.destination.describe()),
            str(item.attempts),
            _next_attempt(item, now),
            escape(item.last_error or ""),
        )
    console.out.print(table)


def _summary(items: list[OutboxItem]) -> str:
    counts = {state: sum(1 for i in items if i.state is state) for state in OutboxState}
    return ", ".join(f"{counts[s]} {s}" for s in OutboxState if counts[s]) or "empty"


def run_outbox(*, retry: bool = False, as_json: bool = False) -> int:
    """List the outbox (after sending everything pending when ``retry``).

    Returns 0 when nothing is left pending or failing, 1 otherwise.
    """
    outbox = Outbox()
    report: SendReport | None = None
    if retry:
        outbox.retry_now()
        with console.progress_bar("Sending results") as progress:
            report = outbox.send_due(progress=progress)
    items = outbox.items()
    pending = [item for item in items if item.pending]
    if as_json:
        data: dict[str, Any] = {
            "folder": str(outbox.folder),
            "pending": len(pending),
            "items": [_item_json(item) for item in items],
        }
        if report is not None:
            data["sent_now"] = len(report.sent)
            data["failed_now"] = len(report.failed) + len(report.needs_attention)
            data["busy"] = list(report.busy)
        console.print_json(data)
        return 1 if pending else 0
    if not items:
        console.out.print(f"The outbox is empty ({escape(str(outbox.folder))}).")
        return 0
    _print_table(outbox, items)
    if report is not None:
        failed = len(report.failed) + len(report.needs_attention)
        line = f"Sent now: {len(report.sent)}; failed now: {failed}"
        if report.busy:
            line += f"; {len(report.busy)} being sent by the running application"
        console.out.print(line)
    console.out.print(f"Outbox: {_summary(items)}")
    if any(item.state is OutboxState.NEEDS_ATTENTION for item in items):
        console.out.print(
            "Results marked needs-attention are not retried on their own: fix what their last "
            "error says, then run 'caseiterator outbox --retry'."
        )
    return 1 if pending else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator outbox`` to the command line."""
    parser = sub.add_parser(
        "outbox",
        help="list the results waiting to be sent to a DICOMweb server; --retry sends them",
        description="List the results in the outbox (waiting for, or sent to, a DICOMweb "
        "server) with their state, server, attempts, last error and next attempt. --retry "
        "sends every pending result now, including those that need attention. Exit 0 when "
        "nothing is pending after the run, 1 otherwise.",
    )
    parser.add_argument("--retry", action="store_true", help="send all pending results now")
    parser.add_argument("--json", action="store_true", help="print the outbox as JSON")
    parser.set_defaults(run=lambda args: run_outbox(retry=args.retry, as_json=args.json))
