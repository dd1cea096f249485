"""``caseiterator servers``: the DICOMweb servers of the site settings, each checked."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.server_check import ServerCheck, check_server
from CaseIteratorCoreLib.site_settings import load_site_settings, site_settings_paths

from . import console


def _mark(value: bool | None) -> str:
    return {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[dim]-[/dim]"}[value]


def run_servers(as_json: bool = False) -> int:
    """List and check the configured servers; 0 when all work, 1 otherwise."""
    settings = load_site_settings()
    with console.progress_bar("Checking servers") as progress:
        checks: list[ServerCheck] = []
        for number, server in enumerate(settings.servers.values()):
            progress(number, len(settings.servers), server.name)
            checks.append(check_server(server))
    if as_json:
        console.print_json(
            {
                "files": [str(p) for p in settings.files],
                "servers": [
                    {
                        "name": c.server.name,
                        "url": c.server.safe_url,
                        "auth": str(c.server.auth),
                        "reachable": c.reachable,
                        "qido": c.qido,
                        "stow": c.stow,
                        "ok": c.ok,
                        "notes": list(c.notes),
                    }
                    for c in checks
                ],
            }
        )
        return 0 if all(c.ok for c in checks) else 1
    if not checks:
        looked = (
            ", ".join(str(p) for p in site_settings_paths())
            or "(none: $CASEITERATOR_SITE_SETTINGS is empty)"
        )
        console.out.print(
            f"No DICOMweb servers configured. Site settings looked for: {escape(looked)}"
        )
        console.out.print("Add a [[servers]] table with name and url (see README).")
        return 0
    table = Table(title="DICOMweb servers", title_justify="left")
    for column in ("Name", "URL", "Auth", "Reachable", "QIDO-RS", "STOW-RS", "Notes"):
        table.add_column(column)
    for check in checks:
        server = check.server
        table.add_row(
            escape(server.name),
            escape(server.safe_url),
            str(server.auth),
            _mark(check.reachable),
            _mark(check.qido),
            _mark(check.stow),
            escape("\n".join(check.notes)),
        )
    console.out.print(table)
    return 0 if all(c.ok for c in checks) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator servers`` to the command line."""
    parser = sub.add_parser(
        "servers",
        help="list the configured DICOMweb servers and check each",
        description="Check each server of the site settings: reachable, QIDO-RS search works, "
        "STOW-RS (sending results) allowed. Exit 0 when all work, 1 otherwise.",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(run=lambda args: run_servers(as_json=args.json))
