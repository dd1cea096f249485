"""Tests of the per-batch, per-reader progress store, on real SQLite files."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "Modules" / "Scripted" / "CaseIteratorCore"
if str(PACKAGE_DIR) not in sys.path:  # the project may be used without being pip-installed
    sys.path.insert(0, str(PACKAGE_DIR))

from CaseIteratorCoreLib.errors import CaseIteratorError  # noqa: E402
from CaseIteratorCoreLib.progress_store import (  # noqa: E402
    SCHEMA_VERSION,
    CaseProgress,
    CaseStatus,
    ProgressStore,
    ProgressStoreError,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "progress.sqlite"


@pytest.fixture
def store(db: Path):
    with ProgressStore(db) as s:
        yield s


# -- statuses and transitions ---------------------------------------------------------------


def test_untouched_case_is_todo_with_zeros(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    assert b.get("c1") == CaseProgress("c1", CaseStatus.TODO, None, 0.0, 0, None, ())
    assert b.all() == {}


def test_every_status_round_trips(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    assert b.open_case("c1").status is CaseStatus.IN_PROGRESS
    assert b.mark_done("c1").status is CaseStatus.DONE
    assert b.mark_skipped("c2", "motion artefacts") == b.get("c2")
    assert b.get("c2").status is CaseStatus.SKIPPED
    assert b.get("c2").reason == "motion artefacts"
    b.mark_failed("c3", "series has a missing slice")
    assert b.get("c3").status is CaseStatus.FAILED
    assert b.get("c3").reason == "series has a missing slice"
    b.open_case("c4")
    b.reset("c4")
    assert b.get("c4").status is CaseStatus.TODO
    b.set_status("c5", "in-progress")
    assert b.get("c5").status is CaseStatus.IN_PROGRESS
    statuses = {cid: p.status for cid, p in b.all().items()}
    assert statuses == {
        "c1": CaseStatus.DONE,
        "c2": CaseStatus.SKIPPED,
        "c3": CaseStatus.FAILED,
        "c4": CaseStatus.TODO,
        "c5": CaseStatus.IN_PROGRESS,
    }
    # updated_at is an ISO 8601 UTC time of (about) now.
    at = datetime.fromisoformat(b.get("c1").updated_at)
    assert at.tzinfo is not None and at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60


def test_transitions_clear_or_keep_reason(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.mark_failed("c1", "cannot decode frame 3")
    # A failed case that opens fine is being read again: in progress, old reason gone.
    p = b.open_case("c1")
    assert (p.status, p.reason) == (CaseStatus.IN_PROGRESS, None)
    b.mark_skipped("c1", "  poor contrast  ")
    assert b.get("c1").reason == "poor contrast"
    # Reopening a skipped case keeps it skipped, with its reason.
    p = b.open_case("c1")
    assert (p.status, p.reason, p.opened_count) == (CaseStatus.SKIPPED, "poor contrast", 2)
    p = b.mark_done("c1")
    assert (p.status, p.reason) == (CaseStatus.DONE, None)


@pytest.mark.parametrize("reason", [None, "", "   ", 3])
@pytest.mark.parametrize("method", ["mark_skipped", "mark_failed"])
def test_skip_and_fail_require_a_reason(store: ProgressStore, method: str, reason) -> None:
    b = store.for_batch("batch-1", "alice")
    b.open_case("c1")
    with pytest.raises(ValueError, match=r"reason is required.*'c1'") as info:
        getattr(b, method)("c1", reason)
    assert repr(reason) in str(info.value)
    assert b.get("c1").status is CaseStatus.IN_PROGRESS  # nothing written
    assert [e.kind for e in b.events("c1")] == ["open"]


def test_unknown_status_and_bad_values_are_refused(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    with pytest.raises(ValueError, match=r"unknown case status 'finished'.*in-progress"):
        b.set_status("c1", "finished")
    with pytest.raises(ValueError, match=r"-1\.5"):
        b.add_time("c1", -1.5)
    with pytest.raises(ValueError, match="nan"):
        b.add_time("c1", float("nan"))
    with pytest.raises(ValueError, match="case_id"):
        b.open_case("")
    with pytest.raises(ValueError, match="reader"):
        store.for_batch("batch-1", "")
    assert b.all() == {}


def test_reopening_a_done_case_keeps_it_done(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.open_case("c1")
    b.mark_done("c1", "/out/c1_alice.seg.nrrd")
    p = b.open_case("c1")
    assert p.status is CaseStatus.DONE
    assert p.opened_count == 2
    assert p.results == ("/out/c1_alice.seg.nrrd",)


def test_time_accumulates_across_opens(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    for seconds in (12.5, 30.0, 0.25):
        b.open_case("c1")
        b.add_time("c1", seconds)
    b.add_time("c1", 0)
    p = b.get("c1")
    assert p.seconds == pytest.approx(42.75)
    assert p.opened_count == 3


def test_results_accumulate_in_order_newest_last(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.add_result("c1", "1.2.3.1")
    b.add_result("c1", "1.2.3.2")
    assert b.get("c1").status is CaseStatus.TODO  # a result alone does not finish a case
    b.mark_done("c1", "1.2.3.3")
    assert b.get("c1").results == ("1.2.3.1", "1.2.3.2", "1.2.3.3")
    # Saving the same reference again makes it the newest instead of listing it twice.
    b.add_result("c1", "1.2.3.1")
    assert b.get("c1").results == ("1.2.3.2", "1.2.3.3", "1.2.3.1")
    assert b.all()["c1"].results == ("1.2.3.2", "1.2.3.3", "1.2.3.1")


def test_reset_keeps_time_and_results(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.open_case("c1")
    b.add_time("c1", 90)
    b.mark_done("c1", "r1")
    p = b.reset("c1")
    assert (p.status, p.seconds, p.results, p.opened_count) == (CaseStatus.TODO, 90, ("r1",), 1)


def test_events_record_what_happened_when(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.open_case("c1")
    b.add_time("c1", 5)
    b.mark_skipped("c1", "wrong body part")
    b.reset("c1")
    b.open_case("c1")
    b.mark_done("c1", "r1")
    b.add_result("c1", "r2")
    b.open_case("c2")
    events = b.events("c1")
    assert [(e.kind, e.detail) for e in events] == [
        ("open", None),
        ("time", "5.0"),
        ("skipped", "wrong body part"),
        ("reset", None),
        ("open", None),
        ("done", "r1"),
        ("result", "r2"),
    ]
    times = [datetime.fromisoformat(e.at) for e in events]
    assert times == sorted(times)
    assert events[-1].at == b.get("c1").updated_at
    assert [e.case_id for e in b.events()] == ["c1"] * 7 + ["c2"]
    assert store.for_batch("batch-1", "bob").events() == []


def test_events_are_append_only(store: ProgressStore, db: Path) -> None:
    store.for_batch("batch-1", "alice").open_case("c1")
    raw = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM events")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE events SET kind = 'done'")
    finally:
        raw.close()
    assert len(store.for_batch("batch-1", "alice").events()) == 1


# -- separation and counts --------------------------------------------------------------------


def test_readers_and_batches_are_separate(store: ProgressStore) -> None:
    alice1 = store.for_batch("batch-1", "alice")
    bob1 = store.for_batch("batch-1", "bob")
    alice2 = store.for_batch("batch-2", "alice")
    alice1.open_case("c1")
    alice1.add_time("c1", 10)
    alice1.mark_done("c1", "c1_alice.seg.nrrd")
    bob1.mark_skipped("c1", "not my specialty")
    alice2.open_case("c1")

    assert alice1.get("c1").status is CaseStatus.DONE
    assert alice1.get("c1").results == ("c1_alice.seg.nrrd",)
    assert bob1.get("c1").status is CaseStatus.SKIPPED
    assert bob1.get("c1").seconds == 0 and bob1.get("c1").results == ()
    assert alice2.get("c1").status is CaseStatus.IN_PROGRESS
    assert alice2.get("c1").seconds == 0
    assert set(alice1.all()) == set(bob1.all()) == set(alice2.all()) == {"c1"}
    assert store.for_batch("batch-3", "alice").all() == {}
    assert store.readers("batch-1") == ["alice", "bob"]
    assert store.readers("batch-2") == ["alice"]
    assert alice1.counts()[CaseStatus.SKIPPED] == 0


def test_counts_include_untouched_cases_as_todo(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    b.mark_done("c1")
    b.mark_done("c2")
    b.open_case("c3")
    b.mark_failed("c4", "unreadable")
    b.mark_done("other")  # not in the list below: not counted then
    ids = ["c1", "c2", "c3", "c4", "c5", "c6", "c6"]
    assert b.counts(ids) == {
        CaseStatus.TODO: 2,
        CaseStatus.IN_PROGRESS: 1,
        CaseStatus.DONE: 2,
        CaseStatus.SKIPPED: 0,
        CaseStatus.FAILED: 1,
    }
    assert b.counts(iter(ids)) == b.counts(ids)  # any iterable, consumed once
    assert b.counts()[CaseStatus.DONE] == 3
    assert sum(b.counts().values()) == 5
    assert store.for_batch("batch-1", "bob").counts(ids)[CaseStatus.TODO] == 6


# -- persistence and the file ----------------------------------------------------------------


def test_progress_persists_in_a_new_store(db: Path) -> None:
    with ProgressStore(db) as first:
        b = first.for_batch("batch-1", "alice")
        b.open_case("c1")
        b.add_time("c1", 33.5)
        b.mark_done("c1", "r1")
        b.mark_skipped("c2", "duplicate study")
        before = b.all()
    assert first.closed
    with pytest.raises(ProgressStoreError, match="closed"):
        b.get("c1")
    with ProgressStore(db) as second:
        again = second.for_batch("batch-1", "alice")
        assert again.all() == before
        assert again.get("c1").seconds == 33.5
        assert len(again.events()) == 4


def test_file_layout(store: ProgressStore, db: Path) -> None:
    store.for_batch("batch-1", "alice").open_case("c1")
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert {"cases", "results", "events"} <= tables
        cols = [r[1] for r in raw.execute("PRAGMA table_info(events)")]
        assert {"batch_key", "reader", "case_id", "at", "kind", "detail"} <= set(cols)
    finally:
        raw.close()


def test_default_path_is_in_the_user_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CASEITERATOR_DATA_DIR", str(tmp_path / "data"))
    with ProgressStore() as s:
        s.for_batch("b", "r").open_case("c1")
        assert s.path == tmp_path / "data" / "progress.sqlite"
    assert (tmp_path / "data" / "progress.sqlite").is_file()


def test_empty_file_becomes_a_new_store(db: Path) -> None:
    db.write_bytes(b"")
    with ProgressStore(db) as s:
        assert s.for_batch("b", "r").open_case("c1").opened_count == 1


# -- damaged, foreign and newer files ----------------------------------------------------------


def _assert_refused_and_kept(db: Path, *match: str) -> ProgressStoreError:
    content = db.read_bytes()
    with pytest.raises(ProgressStoreError) as info:
        ProgressStore(db)
    message = str(info.value)
    assert str(db) in message
    for text in match:
        assert text in message
    assert isinstance(info.value, CaseIteratorError)
    assert db.read_bytes() == content  # never deleted or rewritten
    return info.value


def test_non_sqlite_file_is_refused_with_the_fix(db: Path) -> None:
    db.write_bytes(b"this is a CSV, not a database\n" * 100)
    err = _assert_refused_and_kept(db, "move the file aside")
    assert err.path == db


def test_damaged_database_is_refused(db: Path) -> None:
    with ProgressStore(db) as s:
        b = s.for_batch("batch-1", "alice")
        for i in range(300):
            b.mark_done(f"case-{i:04d}", f"/results/case-{i:04d}_alice.seg.nrrd")
    assert not Path(f"{db}-wal").exists()  # checkpointed on close: all data in the main file
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    rng = random.Random(1)
    for p in range(1, len(data) // page):  # keep page 0 (the header), scramble the rest
        data[p * page + 8 : p * page + 200] = rng.randbytes(192)
    db.write_bytes(bytes(data))
    _assert_refused_and_kept(db, "damaged", "move the file aside")


def test_foreign_sqlite_file_is_refused(db: Path) -> None:
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE patients (id TEXT)")
    raw.commit()
    raw.close()
    _assert_refused_and_kept(db, "not a CaseIterator progress database")


def test_newer_layout_is_refused(db: Path) -> None:
    ProgressStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    _assert_refused_and_kept(db, "newer CaseIterator", "update CaseIterator")


def test_folder_in_place_of_file_is_refused(db: Path) -> None:
    db.mkdir()
    with pytest.raises(ProgressStoreError, match="cannot be opened") as info:
        ProgressStore(db)
    assert str(db) in str(info.value)


# -- concurrency -----------------------------------------------------------------------------


def test_two_threads_adding_time_lose_none(store: ProgressStore) -> None:
    b = store.for_batch("batch-1", "alice")
    n = 200
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            start.wait()
            for i in range(n):
                b.add_time("c1", 0.25)
                b.add_time(f"{name}-{i % 5}", 1.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("gui", "autosave")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert b.get("c1").seconds == 2 * n * 0.25  # exact: 0.25 is a binary fraction
    assert b.get("gui-0").seconds == n / 5
    assert sum(e.kind == "time" for e in b.events()) == 4 * n


def test_writer_waits_for_another_writer_then_succeeds(store: ProgressStore, db: Path) -> None:
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # e.g. `caseiterator status --reset` in another process
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        t0 = time.monotonic()
        store.for_batch("b", "r").open_case("c1")
        assert time.monotonic() - t0 >= 0.2
    finally:
        release.join()
        other.close()
    assert store.for_batch("b", "r").get("c1").opened_count == 1


def test_write_lock_held_too_long_gives_a_clear_error(db: Path) -> None:
    ProgressStore(db).close()
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        with ProgressStore(db, busy_timeout=0.2) as s:
            b = s.for_batch("b", "r")
            assert b.get("c1").status is CaseStatus.TODO  # reading still works (WAL)
            with pytest.raises(ProgressStoreError, match="locked") as info:
                b.open_case("c1")
            assert str(db) in str(info.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from CaseIteratorCoreLib.progress_store import ProgressStore

store = ProgressStore(Path(sys.argv[2]))
b = store.for_batch("batch-1", "alice")
run = sys.argv[3]
print("ready", flush=True)
i = 0
while True:
    case = f"{run}-{i:06d}"
    b.open_case(case)
    print("open", case, flush=True)
    b.add_time("total", 1.0)
    print("time", case, flush=True)
    b.mark_done(case, f"{case}.seg.nrrd")
    print("done", case, flush=True)
    i += 1
"""


