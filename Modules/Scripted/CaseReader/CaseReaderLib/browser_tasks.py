"""Background work for the DICOM browser: searches, thumbnails and imports off the GUI thread.

A :class:`TaskRunner` runs plain functions in its own ``QThreadPool`` and hands their results
(or exceptions) back on the GUI thread through a queued signal, so the browser never waits on
a server or a disk. A task started again under the same key supersedes the older one (its
result is dropped): a search typed twice shows the second answer only. :meth:`TaskRunner.
shutdown` cancels what runs, drops what waits and waits for the threads, so a closed browser
leaves no work behind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from Qt import QtCore

from CaseIteratorCoreLib.tasks import CancelToken

log = logging.getLogger(__name__)

#: Threads per browser: a search, a series listing and a thumbnail can go on at once.
MAX_THREADS = 3


@dataclass
class _Task:
    key: str
    on_done: Callable[[Any], None] | None
    on_error: Callable[[BaseException], None] | None
    on_progress: Callable[[int, int | None, str], None] | None
    cancel: CancelToken


class _Job(QtCore.QRunnable):
    def __init__(self, runner: TaskRunner, task_id: int, function: Callable[..., Any]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._runner = runner
        self._task_id = task_id
        self._function = function

    def run(self) -> None:
        task = self._runner._task(self._task_id)
        if task is None:
            return
        try:
            task.cancel.raise_if_cancelled()  # superseded while it waited: do nothing
            result, ok = self._function(task.cancel), True
        except BaseException as exc:  # handed to the GUI thread, shown calmly there
            result, ok = exc, False
        # Always reported, so the task is forgotten; a cancelled one's result is dropped.
        self._runner._emit_result(self._task_id, ok, result)


class TaskRunner(QtCore.QObject):
    """Runs functions off the GUI thread and calls back on it.

    Parameters
    ----------
    parent
        Owner; call :meth:`shutdown` before it goes.
    """

    _result = QtCore.Signal(int, bool, object)
    _progress = QtCore.Signal(int, int, int, str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(MAX_THREADS)
        self._tasks: dict[int, _Task] = {}
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self._result.connect(self._deliver)
        self._progress.connect(self._deliver_progress)

    def start(
        self,
        key: str,
        function: Callable[[CancelToken], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[int, int | None, str], None] | None = None,
        *,
        priority: int = 0,
    ) -> CancelToken:
        """Run ``function(cancel)`` in the pool; a running task of the same ``key`` is cancelled.

        ``on_done(result)``, ``on_error(exception)`` and ``on_progress(done, total, message)``
        are called on the GUI thread, and only for the newest task of ``key``. Returns the
        task's cancel token (``function`` gets it too, to pass to core calls).
        """
        cancel = CancelToken()
        if self._closed:
            cancel.cancel()
            return cancel
        task_id = next(self._ids)
        with self._lock:
            older = self._latest.get(key)
            if older is not None and older in self._tasks:
                self._tasks[older].cancel.cancel()
            self._latest[key] = task_id
            self._tasks[task_id] = _Task(key, on_done, on_error, on_progress, cancel)
        self.pool.start(_Job(self, task_id, function), priority)
        return cancel

    def progress_callback(self, cancel: CancelToken) -> Callable[[int, int | None, str], None]:
        """A core progress callback that reaches the ``on_progress`` of the task of ``cancel``."""
        with self._lock:
            task_id = next((i for i, t in self._tasks.items() if t.cancel is cancel), 0)

        def report(done: int, total: int | None, message: str) -> None:
            with contextlib.suppress(RuntimeError):  # the runner is gone (its owner closed)
                self._progress.emit(task_id, done, -1 if total is None else total, message)

        return report

    def cancel(self, key: str) -> None:
        """Cancel the task of ``key`` (its callbacks will not be called)."""
        with self._lock:
            task_id = self._latest.pop(key, None)
            task = self._tasks.get(task_id) if task_id is not None else None
        if task is not None:
            task.cancel.cancel()

    def busy(self, key: str) -> bool:
        """Whether a task of ``key`` is waiting or running."""
        with self._lock:
            task_id = self._latest.get(key)
            return task_id is not None and task_id in self._tasks

    def shutdown(self, wait_ms: int = 10_000) -> bool:
        """Cancel everything, drop queued work, wait for the running tasks (idempotent).

        Returns False when a task was still running after ``wait_ms`` (a request blocked on a
        server that does not answer); its result is then dropped when it ends.
        """
        self._closed = True
        with self._lock:
            for task in self._tasks.values():
                task.cancel.cancel()
            self._latest.clear()
        self.pool.clear()
        return bool(self.pool.waitForDone(wait_ms))

    # -- worker side -------------------------------------------------------------------------

    def _task(self, task_id: int) -> _Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def _emit_result(self, task_id: int, ok: bool, result: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the runner is gone (its owner closed)
            self._result.emit(task_id, ok, result)

    # -- GUI side ----------------------------------------------------------------------------

    def _deliver(self, task_id: int, ok: bool, result: Any) -> None:
        with self._lock:
            task = self._tasks.pop(task_id, None)
            if task is None:
                return
            current = self._latest.get(task.key) == task_id
            if current:
                del self._latest[task.key]
        if not current or task.cancel.cancelled or self._closed:
            return
        callback = task.on_done if ok else task.on_error
        if callback is not None:
            callback(result)
        elif not ok:
            log.error("browser task %s failed: %s", task.key, result)

    def _deliver_progress(self, task_id: int, done: int, total: int, message: str) -> None:
        task = self._task(task_id)
        if task is None or task.cancel.cancelled or task.on_progress is None or self._closed:
            return
        task.on_progress(done, None if total < 0 else total, message)
