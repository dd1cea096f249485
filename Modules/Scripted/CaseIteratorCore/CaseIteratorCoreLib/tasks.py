"""Progress callbacks and cancellation for long operations (scans, loads, imports)."""

from __future__ import annotations

import threading
from typing import Protocol

from .errors import OperationCancelled


class ProgressCallback(Protocol):
    """Called as work advances: ``done`` of ``total`` units (``total`` None when unknown)."""

    def __call__(self, done: int, total: int | None, message: str) -> None: ...


def no_progress(done: int, total: int | None, message: str) -> None:
    """A progress callback that does nothing."""


class CancelToken:
    """Cancellation flag shared between the caller and a worker; thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the operation to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`OperationCancelled` when cancelled."""
        if self._event.is_set():
            raise OperationCancelled("operation cancelled")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`OperationCancelled` when ``cancel`` is set; accept ``None``."""
    if cancel is not None:
        cancel.raise_if_cancelled()
