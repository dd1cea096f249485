"""One background thread for the reading window's writes: drafts, results, draft removals.

Jobs run one at a time in the order they were given, so a draft written before a save can never
land after the save removed it. Each job's outcome comes back on the GUI thread (a queued wake-up
signal, then the window drains the finished jobs); :meth:`DiskWorker.close` waits for the jobs
in flight and delivers their outcomes before it returns, so closing the window never loses a
save that was on its way to disk.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from Qt import QtCore

log = logging.getLogger(__name__)


@dataclass
class Finished:
    """A job that ran: its result, or the exception it raised."""

    job: Callable[[], Any]
    on_done: Callable[[Finished], None] | None
    key: str | None = None
    result: Any = None
    error: BaseException | None = None


class DiskWorker(QtCore.QObject):
    """Runs jobs on one thread; calls each job's ``on_done`` on the GUI thread afterwards."""

    _wake = QtCore.Signal()

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caseiterator-disk")
        self._done: collections.deque[Finished] = collections.deque()
        self._lock = threading.Condition()
        self._pending = 0
        self._pending_keys: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._wake.connect(self.deliver, QtCore.Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        """Whether a job waits or runs."""
        with self._lock:
            return self._pending > 0

    def submit(
        self,
        job: Callable[[], Any],
        on_done: Callable[[Finished], None] | None = None,
        *,
        key: str | None = None,
    ) -> None:
        """Run ``job()`` after the jobs before it; ``on_done`` gets its outcome (GUI thread).

        ``key`` (a case id) lets :meth:`wait_for` wait for this case's jobs only.
        """
        if self._closed:
            raise RuntimeError("the disk worker is closed")
        with self._lock:
            self._pending += 1
            if key is not None:
                self._pending_keys[key] += 1
        self._executor.submit(self._run, Finished(job, on_done, key))

    def _run(self, item: Finished) -> None:
        try:
            item.result = item.job()
        except BaseException as exc:  # reported on the GUI thread, never lost in the worker
            log.exception("background write failed")
            item.error = exc
        with self._lock:
            self._done.append(item)
        # The outcome is posted to the GUI thread before anyone waiting for this job goes on,
        # so what they post afterwards (a case to show) arrives after it (the case is done).
        self._wake.emit()
        with self._lock:
            self._pending -= 1
            if item.key is not None:
                self._pending_keys[item.key] -= 1
                if self._pending_keys[item.key] <= 0:
                    del self._pending_keys[item.key]
            self._lock.notify_all()

    def deliver(self) -> None:
        """Call ``on_done`` of every finished job (GUI thread)."""
        while True:
            with self._lock:
                if not self._done:
                    return
                item = self._done.popleft()
            if item.on_done is not None:
                try:
                    item.on_done(item)
                except Exception:
                    log.exception("handling a finished background write failed")

    def wait(self) -> None:
        """Wait until every job given so far has run, then deliver their outcomes."""
        marker = threading.Event()
        self._executor.submit(marker.set)
        marker.wait()
        self.deliver()

    def wait_for(self, key: str, timeout: float | None = None) -> bool:
        """Wait until no job with ``key`` waits or runs (any thread but the disk thread).

        Returns False when ``timeout`` passed first.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self._pending_keys[key] <= 0, timeout)

    def wait_idle(self) -> None:
        """Wait until the jobs given so far have run (any thread but the disk thread)."""
        if self._closed:
            return
        marker = threading.Event()
        try:
            self._executor.submit(marker.set)
        except RuntimeError:  # shut down meanwhile: nothing more will run
            return
        marker.wait()

    def close(self) -> None:
        """Finish the jobs in flight (a save is never cut off), deliver them, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self.deliver()
