"""Cases for the reading window, loaded off the GUI thread by the core's prefetcher.

The core's :class:`~CaseIteratorCoreLib.prefetch.Prefetcher` keeps the current case, the next
``depth`` cases and the previous one loaded (retrieved, decoded, checked) in a memory-capped
cache. This adapter gives the window what it needs from it, on the GUI thread:

- :meth:`CaseLoader.request` makes a case current; ``loaded`` follows once it is in memory
  *and prepared*: a worker has run ``prepare(loaded)`` (finding the reader's last result, a
  draft) so that the GUI thread only wraps arrays. The case after the current one is prepared
  ahead as soon as it is ready, so "Next" finds everything done.
- ``failed`` when the case cannot be opened (after the prefetcher's retry).
- ``state_changed`` for every prefetch state change (the case list shows them).

The prefetcher calls its subscribers from worker threads; they only queue the status and wake
the GUI thread with a queued signal.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence

from Qt import QtCore

from CaseIteratorCoreLib.batch_file import PrefetchSpec
from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.errors import CaseLoadError, OperationCancelled
from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.prefetch import LoadState, LoadStatus, Prefetcher
from CaseIteratorCoreLib.sources.base import BatchSource

log = logging.getLogger(__name__)


def failure_reason(exc: BaseException) -> str:
    """One calm sentence (or a few) saying why a case could not be opened."""
    if isinstance(exc, CaseLoadError):
        reasons = [p.message for p in exc.problems if p.is_error] or [
            p.message for p in exc.problems
        ]
        return "; ".join(reasons) or "the case has no readable image"
    return f"{type(exc).__name__}: {exc}"


class _PrepareJob(QtCore.QRunnable):
    """Runs ``prepare(loaded)`` in a pool thread; reports to the loader's queue."""

    def __init__(self, loader: CaseLoader, index: int, loaded: LoadedCase, generation: int):
        super().__init__()
        self.setAutoDelete(True)
        self._loader = loader
        self._index = index
        self._loaded = loaded
        self._generation = generation

    def run(self) -> None:
        try:
            if self._loader._prepare is not None:
                self._loader._prepare(self._loaded)
        except Exception:  # finding a starting point never fails the case itself
            log.exception("preparing case %s failed", self._loaded.case.label)
        self._loader._post(("prepared", self._index, self._loaded, self._generation))


