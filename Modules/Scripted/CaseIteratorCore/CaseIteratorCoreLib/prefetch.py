"""Prefetching: the current case, the next ``depth`` cases and the previous one, ready in memory.

A :class:`Prefetcher` keeps a window of cases around the reader's position loaded in the
background (retrieved, decoded and geometry-checked, as :class:`~.loading.LoadedCase`), so
that "Next" only has to wrap a ready array into the scene and render::

    with Prefetcher(source, cases, depth=2) as prefetcher:
        prefetcher.subscribe(lambda status: ui_queue.put(status))   # called from workers
        prefetcher.set_current(0)
        loaded = prefetcher.get(0)                                  # blocks until ready
        ...
        prefetcher.set_current(1)                                   # "Next": usually ready
        loaded = prefetcher.get(1)

Order
    The window is the current case, then next, next+1, ... next+depth-1, then the previous
    case; work is started in that order. Re-planning (:meth:`Prefetcher.set_current`) cancels
    every job outside the new window and drops cache entries outside it.
Threads
    One *retrieval* thread runs ``source.locate`` for every case (the download into the local
    cache), highest priority first: a bandwidth-bound link then delivers the next case whole
    before the one after instead of sharing itself between them (OHIF's request queue works
    the same way), and the local DICOM database has a single writer (its per-thread SQLite
    connections cannot both write: one opened earlier keeps a stale read snapshot and gets
    "database is locked" once the other has committed). Decoding runs in two small
    pools: an *interactive* one for the current case (1-2 workers) and a *prefetch* one for
    the others, so a decode of the next case overlaps the download of the one after. Prefetch
    work (download or decode) does not start while the current case is still loading (the
    reader waits for that one), and pauses for ``prefetch_delay_s`` after each change of the
    current case (a download in flight waits at its next instance): the GUI thread wraps the
    ready case and renders it in that moment, on a CPU (and a GIL) the parsing would share.
Memory
    The cache is capped at ``max_bytes`` (the cases' voxel bytes). When it is full, the case
    with the lowest priority goes first; the current and next cases are never evicted: if those
    two alone exceed the cap they are kept anyway and :attr:`Prefetcher.over_cap` says so (and a
    warning is logged). A prefetch is not started when it cannot fit beside the cases before it.
    After each retrieval and decode the worker returns the allocator's free pages to the
    system (:func:`.allocator.release_free_memory`): the process holds the cases, not the
    high-water mark of every worker thread's buffers.
Failures
    A case that fails is retried once (after the first attempts of the other cases), then
    reported :attr:`LoadState.FAILED` with the reason; it never blocks the others.
    :meth:`Prefetcher.retry` clears the failure (a "Try again" button).
Subscribers
    Nothing here touches MRML or VTK. Subscribers are called from the worker threads (one at
    a time, in the order the states changed); a UI marshals them to its own thread.
    :meth:`Prefetcher.close` cancels all work and joins every thread.

For a DICOMweb source the local DICOM database is the second cache level: ``source.locate``
serves a series already there without the server, so a restarted app does not download again.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .allocator import release_free_memory
from .batch_file import PrefetchSpec
from .cases import Case, ImageRef
from .dicom_series import SeriesTolerances
from .errors import CaseIteratorError, CaseLoadError, OperationCancelled
from .loading import LoadedCase, load_case
from .problems import Problem, ProblemCode, Severity, has_errors
from .sources.base import BatchSource
from .tasks import CancelToken, check_cancel

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts per case before it is reported failed (the first try and one retry).
MAX_ATTEMPTS = 2


class LoadState(enum.StrEnum):
    """Where a case stands in the prefetcher (not the reader's progress: see progress_store)."""

    #: Not planned (outside the window, cancelled, or not kept for lack of room).
    IDLE = "idle"
    #: Planned, waiting for a worker.
    QUEUED = "queued"
    #: Being retrieved (``source.locate``: the download into the local cache, nothing for
    #: local files), or retrieved and waiting for a decoding worker.
    FETCHING = "fetching"
    #: Being read and checked from local files.
    DECODING = "decoding"
    #: In memory, ready to show.
    READY = "ready"
    #: Failed twice; ``reason`` says why.
    FAILED = "failed"


@dataclass(frozen=True)
class LoadStatus:
    """The state of one case, as :meth:`Prefetcher.state` returns and subscribers receive it.

    Parameters
    ----------
    index
        Position of the case in the batch.
    state
        Where it stands.
    reason
        Why it failed (``FAILED``), why it is retried (``QUEUED`` after a failure), or why it
        is not kept (``IDLE``); None otherwise.
    attempt
        1 for the first try, 2 for the retry; 0 before any.
    done, total
        Retrieval progress while ``FETCHING`` (instances), when the source reports it.
    nbytes
        Memory the case holds when ``READY``.
    """

    index: int
    state: LoadState
    reason: str | None = None
    attempt: int = 0
    done: int | None = None
    total: int | None = None
    nbytes: int = 0


StatusCallback = Callable[[LoadStatus], None]


class _Stage(enum.Enum):
    TO_FETCH = "to fetch"
    FETCHING = "fetching"
    TO_DECODE = "to decode"
    DECODING = "decoding"


class _HoldingToken(CancelToken):
    """A job's cancel token that also holds prefetch work while the GUI switches cases.

    Work checks its token often (between retrieved instances): while the prefetcher's hold
    after a "Next" lasts, a job that is not the current case's waits there, without the GIL,
    so its parsing does not compete with the GUI thread's wrap and first render.
    """

    def __init__(self, hold_for: Callable[[], float]) -> None:
        super().__init__()
        self._hold_for = hold_for

    def raise_if_cancelled(self) -> None:
        super().raise_if_cancelled()
        while (wait := self._hold_for()) > 0 and not self.cancelled:
            time.sleep(min(wait, 0.02))
        super().raise_if_cancelled()


@dataclass(eq=False)
class _Job:
    index: int
    case: Case
    token: CancelToken
    attempt: int = 1
    stage: _Stage = _Stage.TO_FETCH
    #: The case with local references, once retrieved.
    located: Case | None = None


class Prefetcher:
    """Keeps the cases around the reader's position loaded in background workers.

    Parameters
    ----------
    source
        The batch source the cases come from (used from worker threads: ``locate`` and the
        file reads of :func:`~.loading.load_case`).
    cases
        The cases of the batch, in batch order (``cases[i].index == i`` is not required).
    depth
        How many cases after the current one to keep ready.
    max_bytes
        Cap of the cache in bytes of voxel data; None takes :class:`~.batch_file.PrefetchSpec`'s
        default (a quarter of the RAM, at most 4 GiB).
    max_memory_mb
        The same cap in MiB (as the batch's ``[prefetch] max_memory_mb``); give one of the two.
    interactive_workers
        Threads decoding the current case (1-2: a second one lets a new current case start
        while a cancelled one is still winding down).
    prefetch_workers
        Threads decoding the other cases of the window (0: the window is never filled). One
        keeps pace with the retrieval thread; each decode holds several times the case's size
        while it runs, so more would raise the peak memory for little gain.
    prefetch_delay_s
        After each change of the current case, how long prefetch work waits (new work does not
        start, a download in flight pauses), leaving the CPU to the GUI thread's switch.
    tolerances
        Geometry check tolerances for :func:`~.loading.load_case`.

    Raises
    ------
    ValueError
        When a count or the cap is out of range.
    """

    def __init__(
        self,
        source: BatchSource,
        cases: Sequence[Case],
        *,
        depth: int = 2,
        max_bytes: int | None = None,
        max_memory_mb: float | None = None,
        interactive_workers: int = 2,
        prefetch_workers: int = 1,
        prefetch_delay_s: float = 0.5,
        tolerances: SeriesTolerances | None = None,
    ) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if max_memory_mb is not None:
            if max_bytes is not None:
                raise ValueError("give max_bytes or max_memory_mb, not both")
            if max_memory_mb <= 0:
                raise ValueError(f"max_memory_mb must be > 0, got {max_memory_mb}")
            max_bytes = int(max_memory_mb * 2**20)
        if max_bytes is None:
            max_bytes = PrefetchSpec().max_memory_mb * 2**20
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if not 1 <= interactive_workers <= 8:
            raise ValueError(f"interactive_workers must be 1-8, got {interactive_workers}")
        if not 0 <= prefetch_workers <= 8:
            raise ValueError(f"prefetch_workers must be 0-8, got {prefetch_workers}")
        if prefetch_delay_s < 0:
            raise ValueError(f"prefetch_delay_s must be >= 0, got {prefetch_delay_s}")
        self.source = source
        self.cases: tuple[Case, ...] = tuple(cases)
        self.depth = depth
        self.max_bytes = int(max_bytes)
        self.prefetch_delay_s = prefetch_delay_s
        self.tolerances = tolerances

        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._current: int | None = None
        #: The reading order (batch indices); None: batch order.
        self._order: list[int] | None = None
        self._plan: list[int] = []
        self._cache: dict[int, LoadedCase] = {}
        self._jobs: dict[int, _Job] = {}
        self._failures: dict[int, CaseLoadError] = {}
        self._status: dict[int, LoadStatus] = {}
        # Planned cases dropped or not started for lack of room, until the next re-plan.
        self._held_back: set[int] = set()
        self._hold_until = 0.0
        self._largest_case = 0
        self._over_cap = False

        # Subscribers are called outside the state lock, in the order states changed.
        self._subscribers: list[StatusCallback] = []
        self._events: collections.deque[LoadStatus] = collections.deque()
        self._dispatch_lock = threading.RLock()

        self._threads: list[threading.Thread] = []
        workers: list[tuple[str, Callable[[], None]]] = [("retrieval", self._retrieve_loop)]
        workers += [("interactive", lambda: self._decode_loop(True))] * interactive_workers
        workers += [("prefetch", lambda: self._decode_loop(False))] * prefetch_workers
        counts: collections.Counter[str] = collections.Counter()
        for name, target in workers:
            counts[name] += 1
            thread = threading.Thread(
                target=target,
                name=f"caseiterator-{name}-{counts[name]}",
                daemon=True,  # close() joins them; daemon only so that a forgotten close()
            )  # cannot hang the interpreter at exit
            thread.start()
            self._threads.append(thread)

    @classmethod
    def from_spec(
        cls, source: BatchSource, cases: Sequence[Case], spec: PrefetchSpec, **kwargs: Any
    ) -> Prefetcher:
        """Build a prefetcher with a batch's ``[prefetch]`` settings (depth, memory cap)."""
        return cls(source, cases, depth=spec.depth, max_memory_mb=spec.max_memory_mb, **kwargs)

    # -- public API ------------------------------------------------------------------------

    @property
    def current(self) -> int | None:
        """The reader's case (None before the first :meth:`set_current`)."""
        return self._current

    @property
    def plan(self) -> list[int]:
        """The window in priority order: current, next ..., previous."""
        with self._cond:
            return list(self._plan)

    @property
    def cache_bytes(self) -> int:
        """Bytes of voxel data held by the ready cases."""
        with self._cond:
            return self._cache_bytes()

    @property
    def over_cap(self) -> bool:
        """True when the current and next cases alone exceed ``max_bytes`` (both kept)."""
        with self._cond:
            return self._over_cap

    def ready_indices(self) -> list[int]:
        """Indices of the cases in memory, in batch order."""
        with self._cond:
            return sorted(self._cache)

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(status)`` on every state change; returns the unsubscribe function.

        The callback runs on a worker thread (or the thread that called :meth:`set_current`),
        never two at once; it must not block (post to the UI's queue and return).
        """
        with self._dispatch_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._dispatch_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def state(self, index: int) -> LoadStatus:
        """The current status of case ``index``."""
        self._check_index(index)
        with self._cond:
            return self._status.get(index) or LoadStatus(index, LoadState.IDLE)

    def set_current(self, index: int) -> None:
        """Make ``index`` the reader's case and re-plan the window around it.

        Work outside the new window is cancelled (its results never enter the cache) and
        cases outside it leave the cache. Returns at once; :meth:`get` waits for the case.

        Raises
        ------
        IndexError
            When ``index`` is not a case of the batch.
        RuntimeError
            After :meth:`close`.
        """
        self._check_index(index)
        with self._cond:
            if self._closed:
                raise RuntimeError("the prefetcher is closed")
            if index != self._current:
                self._hold_until = time.monotonic() + self.prefetch_delay_s
                self._held_back.clear()
            self._current = index
            self._replan()
            self._cond.notify_all()
        self._dispatch()

    def set_order(self, order: Sequence[int] | None) -> None:
        """Read the cases in ``order`` (batch indices, each once; None: batch order).

        "Next" and "previous" are then the neighbours in this order (a comparison batch read
        worst agreement first): the window is re-planned around the current case.

        Raises
        ------
        ValueError
            When ``order`` is not a permutation of the batch's case indices.
        """
        if order is not None:
            order = [int(i) for i in order]
            if sorted(order) != list(range(len(self.cases))):
                raise ValueError(
                    f"reading order {order[:10]}... is not each of the {len(self.cases)} case "
                    "indices once; pass a permutation of range(len(cases)), or None"
                )
        with self._cond:
            self._order = order
            if self._current is not None and not self._closed:
                self._replan()
                self._cond.notify_all()
        self._dispatch()

    def next_index(self, index: int) -> int | None:
        """The case after ``index`` in the reading order (None after the last)."""
        order = self._order
        if order is None:
            return index + 1 if index + 1 < len(self.cases) else None
        position = order.index(index) + 1
        return order[position] if position < len(order) else None

    def get(self, index: int, timeout: float | None = None) -> LoadedCase:
        """Return case ``index`` loaded, waiting for it (the interactive path).

        Parameters
        ----------
        index
            A case of the current window (call :meth:`set_current` first).
        timeout
            Seconds to wait at most; None waits as long as it takes.

        Raises
        ------
        CaseLoadError
            When the case failed (twice); its ``problems`` say why.
        TimeoutError
            When ``timeout`` passed first.
        OperationCancelled
            When the case left the window while waiting (the reader moved on) or the
            prefetcher was closed.
        LookupError
            When the case is neither loaded nor planned.
        """
        self._check_index(index)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            waited = False
            while True:
                if index in self._cache:
                    return self._cache[index]
                if index in self._failures:
                    raise self._failures[index]
                if self._closed:
                    raise OperationCancelled("the prefetcher was closed")
                if index not in self._jobs:
                    label = self.cases[index].label
                    if waited:
                        raise OperationCancelled(f"loading case {label} was cancelled")
                    why = self._status_of(index).reason or "outside the window"
                    raise LookupError(
                        f"case {label} is not loaded or planned ({why}): call "
                        f"set_current({index}) first"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"case {self.cases[index].label} was not ready within {timeout:g} s "
                        f"({self._status_of(index).state})"
                    )
                self._cond.wait(remaining)
                waited = True

    def peek(self, index: int) -> LoadedCase | None:
        """Return case ``index`` if it is in memory, else None; never waits."""
        self._check_index(index)
        with self._cond:
            return self._cache.get(index)

    def retry(self, index: int) -> None:
        """Forget that case ``index`` failed and load it again if it is in the window."""
        self._check_index(index)
        with self._cond:
            if self._closed:
                raise RuntimeError("the prefetcher is closed")
            if self._failures.pop(index, None) is not None:
                self._set_status(LoadStatus(index, LoadState.IDLE))
            self._held_back.discard(index)
            self._replan()
            self._cond.notify_all()
        self._dispatch()

    def close(self) -> None:
        """Cancel all work, join every worker thread and drop the cache (idempotent).

        A worker stops at its next cancellation check: between retrieved instances and
        between the images of a case, so this can take as long as reading one image or one
        network read (the server's ``timeout_s`` when it hangs).
        """
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                job.token.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        with self._cond:
            self._jobs.clear()
            self._cache.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning (under the lock) ---------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.cases):
            raise IndexError(f"case index {index} is outside the batch (0-{len(self.cases) - 1})")

    def _window(self, current: int) -> list[int]:
        order = self._order if self._order is not None else range(len(self.cases))
        position = order.index(current)
        window = list(order[position : position + self.depth + 1])
        if position > 0:
            window.append(order[position - 1])
        return window

    def _protected(self) -> set[int]:
        """The current and next cases: never evicted, always loaded whatever the cap."""
        if self._current is None:
            return set()
        return {self._current, self.next_index(self._current)} & set(self._plan)

    def _replan(self) -> None:
        assert self._current is not None
        self._plan = self._window(self._current)
        wanted = set(self._plan)
        for index, job in list(self._jobs.items()):
            if index not in wanted:
                job.token.cancel()
                del self._jobs[index]  # a running job sees it is no longer the case's job
                self._set_status(LoadStatus(index, LoadState.IDLE, "cancelled: left the window"))
        for index in [i for i in self._cache if i not in wanted]:
            del self._cache[index]
            self._set_status(LoadStatus(index, LoadState.IDLE))
        for index in self._plan:
            if index in self._cache or index in self._failures or index in self._held_back:
                continue
            if index not in self._jobs:
                self._jobs[index] = self._new_job(index)
                self._set_status(LoadStatus(index, LoadState.QUEUED))
        self._enforce_cap()

    def _new_job(self, index: int, attempt: int = 1) -> _Job:
        def hold_for() -> float:  # read without the lock: a stale value costs one check
            if index == self._current:
                return 0.0
            return self._hold_until - time.monotonic()

        return _Job(index, self.cases[index], _HoldingToken(hold_for), attempt)

    def _rank(self, index: int) -> int:
        try:
            return self._plan.index(index)
        except ValueError:
            return len(self._plan)

    def _cache_bytes(self) -> int:
        return sum(loaded.nbytes for loaded in self._cache.values())

    def _enforce_cap(self) -> set[int]:
        """Evict the lowest-priority cases until the cache fits; returns the evicted ones."""
        evicted: set[int] = set()
        total = self._cache_bytes()
        protected = self._protected()
        by_priority = sorted(self._cache, key=self._rank, reverse=True)
        for index in by_priority:
            if total <= self.max_bytes:
                break
            if index in protected:
                continue
            total -= self._cache.pop(index).nbytes
            evicted.add(index)
            self._held_back.add(index)
            self._set_status(LoadStatus(index, LoadState.IDLE, self._no_room_reason()))
        over = total > self.max_bytes
        if over and not self._over_cap:
            log.warning(
                "the current and next cases hold %.0f MB, more than the prefetch cache cap of "
                "%.0f MB: both are kept; raise [prefetch] max_memory_mb",
                total / 2**20,
                self.max_bytes / 2**20,
            )
        self._over_cap = over
        return evicted

    def _no_room_reason(self) -> str:
        return f"not kept: the prefetch cache cap ({self.max_bytes / 2**20:.0f} MB) is reached"

    def _fits(self, job: _Job) -> bool:
        """Whether a prefetch of ``job`` can fit beside the cases that come before it."""
        if job.index in self._protected() or not self._largest_case:
            return True
        rank = self._rank(job.index)
        before = sum(c.nbytes for i, c in self._cache.items() if self._rank(i) < rank)
        running = sum(
            1
            for i, j in self._jobs.items()
            if j.stage is not _Stage.TO_FETCH and self._rank(i) < rank
        )
        return before + (running + 1) * self._largest_case <= self.max_bytes

    def _prefetch_paused(self) -> tuple[bool, float | None]:
        """Whether prefetch work must wait now, and for how long if that is known."""
        wait = self._hold_until - time.monotonic()
        if wait > 0:
            return True, wait
        if self._current is not None and self._current in self._jobs:
            return True, None  # the reader waits for the current case: it goes first
        return False, None

    def _next_fetch(self) -> tuple[_Job | None, float | None]:
        """The job the retrieval thread should start now, or how long to wait for one."""
        candidates = [j for j in self._jobs.values() if j.stage is _Stage.TO_FETCH]
        current = self._jobs.get(self._current) if self._current is not None else None
        if current is not None and current in candidates:
            return current, None
        if not candidates:
            return None, None
        paused, wait = self._prefetch_paused()
        if paused:
            return None, wait
        # First attempts of every case before any retry, each in window order.
        for job in sorted(candidates, key=lambda j: (j.attempt, self._rank(j.index))):
            if self._fits(job):
                return job, None
            self._held_back.add(job.index)
            del self._jobs[job.index]
            self._set_status(LoadStatus(job.index, LoadState.IDLE, self._no_room_reason()))
        return None, None

    def _next_decode(self, interactive: bool) -> tuple[_Job | None, float | None]:
        """The job a decoding worker should start now, or how long to wait for one."""
        candidates = [j for j in self._jobs.values() if j.stage is _Stage.TO_DECODE]
        if interactive:
            current = [j for j in candidates if j.index == self._current]
            return (current[0] if current else None), None
        others = [j for j in candidates if j.index != self._current]
        if not others:
            return None, None
        paused, wait = self._prefetch_paused()
        if paused:
            return None, wait
        return min(others, key=lambda j: (j.attempt, self._rank(j.index))), None

    def _status_of(self, index: int) -> LoadStatus:
        return self._status.get(index) or LoadStatus(index, LoadState.IDLE)

    def _set_status(self, status: LoadStatus) -> None:
        if status.state is LoadState.IDLE and status.reason is None:
            self._status.pop(status.index, None)
        else:
            self._status[status.index] = status
        self._events.append(status)

    def _dispatch(self) -> None:
        """Deliver queued state changes to subscribers, outside the state lock, in order."""
        with self._dispatch_lock:
            while True:
                with self._cond:
                    if not self._events:
                        return
                    status = self._events.popleft()
                for callback in list(self._subscribers):
                    try:
                        callback(status)
                    except Exception:  # a subscriber's bug must not stop the loading
                        log.exception("prefetch subscriber %r failed", callback)

    # -- workers ---------------------------------------------------------------------------

    def _is_live(self, job: _Job) -> bool:
        return not self._closed and self._jobs.get(job.index) is job

    def _take(
        self, pick: Callable[[], tuple[_Job | None, float | None]], stage: _Stage
    ) -> _Job | None:
        """Wait for a job from ``pick`` and move it to ``stage``; None once closed."""
        while True:
            with self._cond:
                if self._closed:
                    return None
                job, wait = pick()
                if job is None:
                    if not self._events:  # else deliver what pick() changed first
                        self._cond.wait(wait)
                else:
                    job.stage = stage
                    state = LoadState.FETCHING if stage is _Stage.FETCHING else LoadState.DECODING
                    self._set_status(LoadStatus(job.index, state, attempt=job.attempt))
            self._dispatch()
            if job is not None:
                return job

    @staticmethod
    def _attempt(
        job: _Job, what: str, work: Callable[[], T]
    ) -> tuple[T | None, CaseLoadError | None]:
        """Run one stage of ``job``: ``(result, None)``, ``(None, error)``, or ``(None, None)``
        when it was cancelled."""
        try:
            return work(), None
        except OperationCancelled:
            return None, None
        except CaseLoadError as exc:
            return None, exc
        except Exception as exc:  # a bug, an odd server or file in one case must not stop the rest
            log.exception("%s case %s failed", what, job.case.label)
            return None, _unexpected(job.case, exc)

    def _retrieve_loop(self) -> None:
        while (job := self._take(self._next_fetch, _Stage.FETCHING)) is not None:
            located, error = self._attempt(job, "retrieving", functools.partial(self._locate, job))
            with self._cond:
                if self._is_live(job) and not job.token.cancelled:
                    if located is not None:
                        job.located = located
                        job.stage = _Stage.TO_DECODE
                    elif error is not None:
                        self._failed(job, error)
                self._cond.notify_all()
            self._dispatch()
            release_free_memory()  # the received files' buffers, kept by this thread's arena

    def _decode_loop(self, interactive: bool) -> None:
        pick = functools.partial(self._next_decode, interactive)
        while (job := self._take(pick, _Stage.DECODING)) is not None:
            assert job.located is not None
            loaded, error = self._attempt(
                job,
                "loading",
                functools.partial(
                    load_case,
                    self.source,
                    job.located,
                    tolerances=self.tolerances,
                    cancel=job.token,
                ),
            )
            with self._cond:
                if self._is_live(job) and not job.token.cancelled:
                    del self._jobs[job.index]
                    if loaded is not None:
                        self._ready(job, loaded)
                    elif error is not None:
                        self._failed(job, error)
                self._cond.notify_all()
            # Drop this frame's references before waiting for the next job: an idle worker
            # would otherwise keep its last case (a whole volume) alive after it is evicted.
            loaded = error = None
            self._dispatch()

    def _ready(self, job: _Job, loaded: LoadedCase) -> None:
        self._cache[job.index] = loaded
        self._largest_case = max(self._largest_case, loaded.nbytes)
        if job.index not in self._enforce_cap():  # else it is IDLE, "not kept"
            ready = LoadStatus(job.index, LoadState.READY, attempt=job.attempt)
            self._set_status(dataclasses.replace(ready, nbytes=loaded.nbytes))

    def _failed(self, job: _Job, error: CaseLoadError) -> None:
        reason = "; ".join(p.message for p in error.problems) or str(error)
        if job.attempt < MAX_ATTEMPTS:
            log.info("case %s failed (%s); retrying once", job.case.label, reason)
            self._jobs[job.index] = self._new_job(job.index, job.attempt + 1)
            self._set_status(
                LoadStatus(job.index, LoadState.QUEUED, f"retrying: {reason}", job.attempt)
            )
            return
        self._jobs.pop(job.index, None)
        self._failures[job.index] = error
        self._set_status(LoadStatus(job.index, LoadState.FAILED, reason, job.attempt))

    def _locate(self, job: _Job) -> Case:
        """Retrieve the case's images and masks (``source.locate``); returns the local case.

        A main image that cannot be retrieved fails the case like :func:`load_case` would; an
        extra image or mask that cannot is left out, with a warning on the case.
        """
        case = job.case
        if has_errors(list(case.problems)) or case.image is None:
            return case  # load_case raises with the listing problems

        def progress(done: int, total: int | None, message: str) -> None:
            with self._cond:
                if not self._is_live(job):
                    return
                status = self._status_of(job.index)
                if status.state is not LoadState.FETCHING or status.done == done:
                    return
                self._set_status(dataclasses.replace(status, done=done, total=total))
            self._dispatch()

        warnings: list[Problem] = []

        def located(ref: ImageRef, what: str | None) -> ImageRef | None:
            check_cancel(job.token)
            try:
                return self.source.locate(ref, progress, job.token)
            except OperationCancelled:
                raise
            except CaseIteratorError as exc:
                if what is None:  # the main image: the case cannot be read
                    problem = Problem(ProblemCode.FETCH_FAILED, f"{ref.describe()}: {exc}")
                    raise CaseLoadError(case.label, [*case.problems, problem]) from exc
                message = f"{what} {ref.describe()}: {exc}"
                warnings.append(Problem(ProblemCode.FETCH_FAILED, message, Severity.WARNING))
                return None

        images = [located(ref, ref.role if n else None) for n, ref in enumerate(case.images)]
        masks = [located(ref, "mask") for ref in case.masks]
        # An extra image or mask that did not arrive is left out with a warning (as load_case
        # reports it), so decoding never goes back to the network or the cache index.
        return dataclasses.replace(
            case,
            images=tuple(r for r in images if r is not None),
            masks=tuple(r for r in masks if r is not None),
            problems=(*case.problems, *warnings),
        )


def _unexpected(case: Case, exc: Exception) -> CaseLoadError:
    problem = Problem(ProblemCode.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
    return CaseLoadError(case.label, [problem])


__all__ = ["MAX_ATTEMPTS", "LoadState", "LoadStatus", "Prefetcher", "StatusCallback"]
