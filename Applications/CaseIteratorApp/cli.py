"""The ``caseiterator`` command line: one module per sub-command, each with ``register(sub)``.

Exit codes: 0 all good; 1 some case has a problem; 2 the batch or the command is unusable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.markup import escape

from CaseIteratorCoreLib import __version__
from CaseIteratorCoreLib.errors import CaseIteratorError

from . import (
    app_command,
    bench_command,
    compare_command,
    console,
    demo_command,
    import_command,
    outbox_command,
    seg_commands,
    servers_command,
    status_command,
    validate_command,
)

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2

#: The sub-command modules, in the order ``--help`` lists them.
COMMANDS = (
    app_command,
    validate_command,
    compare_command,
    status_command,
    import_command,
    servers_command,
    outbox_command,
    seg_commands,
    bench_command,
    demo_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``caseiterator`` (one sub-command per task)."""
    parser = argparse.ArgumentParser(
        prog="caseiterator",
        description="CaseIterator: read and segment a batch of imaging cases.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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