class CaseLoader(QtCore.QObject):
    """The window's view of the prefetcher.

    Parameters
    ----------
    source
        The batch source the cases come from.
    cases
        The batch's cases, in order.
    spec
        Prefetch depth and memory cap (the batch's ``[prefetch]``, or the site's).
    parent
        Owner (the reading window).
    prepare
        Called in a worker thread with each loaded case before it is shown (finding the
        reader's last result, a draft); its failures are logged, never the case's.

    Signals
    -------
    loaded(str, object)
        The wanted case is ready and prepared: case id, :class:`LoadedCase`.
    failed(str, str)
        The wanted case cannot be opened: case id, the reason for the reader.
    state_changed(int, object)
        A case's prefetch state changed: index, :class:`~CaseIteratorCoreLib.prefetch.
        LoadStatus`.
    """

    loaded = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)
    state_changed = QtCore.Signal(int, object)
    _wake = QtCore.Signal()

    def __init__(
        self,
        source: BatchSource,
        cases: Sequence[Case],
        spec: PrefetchSpec | None = None,
        parent: QtCore.QObject | None = None,
        prepare: Callable[[LoadedCase], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._cases = tuple(cases)
        self._prepare = prepare
        self.prefetcher = Prefetcher.from_spec(source, self._cases, spec or PrefetchSpec())
        self._pool = QtCore.QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # lookups are small; one at a time keeps them ordered
        self._queue: collections.deque[tuple] = collections.deque()
        self._queue_lock = threading.Lock()
        self._wanted: int | None = None
        #: Cases prepared (or being prepared) since they became ready: index -> generation.
        self._prepared: dict[int, int] = {}
        self._preparing: dict[int, int] = {}
        self._generation = 0
        self._closed = False
        self._wake.connect(self._drain, QtCore.Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = self.prefetcher.subscribe(lambda s: self._post(("status", s)))

    @property
    def pool(self) -> QtCore.QThreadPool:
        """The pool preparing cases (tests check it is idle after close)."""
        return self._pool

    def state(self, index: int) -> LoadStatus:
        """The prefetch state of case ``index``."""
        return self.prefetcher.state(index)

    def is_ready(self, index: int) -> bool:
        """Whether case ``index`` waits in memory."""
        return self.prefetcher.peek(index) is not None

    def request(self, index: int) -> None:
        """Make case ``index`` current; ``loaded`` or ``failed`` follows (maybe at once)."""
        if self._closed:
            return
        self._wanted = index
        self.prefetcher.set_current(index)
        self._consider(index)
        status = self.prefetcher.state(index)
        if status.state is LoadState.FAILED:
            self._post(("status", status))  # failed ahead: said like a fresh failure

    def set_order(self, order: Sequence[int] | None) -> None:
        """Load ahead in this reading order (batch indices; None: batch order)."""
        if not self._closed:
            self.prefetcher.set_order(order)

    def retry(self, index: int) -> None:
        """Forget that case ``index`` failed; load it again as the wanted case."""
        if self._closed:
            return
        self.prefetcher.retry(index)
        self.request(index)

    def _post(self, item: tuple) -> None:
        with self._queue_lock:
            self._queue.append(item)
        self._wake.emit()

    def _drain(self) -> None:
        while not self._closed:
            with self._queue_lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
            if item[0] == "status":
                self._on_status(item[1])
            else:
                self._on_prepared(*item[1:])

    def _on_status(self, status: LoadStatus) -> None:
        index = status.index
        self.state_changed.emit(index, status)
        if status.state is not LoadState.READY:
            self._prepared.pop(index, None)  # left the cache or is reloading
        if status.state is LoadState.READY:
            self._consider(index)
        elif status.state is LoadState.FAILED and index == self._wanted:
            self._wanted = None
            try:
                self.prefetcher.get(index, timeout=0)
            except CaseLoadError as exc:
                self.failed.emit(self._cases[index].id, failure_reason(exc))
            except (OperationCancelled, LookupError, TimeoutError):
                pass

    def _consider(self, index: int) -> None:
        """Deliver ``index`` if wanted and prepared; prepare the wanted or the next case."""
        loaded = self.prefetcher.peek(index)
        if loaded is None:
            return
        wanted = index == self._wanted
        ahead = self._wanted is not None and index == self.prefetcher.next_index(self._wanted)
        if index in self._prepared:
            if wanted:
                self._deliver(index, loaded)
            return
        if (wanted or ahead) and index not in self._preparing:
            self._generation += 1
            self._preparing[index] = self._generation
            self._pool.start(_PrepareJob(self, index, loaded, self._generation))

    def _on_prepared(self, index: int, loaded: LoadedCase, generation: int) -> None:
        if self._preparing.get(index) != generation:
            return
        del self._preparing[index]
        if self.prefetcher.peek(index) is not loaded:
            self._consider(index)  # reloaded meanwhile: prepare what is in memory now
            return
        self._prepared[index] = generation
        if index == self._wanted:
            self._deliver(index, loaded)

    def _deliver(self, index: int, loaded: LoadedCase) -> None:
        self._wanted = None
        self._prepared.pop(index, None)  # shown: a later visit looks its result up again
        self.loaded.emit(self._cases[index].id, loaded)

    def close(self) -> None:
        """Stop the prefetcher (joins its threads) and wait for the preparing worker."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._pool.clear()
        self._pool.waitForDone()
        self.prefetcher.close()
        with self._queue_lock:
            self._queue.clear()
