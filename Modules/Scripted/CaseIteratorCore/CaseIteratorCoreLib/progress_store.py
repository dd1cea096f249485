"""Per-batch, per-reader reading progress, kept in one SQLite file.

What a reader has done with each case of a batch (status, reason, reading time, how often it
was opened, result references) is stored in ``progress.sqlite`` in the user data folder, keyed
by ``(batch_key, reader, case_id)``. An append-only ``events`` table records every change with
its UTC time, so "when was this case read, by whom" can be answered later.

Durability: every write is one SQLite transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) in WAL
mode with ``synchronous=FULL``, so a write that returned survives a killed process and a power
cut, and a write interrupted half-way leaves no trace. ``busy_timeout`` lets two processes (the
app and ``caseiterator status``) use the file at the same time.

Threads: each thread gets its own connection (``threading.local``), so the GUI thread reading
progress never waits on the background autosave thread's commit (WAL lets readers run beside
one writer); concurrent writers are serialised by SQLite's write lock.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from .errors import CaseIteratorError
from .paths import user_data_dir

__all__ = [
    "SCHEMA_VERSION",
    "BatchProgress",
    "CaseProgress",
    "CaseStatus",
    "ProgressEvent",
    "ProgressStore",
    "ProgressStoreError",
    "default_progress_path",
]

log = logging.getLogger(__name__)

#: Version of the database layout, kept in ``PRAGMA user_version``; bump it and add a step to
#: ``_MIGRATIONS`` when the layout changes.
SCHEMA_VERSION = 1

#: ``PRAGMA application_id`` of our files ("CItr"): tells our database from any other SQLite file.
APPLICATION_ID = 0x43497472

#: File name of the store inside :func:`~.paths.user_data_dir`.
PROGRESS_FILE_NAME = "progress.sqlite"

#: Default seconds a write waits for another process/thread holding the write lock.
DEFAULT_BUSY_TIMEOUT_S = 10.0


class ProgressStoreError(CaseIteratorError):
    """The progress database cannot be used; the message names the file and the fix.

    Parameters
    ----------
    path
        The database file.
    message
        What is wrong.
    fix
        What the reader or site admin should do about it.
    """

    def __init__(self, path: Path | str, message: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.reason = message
        self.fix = fix
        text = f"{self.path}: {message}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class CaseStatus(StrEnum):
    """Where a reader is with one case; the values are what the database stores."""

    TODO = "todo"
    IN_PROGRESS = "in-progress"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class CaseProgress:
    """One reader's progress on one case of a batch.

    Attributes
    ----------
    case_id
        The case identifier within the batch.
    status
        Current status.
    reason
        Why the case was skipped or failed (always set for those, ``None`` otherwise).
    seconds
        Total reading time over all openings, in seconds.
    opened_count
        How many times the case was opened.
    updated_at
        ISO 8601 UTC time of the last change, ``None`` for a case never touched.
    results
        Result references (file paths, SOP Instance UIDs), oldest first, newest last.
    """

    case_id: str
    status: CaseStatus = CaseStatus.TODO
    reason: str | None = None
    seconds: float = 0.0
    opened_count: int = 0
    updated_at: str | None = None
    results: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProgressEvent:
    """One entry of the audit trail.

    Attributes
    ----------
    case_id
        The case concerned.
    at
        ISO 8601 UTC time of the change.
    kind
        ``open``, ``time``, ``result``, ``reset`` or the new status (``in-progress``, ``done``,
        ``skipped``, ``failed``).
    detail
        Reason, seconds added or result reference, when the kind has one.
    """

    case_id: str
    at: str
    kind: str
    detail: str | None


_STATUS_SQL = ", ".join(f"'{s.value}'" for s in CaseStatus)

_SCHEMA_V1 = f"""
CREATE TABLE cases (
    batch_key    TEXT NOT NULL,
    reader       TEXT NOT NULL,
    case_id      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ({_STATUS_SQL})),
    reason       TEXT,
    seconds      REAL NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    opened_count INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT,
    PRIMARY KEY (batch_key, reader, case_id)
) WITHOUT ROWID;

