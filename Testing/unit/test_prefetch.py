"""The prefetcher keeps the reader's neighbourhood loaded: order, cancellation, cap, failures.

Real files (CSV tables of NRRD images, DICOM series folders) and the real loader throughout.
Nothing here is timed: each test waits for states, with a generous timeout only so a bug shows
as a failure instead of a hang.
"""

from __future__ import annotations

import collections
import gc
import logging
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.cases import Case, ImageFileRef, ImageRef
from CaseIteratorCoreLib.demo_data import write_demo_csv_batch
from CaseIteratorCoreLib.errors import CaseIteratorError, CaseLoadError
from CaseIteratorCoreLib.loading import load_case
from CaseIteratorCoreLib.prefetch import MAX_ATTEMPTS, LoadState, LoadStatus, Prefetcher
from CaseIteratorCoreLib.sources import CsvTableSource, open_source
from CaseIteratorCoreLib.tasks import CancelToken, ProgressCallback, check_cancel, no_progress

from series_factory import write_series

#: Upper bound on any wait: a bug fails the test instead of hanging it.
WAIT_S = 60.0
N_CASES = 8


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV batch of eight small CT cases (64x64x16 int16 image and a mask each)."""
    return write_demo_csv_batch(tmp_path_factory.mktemp("csv"), N_CASES, size=64, n_slices=16)


def open_table(path: Path) -> CsvTableSource:
    source = open_source(load_batch(path))
    assert isinstance(source, CsvTableSource)
    return source


class Recorder:
    """Subscriber that keeps every status, and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[LoadStatus] = []
        self.checks: list[Callable[[LoadStatus], None]] = []
        self._cond = threading.Condition()

    def __call__(self, status: LoadStatus) -> None:
        for check in self.checks:
            check(status)
        with self._cond:
            self.events.append(status)
            self._cond.notify_all()

    def states(self, index: int) -> list[LoadState]:
        with self._cond:
            return [s.state for s in self.events if s.index == index]

    def order(self, state: LoadState) -> list[int]:
        """Indices in the order they entered ``state`` (first time each)."""
        with self._cond:
            seen = [s.index for s in self.events if s.state is state]
        return list(dict.fromkeys(seen))

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, WAIT_S), f"timed out; events: {self.events}"


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds (at most WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def settled(prefetcher: Prefetcher, indices: list[int]) -> Callable[[], bool]:
    """Predicate: every case of ``indices`` is ready or failed."""
    final = (LoadState.READY, LoadState.FAILED)
    return lambda: all(prefetcher.state(i).state in final for i in indices)


@pytest.fixture
def no_new_threads() -> Iterator[None]:
    """Fail when a test leaves a thread behind (every prefetcher must be closed)."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads outlived the test: {[t.name for t in left]}"


class GatedCsvSource(CsvTableSource):
    """A CSV source whose retrieval of chosen files waits until the test opens their gate.

    It stands in for a slow network fetch: a local file cannot be made slow for real, and the
    cancellation tests need a load that is still running when the reader jumps. ``locate``
    records the CancelToken it got and returns as soon as that token is cancelled, as the
    DICOMweb retrieval does between instances.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gates: dict[Path, threading.Event] = {}
        self.tokens: dict[Path, list[CancelToken]] = collections.defaultdict(list)
        self.calls: list[Path] = []

    def gate(self, path: Path) -> threading.Event:
        return self.gates.setdefault(path, threading.Event())

    def locate(
        self,
        ref: ImageRef,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImageRef:
        if isinstance(ref, ImageFileRef) and ref.path in self.gates:
            assert cancel is not None
            self.tokens[ref.path].append(cancel)
            self.calls.append(ref.path)
            while not self.gates[ref.path].wait(0.01):
                check_cancel(cancel)
        return ref


def gated(table: Path) -> tuple[GatedCsvSource, list[Case]]:
    source = GatedCsvSource.from_batch(load_batch(table))
    assert isinstance(source, GatedCsvSource)
    return source, list(source.iter_cases())


def test_window_loads_current_then_next_cases_then_previous(
    table: Path, no_new_threads: None
) -> None:
    source = open_table(table)
    cases = list(source.iter_cases())
    recorder = Recorder()
    with Prefetcher(
        source, cases, depth=2, interactive_workers=1, prefetch_workers=1, prefetch_delay_s=0
    ) as prefetcher:
        prefetcher.subscribe(recorder)
        prefetcher.set_current(3)
        assert prefetcher.plan == [3, 4, 5, 2]
        loaded = prefetcher.get(3, timeout=WAIT_S)
        assert loaded.case.id == cases[3].id
        assert loaded.image.volume.array.shape == (16, 64, 64)
        recorder.wait_for(settled(prefetcher, [3, 4, 5, 2]))
        assert recorder.order(LoadState.FETCHING) == [3, 4, 5, 2]
        assert prefetcher.ready_indices() == [2, 3, 4, 5]
        # Each case went through every state, in order.
        assert recorder.states(4) == [
            LoadState.QUEUED,
            LoadState.FETCHING,
            LoadState.DECODING,
            LoadState.READY,
        ]
        assert prefetcher.state(4).nbytes == prefetcher.peek(4).nbytes > 0
        assert prefetcher.state(0).state is LoadState.IDLE
        # "Next": the case is already there; the window moves by one.
        prefetcher.set_current(4)
        assert prefetcher.peek(4) is not None
        assert prefetcher.plan == [4, 5, 6, 3]
        recorder.wait_for(settled(prefetcher, [4, 5, 6, 3]))
        assert prefetcher.ready_indices() == [3, 4, 5, 6]
        assert prefetcher.state(2).state is LoadState.IDLE  # left the window, left the cache
        assert recorder.states(4).count(LoadState.FETCHING) == 1  # never loaded twice


def test_a_reading_order_moves_the_window_to_its_neighbours(
    table: Path, no_new_threads: None
) -> None:
    """Worst agreement first (comparison mode): "next" is the next case of that order, and the
    cases loaded ahead are those, not the batch's neighbours."""
    source = open_table(table)
    cases = list(source.iter_cases())
    order = [5, 2, 7, 0, 3, 1, 4, 6]
    assert sorted(order) == list(range(len(cases)))
    recorder = Recorder()
    with Prefetcher(
        source, cases, depth=2, interactive_workers=1, prefetch_workers=1, prefetch_delay_s=0
    ) as prefetcher:
        prefetcher.subscribe(recorder)
        prefetcher.set_current(2)
        assert prefetcher.plan == [2, 3, 4, 1]
        prefetcher.set_order(order)
        assert prefetcher.plan == [2, 7, 0, 5]
        assert prefetcher.next_index(2) == 7 and prefetcher.next_index(6) is None
        recorder.wait_for(settled(prefetcher, [2, 7, 0, 5]))
        assert prefetcher.ready_indices() == [0, 2, 5, 7]
        prefetcher.set_current(7)  # "Next" in that order: already there
        assert prefetcher.peek(7) is not None
        assert prefetcher.plan == [7, 0, 3, 2]
        prefetcher.set_order(None)  # back to batch order
        assert prefetcher.plan == [7, 6]
        with pytest.raises(ValueError, match="permutation"):
            prefetcher.set_order([0, 0, 1])


def test_a_jump_cancels_the_old_neighbourhood(table: Path, no_new_threads: None) -> None:
    source, cases = gated(table)
    paths = [c.image.path for c in cases]
    for path in paths:
        source.gate(path)
    recorder = Recorder()
    with Prefetcher(source, cases, depth=2, prefetch_delay_s=0) as prefetcher:
        prefetcher.subscribe(recorder)
        prefetcher.set_current(0)
        source.gate(paths[0]).set()
        prefetcher.get(0, timeout=WAIT_S)
        # Case 1 is being retrieved (its gate is closed), case 2 waits for the retrieval thread.
        recorder.wait_for(lambda: prefetcher.state(1).state is LoadState.FETCHING)
        assert prefetcher.state(2).state is LoadState.QUEUED
        prefetcher.set_current(6)  # the reader jumps far ahead
        assert prefetcher.plan == [6, 7, 5]
        assert [t.cancelled for t in source.tokens[paths[1]]] == [True]
        for index in (0, 1, 2):
            assert prefetcher.state(index).state is LoadState.IDLE
        for path in paths[5:]:
            source.gate(path).set()
        source.gate(paths[1]).set()  # too late: the load was cancelled
        recorder.wait_for(settled(prefetcher, [6, 7, 5]))
        assert prefetcher.ready_indices() == [5, 6, 7]
        assert LoadState.READY not in recorder.states(1)
        assert paths[2] not in source.calls  # queued work was dropped before it started
        with pytest.raises(LookupError, match="set_current"):
            prefetcher.get(1)


def test_cases_that_leave_the_window_free_their_memory(table: Path, no_new_threads: None) -> None:
    # Memory a reader would notice: an idle decode worker must not keep the last case it
    # decoded (a whole volume) alive after the prefetcher let go of it.
    source = open_table(table)
    cases = list(source.iter_cases())
    with Prefetcher(source, cases, depth=2, prefetch_delay_s=0) as prefetcher:
        prefetcher.set_current(0)  # the interactive worker decodes case 0, then has no work
        wait_until(settled(prefetcher, [0, 1, 2]))
        volumes = {i: weakref.ref(prefetcher.peek(i).image.volume.array) for i in (0, 1, 2)}
        prefetcher.set_current(1)
        wait_until(settled(prefetcher, [1, 2, 3, 0]))
        prefetcher.set_current(3)  # 0 and 1 leave the window; nothing new for that worker
        wait_until(settled(prefetcher, [3, 4, 5, 2]))
        gc.collect()
        assert [i for i, ref in volumes.items() if ref() is not None] == [2]


def test_get_waits_and_times_out(table: Path, no_new_threads: None) -> None:
    source, cases = gated(table)
    source.gate(cases[2].image.path)
    with Prefetcher(source, cases, depth=1, prefetch_delay_s=0) as prefetcher:
        prefetcher.set_current(2)
        with pytest.raises(TimeoutError, match="not ready within"):
            prefetcher.get(2, timeout=0.2)
        source.gate(cases[2].image.path).set()
        assert prefetcher.get(2, timeout=WAIT_S).case.id == cases[2].id


def test_byte_cap_holds_and_current_and_next_stay(table: Path, no_new_threads: None) -> None:
    source = open_table(table)
    cases = list(source.iter_cases())
    case_bytes = 2 * 16 * 64 * 64 + 16 * 64 * 64  # int16 image + uint8 mask
    cap = int(2.5 * case_bytes)  # room for the current and next case, not for more
    recorder = Recorder()
    sizes: list[int] = []
    with Prefetcher(source, cases, depth=3, max_bytes=cap, prefetch_delay_s=0) as prefetcher:
        recorder.checks.append(lambda status: sizes.append(prefetcher.cache_bytes))
        prefetcher.subscribe(recorder)
        for index in range(len(cases)):
            prefetcher.set_current(index)
            assert prefetcher.get(index, timeout=WAIT_S).nbytes == case_bytes
            if index + 1 < len(cases):
                recorder.wait_for(lambda i=index: prefetcher.peek(i + 1) is not None)
            protected = {index, index + 1} & set(range(len(cases)))
            assert protected <= set(prefetcher.ready_indices())
            assert len(prefetcher.ready_indices()) <= 2  # the cap has room for two cases
            assert prefetcher.cache_bytes <= cap
            for other in set(prefetcher.plan) - set(prefetcher.ready_indices()):
                state = prefetcher.state(other)
                if state.state is LoadState.IDLE:
                    assert "cache cap" in (state.reason or "")
        assert not prefetcher.over_cap
    assert sizes and max(sizes) <= cap


def test_current_and_next_are_kept_above_the_cap(
    table: Path, no_new_threads: None, caplog: pytest.LogCaptureFixture
) -> None:
    source = open_table(table)
    cases = list(source.iter_cases())
    with (
        caplog.at_level(logging.WARNING, logger="CaseIteratorCoreLib.prefetch"),
        Prefetcher(source, cases, depth=2, max_bytes=1000, prefetch_delay_s=0) as prefetcher,
    ):
        prefetcher.set_current(1)
        prefetcher.get(1, timeout=WAIT_S)
        wait_until(lambda: prefetcher.peek(2) is not None)
        assert prefetcher.peek(1) is not None and prefetcher.peek(2) is not None
        assert prefetcher.over_cap
        assert prefetcher.peek(0) is None and prefetcher.peek(3) is None
    assert "both are kept" in caplog.text


@pytest.fixture
def table_with_bad_cases(tmp_path: Path, table: Path) -> tuple[Path, dict[int, str]]:
    """A CSV of five cases: 1 is a truncated NRRD, 3 a DICOM series with a missing slice."""
    good = [table.parent / f"case_{n:02d}" / "image.nrrd" for n in (1, 2, 3)]
    truncated = tmp_path / "truncated.nrrd"
    data = good[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    files = write_series(tmp_path / "gap", n=6)
    files[3].unlink()
    rows = [
        ("G1", good[0]),
        ("TRUNC", truncated),
        ("G2", good[1]),
        ("GAP", tmp_path / "gap"),
        ("G3", good[2]),
    ]
    csv_path = tmp_path / "cases.csv"
    csv_path.write_text("ID,image\n" + "".join(f"{i},{p}\n" for i, p in rows))
    return csv_path, {1: "truncated.nrrd", 3: "missing slice"}


def test_failing_cases_are_retried_once_and_do_not_block_the_others(
    table_with_bad_cases: tuple[Path, dict[int, str]], no_new_threads: None
) -> None:
    csv_path, bad = table_with_bad_cases
    source = open_table(csv_path)
    cases = list(source.iter_cases())
    recorder = Recorder()
    with Prefetcher(source, cases, depth=4, prefetch_delay_s=0) as prefetcher:
        prefetcher.subscribe(recorder)
        prefetcher.set_current(0)
        recorder.wait_for(settled(prefetcher, list(range(5))))
        for index in (0, 2, 4):
            assert prefetcher.state(index).state is LoadState.READY
        for index, reason in bad.items():
            status = prefetcher.state(index)
            assert status.state is LoadState.FAILED
            assert reason in (status.reason or "")
            assert status.attempt == MAX_ATTEMPTS == 2
            assert recorder.states(index).count(LoadState.FETCHING) == 2
            with pytest.raises(CaseLoadError, match=reason):
                prefetcher.get(index)
        # The good cases were not held behind the retries: their first (and only) attempt
        # started before any retry.
        starts = [s.index for s in recorder.events if s.state is LoadState.FETCHING]
        first_retry = next(n for n, i in enumerate(starts) if starts[:n].count(i) == 1)
        assert {0, 2, 4} <= set(starts[:first_retry])
        # "Try again" once the file is repaired.
        shutil.copy(cases[0].image.path, cases[1].image.path)
        prefetcher.retry(1)
        recorder.wait_for(settled(prefetcher, [1]))
        assert prefetcher.state(1).state is LoadState.READY


def test_a_fault_gone_by_the_retry_loads(table: Path, tmp_path: Path, no_new_threads: None) -> None:
    image = tmp_path / "image.nrrd"
    good = (table.parent / "case_01" / "image.nrrd").read_bytes()
    image.write_bytes(good[:100])  # the copy is still being written at the first attempt
    csv_path = tmp_path / "cases.csv"
    csv_path.write_text(f"ID,image\nA,{image}\n")
    source = open_table(csv_path)
    cases = list(source.iter_cases())
    recorder = Recorder()

    def finish_copy(status: LoadStatus) -> None:
        if status.state is LoadState.QUEUED and status.reason:  # "retrying: ..."
            image.write_bytes(good)

    recorder.checks.append(finish_copy)
    # One interactive worker: it delivers the "retrying" state before it can decode the retry.
    with Prefetcher(source, cases, interactive_workers=1, prefetch_delay_s=0) as prefetcher:
        prefetcher.subscribe(recorder)
        prefetcher.set_current(0)
        loaded = prefetcher.get(0, timeout=WAIT_S)
        assert prefetcher.state(0).attempt == 2
        retrying = [s for s in recorder.events if s.state is LoadState.QUEUED and s.reason]
        assert len(retrying) == 1 and "retrying: " in (retrying[0].reason or "")
        expected = open_table(table)
        first = next(iter(expected.iter_cases()))
        np.testing.assert_array_equal(
            loaded.image.volume.array, load_case(expected, first).image.volume.array
        )


def test_close_cancels_running_work_and_joins_every_thread(table: Path) -> None:
    before = set(threading.enumerate())
    source, cases = gated(table)
    source.gate(cases[0].image.path)  # never opened: the load runs until cancelled
    prefetcher = Prefetcher(source, cases, depth=2, prefetch_delay_s=0)
    started = [t for t in threading.enumerate() if t not in before]
    assert {t.name for t in started} == {
        "caseiterator-retrieval-1",
        "caseiterator-interactive-1",
        "caseiterator-interactive-2",
        "caseiterator-prefetch-1",
    }
    prefetcher.set_current(0)
    wait_until(lambda: prefetcher.state(0).state is LoadState.FETCHING)
    prefetcher.close()
    assert [t for t in threading.enumerate() if t not in before] == []
    assert all(token.cancelled for token in source.tokens[cases[0].image.path])
    assert prefetcher.ready_indices() == []
    with pytest.raises(RuntimeError, match="closed"):
        prefetcher.set_current(1)
    prefetcher.close()  # idempotent


def test_bad_arguments_are_refused(table: Path) -> None:
    source = open_table(table)
    cases = list(source.iter_cases())
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(source, cases, depth=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        Prefetcher(source, cases, max_bytes=0)
    with pytest.raises(ValueError, match="max_memory_mb must be > 0, got 0"):
        Prefetcher(source, cases, max_memory_mb=0)
    with pytest.raises(ValueError, match="not both"):
        Prefetcher(source, cases, max_bytes=2**20, max_memory_mb=1)
    with Prefetcher(source, cases, max_memory_mb=1.5) as prefetcher:
        assert prefetcher.max_bytes == int(1.5 * 2**20)
    with Prefetcher(source, cases) as prefetcher, pytest.raises(IndexError, match="outside"):
        prefetcher.set_current(N_CASES)


class MaskUnreachableSource(CsvTableSource):
    """A CSV source whose masks cannot be retrieved (no real source fetches masks over a
    network yet, so the fault is provoked here)."""

    def locate(
        self,
        ref: ImageRef,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImageRef:
        if ref.role == "mask":
            raise CaseIteratorError("server 'pacs' cannot be reached")
        return ref


def test_a_mask_that_cannot_be_retrieved_is_a_warning_not_a_failure(
    table: Path, no_new_threads: None
) -> None:
    source = MaskUnreachableSource.from_batch(load_batch(table))
    cases = list(source.iter_cases())
    assert cases[0].masks
    with Prefetcher(source, cases, depth=0, prefetch_delay_s=0) as prefetcher:
        prefetcher.set_current(0)
        loaded = prefetcher.get(0, timeout=WAIT_S)
    assert loaded.masks == ()
    assert loaded.image.volume.array.shape == (16, 64, 64)
    (problem,) = loaded.problems
    assert not problem.is_error
    assert problem.message.startswith("mask ") and "cannot be reached" in problem.message
