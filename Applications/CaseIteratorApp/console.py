"""Terminal output helpers: rich tables and progress bars on stderr, JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Tables piped to a file or a log get a generous width instead of rich's 80 columns.
_PIPE_WIDTH = 160

#: Messages go to stderr so that ``--json`` output on stdout stays clean; they are never wrapped
#: (a path broken over two lines cannot be copied).
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A progress bar on stderr; yields a ``ProgressCallback`` (done, total, message)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}", style="dim"),
        console=err,
        transient=True,
    )
    task = progress.add_task(description, total=None, message="")

    def update(done: int, total: int | None, message: str) -> None:
        progress.update(task, completed=done, total=total, message=message[:60])

    with progress:
        yield update