-- One row per result reference; the id orders them (newest last).
CREATE TABLE results (
    id        INTEGER PRIMARY KEY,
    batch_key TEXT NOT NULL,
    reader    TEXT NOT NULL,
    case_id   TEXT NOT NULL,
    ref       TEXT NOT NULL,
    added_at  TEXT NOT NULL,
    UNIQUE (batch_key, reader, case_id, ref)
);
CREATE INDEX results_by_case ON results (batch_key, reader, case_id, id);

-- Audit trail. AUTOINCREMENT: ids are never reused, so id order is the order of events.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_key TEXT NOT NULL,
    reader    TEXT NOT NULL,
    case_id   TEXT NOT NULL,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX events_by_case ON events (batch_key, reader, case_id, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
"""


def _create_v1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";\n"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


#: ``_MIGRATIONS[v]`` brings a database of version ``v`` to ``v + 1`` (inside a transaction).
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}

_MOVE_ASIDE_FIX = (
    "close CaseIterator and move the file aside (rename it, together with any '-wal' and '-shm' "
    "files beside it); an empty progress store is rebuilt on the next start. Results already "
    "saved are not affected, and the old file can be kept for inspection."
)


def default_progress_path() -> Path:
    """Return the default store file: ``user_data_dir() / "progress.sqlite"``."""
    return user_data_dir() / PROGRESS_FILE_NAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_reason(case_id: str, status: CaseStatus, reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(
            f"a reason is required to mark case {case_id!r} {status.value}, got {reason!r}"
        )
    return reason.strip()


def _check_seconds(seconds: object) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    return float(seconds)


def _parse_status(status: object) -> CaseStatus:
    try:
        return CaseStatus(status)
    except ValueError:
        expected = ", ".join(s.value for s in CaseStatus)
        raise ValueError(f"unknown case status {status!r}; expected one of: {expected}") from None


class ProgressStore:
    """The progress database; open it once per process and share it between threads.

    Parameters
    ----------
    path
        Database file; default ``user_data_dir() / "progress.sqlite"`` (honours
        ``$CASEITERATOR_DATA_DIR``). Its folder is created. A missing or empty file becomes a
        new store.
    busy_timeout
        Seconds a write waits while another process or thread holds the write lock before
        :class:`ProgressStoreError` is raised.

    Raises
    ------
    ProgressStoreError
        The file is not a CaseIterator progress database, is damaged, was written by a newer
        CaseIterator, or cannot be opened. The file is never deleted or rewritten then.

    Notes
    -----
    Thread model: one SQLite connection per thread (``threading.local``), made on the thread's
    first use. Readers never wait on a writer (WAL); writers wait on each other up to
    ``busy_timeout``. Call :meth:`close` after the background threads using the store stopped.
    """

    def __init__(
        self, path: Path | str | None = None, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path) if path is not None else default_progress_path()
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        # Every connection ever made, with its thread, so close() can close them all and
        # connections of finished threads can be closed instead of leaking.
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._registry_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProgressStoreError(
                self.path,
                f"cannot create the folder of the progress database ({exc.strerror}).",
                "check the path and its permissions, or set $CASEITERATOR_DATA_DIR.",
            ) from exc
        try:
            self._open_schema(self._connection())
        except BaseException:
            self.close()
            raise

    # -- public API -------------------------------------------------------------------------

    def for_batch(self, batch_key: str, reader: str) -> BatchProgress:
        """Return the view of one reader's progress in one batch.

        Parameters
        ----------
        batch_key
            Stable identifier of the batch (e.g. derived from its definition file).
        reader
            The reader's name; each reader's progress is separate.

        Returns
        -------
        BatchProgress
            A light view; make as many as needed.
        """
        return BatchProgress(
            self, _check_text("batch_key", batch_key), _check_text("reader", reader)
        )

    def readers(self, batch_key: str) -> list[str]:
        """Return the readers who have progress recorded in ``batch_key``, sorted."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT DISTINCT reader FROM cases WHERE batch_key = ? ORDER BY reader",
                (batch_key,),
            ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close every connection (all threads); later use raises :class:`ProgressStoreError`."""
        with self._registry_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProgressStore({str(self.path)!r})"

    # -- connections and transactions --------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._registry_lock:
            if self._closed:
                raise ProgressStoreError(self.path, "the progress store was closed.")
            # Close connections left by threads that ended (e.g. short-lived workers).
            alive = []
            for thread_ref, old in self._connections:
                thread = thread_ref()
                if thread is None or not thread.is_alive():
                    old.close()
                else:
                    alive.append((thread_ref, old))
            conn = self._connect()
            alive.append((weakref.ref(threading.current_thread()), conn))
            self._connections = alive
        self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False
            # only so close() may close other threads' connections; each is used by one thread.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            # FULL: also fsync the WAL at every commit, so a committed step survives power loss.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc) from exc
        return conn

    def _open_schema(self, conn: sqlite3.Connection) -> None:
        try:
            # Identity first: reading the header is what fails for a file that is not SQLite,
            # and a foreign or newer file must be refused before anything is written to it.
            version = self._check_identity(conn)
            check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise ProgressStoreError(
                    self.path,
                    "the progress database is damaged (" + "; ".join(check[:3]) + ").",
                    _MOVE_ASIDE_FIX,
                )
            # Persistent in the file; lets readers (another thread, `caseiterator status`) run
            # beside the one writer.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: WAL journal not available, using %s", self.path, mode)
            if version < SCHEMA_VERSION:
                self._migrate(conn)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _check_identity(self, conn: sqlite3.Connection) -> int:
        """Refuse foreign SQLite files and newer layouts; return the layout version."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            if tables == 0:
                return 0  # new, empty file
        if app_id != APPLICATION_ID:
            raise ProgressStoreError(
                self.path,
                "this SQLite file is not a CaseIterator progress database.",
                "point CaseIterator at another file, or " + _MOVE_ASIDE_FIX,
            )
        if version > SCHEMA_VERSION:
            raise ProgressStoreError(
                self.path,
                f"the progress database has layout version {version}, written by a newer "
                f"CaseIterator; this one knows versions up to {SCHEMA_VERSION}.",
                "update CaseIterator on this computer (the file is kept as it is).",
            )
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # IMMEDIATE, and re-read the version inside: another process may be migrating too.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_identity(conn)
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](conn)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: all of its changes are committed together or not at all.

        Writes take the write lock up front (IMMEDIATE) so a read-then-write never fails
        half-way with "database is locked"; reads get one consistent snapshot.
        """
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> ProgressStoreError:
        """Translate an SQLite error into a message a reader or site admin can act on."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        detail = str(exc)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return ProgressStoreError(
                self.path,
                f"the progress database stayed locked by another program for more than "
                f"{self._busy_timeout:g} s ({detail}).",
                "wait for the other CaseIterator window or command to finish, then try again.",
            )
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return ProgressStoreError(
                self.path,
                f"the file is not a readable CaseIterator progress database ({detail}).",
                _MOVE_ASIDE_FIX,
            )
        if name.startswith("SQLITE_FULL"):
            return ProgressStoreError(
                self.path, f"the disk is full ({detail}).", "free disk space, then try again."
            )
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
            return ProgressStoreError(
                self.path,
                f"the progress database cannot be opened for writing ({detail}).",
                "check that the path is a file you may write (and its folder too), or set "
                "$CASEITERATOR_DATA_DIR to a writable folder.",
            )
        return ProgressStoreError(
            self.path,
            f"the progress database failed ({detail}).",
            "check the disk; if it keeps failing, " + _MOVE_ASIDE_FIX,
        )