def test_survives_kill_at_any_moment(db: Path, tmp_path: Path) -> None:
    rng = random.Random(20261125)
    reported_time = 0
    unreported = 0.0  # steps committed just before a kill, before the child could report them
    reported: list[tuple[str, str]] = []
    deadline = time.monotonic() + 20  # generous bound; normally ~2 s
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(PACKAGE_DIR), str(db), f"run{run}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n", child.stderr.read()
            target = rng.randint(1, 400)
            for _ in range(target):
                line = child.stdout.readline()
                assert line, f"child died: {child.stderr.read()}"
                reported.append(tuple(line.split()))
                if run == 2 and len(reported) % 50 == 0:
                    # The app writes while `caseiterator status` reads from another process.
                    with ProgressStore(db) as viewer:
                        assert viewer.for_batch("batch-1", "alice").counts()[CaseStatus.DONE] >= 0
            time.sleep(rng.random() * 0.01)  # land anywhere inside a write
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            # Lines written before the kill are committed steps too.
            # A line cut by the kill (no newline) was never fully reported: leave it out.
            rest = child.stdout.read()
            complete = rest if rest.endswith("\n") else rest.rpartition("\n")[0]
            reported.extend(tuple(line.split()) for line in complete.splitlines())
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        assert time.monotonic() < deadline

        raw = sqlite3.connect(db)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            raw.close()
        with ProgressStore(db) as s:
            b = s.for_batch("batch-1", "alice")
            progress = b.all()
            for kind, case in reported:
                p = progress[case]
                assert p.opened_count == 1
                if kind == "done":
                    assert p.status is CaseStatus.DONE
                    assert p.results == (f"{case}.seg.nrrd",)
            reported_time = sum(kind == "time" for kind, _ in reported)
            # At most the one step in flight at the kill committed without being reported.
            extra = progress["total"].seconds - reported_time
            assert unreported <= extra <= unreported + 1
            unreported = extra
            for case, p in progress.items():
                if case != "total" and p.status is CaseStatus.DONE:
                    assert p.results == (f"{case}.seg.nrrd",)  # status and result together
            events = b.events()
            done_events = {e.case_id for e in events if e.kind == "done"}
            done_cases = {c for c, p in progress.items() if p.status is CaseStatus.DONE}
            assert done_events == done_cases
    assert reported_time >= 6
