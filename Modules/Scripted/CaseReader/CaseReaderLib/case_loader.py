"""Loading cases off the GUI thread, with a one-case look-ahead.

Workers call the core's :func:`~CaseIteratorCoreLib.loading.load_case` (fetch, decode, checks);
the GUI thread only receives the ready :class:`~CaseIteratorCoreLib.loading.LoadedCase` and
wraps its numpy array as a volume node. The case after the current one is loaded ahead, so
"Next" usually finds it ready (the batch prefetcher, with its memory cap, can replace this).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from Qt import QtCore

from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.errors import CaseLoadError, OperationCancelled
from CaseIteratorCoreLib.loading import LoadedCase, load_case
from CaseIteratorCoreLib.sources.base import BatchSource
from CaseIteratorCoreLib.tasks import CancelToken

log = logging.getLogger(__name__)


def failure_reason(exc: BaseException) -> str:
    """One calm sentence (or a few) saying why a case could not be opened."""
    if isinstance(exc, CaseLoadError):
        reasons = [p.message for p in exc.problems if p.is_error] or [
            p.message for p in exc.problems
        ]
        return "; ".join(reasons) or "the case has no readable image"
    return f"{type(exc).__name__}: {exc}"


class _JobSignals(QtCore.QObject):
    finished = QtCore.Signal(int, str, object, str)  # job, case id, LoadedCase or None, reason


class _LoadJob(QtCore.QRunnable):
    """Runs in a pool thread: load one case, report through queued signals."""

    def __init__(
        self,
        job: int,
        source: BatchSource,
        case: Case,
        cancel: CancelToken,
        signals: _JobSignals,
        after_load: Callable[[LoadedCase], None] | None = None,
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.signals = signals
        self._job = job
        self._source = source
        self._case = case
        self._cancel = cancel
        self._after_load = after_load

    def run(self) -> None:
        loaded: LoadedCase | None = None
        reason = ""
        try:
            loaded = load_case(self._source, self._case, cancel=self._cancel)
            if self._after_load is not None:
                try:  # e.g. finding the reader's last result: never fails the case itself
                    self._after_load(loaded)
                except Exception:
                    log.exception("preparing case %s failed", self._case.label)
        except OperationCancelled:
            reason = "cancelled"
        except Exception as exc:  # a bad case must never stop the batch: report, go on
            if not isinstance(exc, CaseLoadError):
                log.exception("loading case %s failed", self._case.label)
            reason = failure_reason(exc)
        self.signals.finished.emit(self._job, self._case.id, loaded, reason)


@dataclass
class _Pending:
    job: int
    case: Case
    cancel: CancelToken
    wanted: bool


class CaseLoader(QtCore.QObject):
    """Loads the current case (and the next one ahead) in a private thread pool.

    Parameters
    ----------
    source
        The batch source the cases come from.
    parent
        Owner (the reading window).
    after_load
        Called in the worker thread with each loaded case, before it is reported (finding the
        reader's last result to resume from); its failures are logged, never the case's.

    Signals
    -------
    loaded(str, object)
        A wanted case is ready: case id, :class:`LoadedCase`.
    failed(str, str)
        A wanted case cannot be opened: case id, the reason for the reader.
    """

    loaded = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)

    def __init__(
        self,
        source: BatchSource,
        parent: QtCore.QObject | None = None,
        after_load: Callable[[LoadedCase], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._source = source
        self._after_load = after_load
        self._pool = QtCore.QThreadPool(self)
        # One load at a time: decoding a series already uses the disk and a core fully, and
        # the look-ahead must not slow down the case the reader waits for.
        self._pool.setMaxThreadCount(1)
        self._pending: dict[str, _Pending] = {}
        self._ready: dict[str, LoadedCase] = {}
        self._jobs = 0
        self._closed = False
        # One receiver living on the GUI thread: workers' emits arrive as queued calls.
        self._signals = _JobSignals(self)
        self._signals.finished.connect(self._on_finished, QtCore.Qt.ConnectionType.QueuedConnection)

    @property
    def pool(self) -> QtCore.QThreadPool:
        """The loader's thread pool (tests check it is idle after close)."""
        return self._pool

    def request(self, case: Case) -> None:
        """Load ``case`` for display; ``loaded`` or ``failed`` follows (maybe at once)."""
        if self._closed:
            return
        for case_id, pending in list(self._pending.items()):
            if case_id != case.id and pending.wanted:
                pending.wanted = False
                pending.cancel.cancel()  # the reader moved on before it arrived
        ready = self._ready.pop(case.id, None)
        if ready is not None:
            # Delivered from the event loop, like a finished load, so callers see one path.
            QtCore.QTimer.singleShot(0, self, lambda: self.loaded.emit(case.id, ready))
            return
        pending = self._pending.get(case.id)
        if pending is not None and not pending.cancel.cancelled:
            pending.wanted = True
            return
        self._start(case, wanted=True)  # replaces a cancelled job, whose result is then ignored

    def prefetch(self, case: Case | None) -> None:
        """Load ``case`` ahead, keeping only it ready (drops other look-ahead results)."""
        if self._closed or case is None:
            return
        for case_id in [c for c in self._ready if c != case.id]:
            del self._ready[case_id]
        if case.id in self._ready or case.id in self._pending:
            return
        self._start(case, wanted=False)

    def is_ready(self, case_id: str) -> bool:
        """Whether ``case_id`` was loaded ahead and waits in memory."""
        return case_id in self._ready

    def _start(self, case: Case, *, wanted: bool) -> None:
        self._jobs += 1
        cancel = CancelToken()
        job = _LoadJob(self._jobs, self._source, case, cancel, self._signals, self._after_load)
        self._pending[case.id] = _Pending(self._jobs, case, cancel, wanted)
        self._pool.start(job, priority=1 if wanted else 0)

    def _on_finished(self, job: int, case_id: str, loaded: LoadedCase | None, reason: str) -> None:
        pending = self._pending.get(case_id)
        if pending is None or pending.job != job or self._closed:
            return  # a replaced or cancelled job
        del self._pending[case_id]
        if loaded is not None:
            if pending.wanted:
                self.loaded.emit(case_id, loaded)
            else:
                self._ready[case_id] = loaded
        elif pending.wanted and reason != "cancelled":
            self.failed.emit(case_id, reason)

    def close(self) -> None:
        """Cancel everything, wait for the worker, drop loaded cases."""
        self._closed = True
        for pending in self._pending.values():
            pending.cancel.cancel()
        self._pool.clear()
        self._pool.waitForDone()
        self._pending.clear()
        self._ready.clear()