class BatchProgress:
    """One reader's progress in one batch; get it from :meth:`ProgressStore.for_batch`.

    Each write method is one atomic transaction, records an event in the audit trail and
    returns the case's new :class:`CaseProgress`.
    """

    def __init__(self, store: ProgressStore, batch_key: str, reader: str) -> None:
        self.store = store
        self.batch_key = batch_key
        self.reader = reader

    def __repr__(self) -> str:
        return f"BatchProgress({self.batch_key!r}, reader={self.reader!r}, store={self.store!r})"

    # -- reading ---------------------------------------------------------------------------

    def get(self, case_id: str) -> CaseProgress:
        """Return the progress of ``case_id``; a case never touched is TODO with zeros."""
        _check_text("case_id", case_id)
        with self.store._transaction(write=False) as conn:
            return self._get(conn, case_id)

    def all(self) -> dict[str, CaseProgress]:
        """Return the progress of every case touched in this batch by this reader."""
        with self.store._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT case_id, status, reason, seconds, opened_count, updated_at FROM cases"
                " WHERE batch_key = ? AND reader = ? ORDER BY case_id",
                (self.batch_key, self.reader),
            ).fetchall()
            refs: dict[str, list[str]] = {}
            for case_id, ref in conn.execute(
                "SELECT case_id, ref FROM results WHERE batch_key = ? AND reader = ? ORDER BY id",
                (self.batch_key, self.reader),
            ):
                refs.setdefault(case_id, []).append(ref)
        return {row[0]: self._row(row, refs.get(row[0], ())) for row in rows}

    def counts(self, case_ids: Iterable[str] | None = None) -> dict[CaseStatus, int]:
        """Count cases per status (every status is a key, zero included).

        Parameters
        ----------
        case_ids
            The batch's cases. When given, exactly these are counted (each once) and those never
            touched count as TODO; when ``None``, only cases with recorded progress are counted.
        """
        with self.store._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT case_id, status FROM cases WHERE batch_key = ? AND reader = ?",
                (self.batch_key, self.reader),
            ).fetchall()
        result = dict.fromkeys(CaseStatus, 0)
        known = {case_id: CaseStatus(status) for case_id, status in rows}
        wanted = known.keys() if case_ids is None else dict.fromkeys(case_ids)
        for case_id in wanted:
            result[known.get(case_id, CaseStatus.TODO)] += 1
        return result

    def events(self, case_id: str | None = None) -> list[ProgressEvent]:
        """Return the audit trail (oldest first) of one case, or of the whole batch."""
        sql = "SELECT case_id, at, kind, detail FROM events WHERE batch_key = ? AND reader = ?"
        args: tuple[str, ...] = (self.batch_key, self.reader)
        if case_id is not None:
            sql += " AND case_id = ?"
            args += (_check_text("case_id", case_id),)
        with self.store._transaction(write=False) as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [ProgressEvent(*row) for row in rows]

    # -- writing ---------------------------------------------------------------------------

    def open_case(self, case_id: str) -> CaseProgress:
        """Record that the reader opened ``case_id``.

        The status becomes in-progress, except that a done or skipped case keeps its status
        (looking at a finished case again does not unfinish it). ``opened_count`` grows by one.
        """
        finished = f"status IN ('{CaseStatus.DONE}', '{CaseStatus.SKIPPED}')"
        return self._write(
            case_id,
            "open",
            None,
            # In SQLite every right-hand side sees the old row, so the CASEs agree.
            f"status = CASE WHEN {finished} THEN status ELSE '{CaseStatus.IN_PROGRESS}' END,"
            f" reason = CASE WHEN {finished} THEN reason ELSE NULL END,"
            " opened_count = opened_count + 1",
        )

    def add_time(self, case_id: str, seconds: float) -> CaseProgress:
        """Add ``seconds`` (>= 0) of reading time to ``case_id``; the status is unchanged."""
        seconds = _check_seconds(seconds)
        # Added in SQL, not read-modify-write in Python, so concurrent adds are never lost.
        return self._write(case_id, "time", repr(seconds), "seconds = seconds + ?", (seconds,))

    def mark_done(self, case_id: str, result_ref: str | None = None) -> CaseProgress:
        """Mark ``case_id`` done, recording ``result_ref`` (newest result) when given."""
        if result_ref is not None:
            _check_text("result_ref", result_ref)
        return self._set(case_id, CaseStatus.DONE, None, result_ref)

    def mark_skipped(self, case_id: str, reason: str) -> CaseProgress:
        """Mark ``case_id`` skipped; ``reason`` (non-empty) says why, e.g. "motion artefacts"."""
        return self._set(case_id, CaseStatus.SKIPPED, reason)

    def mark_failed(self, case_id: str, reason: str) -> CaseProgress:
        """Mark ``case_id`` failed; ``reason`` (non-empty) says why, e.g. "missing slice"."""
        return self._set(case_id, CaseStatus.FAILED, reason)

    def reset(self, case_id: str) -> CaseProgress:
        """Put ``case_id`` back to TODO, keeping its reading time, open count and results."""
        return self._set(case_id, CaseStatus.TODO, None)

    def set_status(
        self, case_id: str, status: CaseStatus | str, reason: str | None = None
    ) -> CaseProgress:
        """Set the status from a value (e.g. read from a CLI or a file).

        Raises
        ------
        ValueError
            ``status`` is not a :class:`CaseStatus` value, or a reason is missing for
            skipped/failed.
        """
        return self._set(case_id, _parse_status(status), reason)

    def add_result(self, case_id: str, ref: str) -> CaseProgress:
        """Append result reference ``ref`` to ``case_id``; the status is unchanged.

        Adding a reference the case already has moves it to the end (newest) instead of
        listing it twice, since saving the same file again is one result.
        """
        _check_text("ref", ref)

        def extra(conn: sqlite3.Connection, now: str) -> None:
            self._insert_result(conn, case_id, ref, now)

        return self._write(case_id, "result", ref, "", extra=extra)

    # -- internals -------------------------------------------------------------------------

    def _set(
        self,
        case_id: str,
        status: CaseStatus,
        reason: str | None,
        result_ref: str | None = None,
    ) -> CaseProgress:
        if status in (CaseStatus.SKIPPED, CaseStatus.FAILED):
            reason = _check_reason(case_id, status, reason)
        else:
            reason = None
        kind = "reset" if status is CaseStatus.TODO else status.value

        def extra(conn: sqlite3.Connection, now: str) -> None:
            if result_ref is not None:
                self._insert_result(conn, case_id, result_ref, now)

        return self._write(
            case_id,
            kind,
            reason if result_ref is None else result_ref,
            "status = ?, reason = ?",
            (status.value, reason),
            extra=extra,
        )

    def _write(
        self,
        case_id: str,
        kind: str,
        detail: str | None,
        assignments: str,
        args: tuple[object, ...] = (),
        extra: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> CaseProgress:
        """Apply one change to a case's row, plus its event, in one transaction."""
        _check_text("case_id", case_id)
        key = (self.batch_key, self.reader, case_id)
        with self.store._transaction(write=True) as conn:
            now = _now()
            conn.execute(
                "INSERT INTO cases (batch_key, reader, case_id) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                key,
            )
            sets = f"{assignments}, updated_at = ?" if assignments else "updated_at = ?"
            conn.execute(
                f"UPDATE cases SET {sets} WHERE batch_key = ? AND reader = ? AND case_id = ?",
                (*args, now, *key),
            )
            if extra is not None:
                extra(conn, now)
            conn.execute(
                "INSERT INTO events (batch_key, reader, case_id, at, kind, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*key, now, kind, detail),
            )
            return self._get(conn, case_id)

    def _insert_result(self, conn: sqlite3.Connection, case_id: str, ref: str, now: str) -> None:
        key = (self.batch_key, self.reader, case_id)
        conn.execute(
            "DELETE FROM results WHERE batch_key = ? AND reader = ? AND case_id = ? AND ref = ?",
            (*key, ref),
        )
        conn.execute(
            "INSERT INTO results (batch_key, reader, case_id, ref, added_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (*key, ref, now),
        )

    def _get(self, conn: sqlite3.Connection, case_id: str) -> CaseProgress:
        key = (self.batch_key, self.reader, case_id)
        row = conn.execute(
            "SELECT case_id, status, reason, seconds, opened_count, updated_at FROM cases"
            " WHERE batch_key = ? AND reader = ? AND case_id = ?",
            key,
        ).fetchone()
        if row is None:
            return CaseProgress(case_id)
        refs = [
            r[0]
            for r in conn.execute(
                "SELECT ref FROM results WHERE batch_key = ? AND reader = ? AND case_id = ?"
                " ORDER BY id",
                key,
            )
        ]
        return self._row(row, refs)

    @staticmethod
    def _row(row: tuple, refs: Iterable[str]) -> CaseProgress:
        case_id, status, reason, seconds, opened_count, updated_at = row
        return CaseProgress(
            case_id=case_id,
            status=CaseStatus(status),
            reason=reason,
            seconds=float(seconds),
            opened_count=int(opened_count),
            updated_at=updated_at,
            results=tuple(refs),
        )
