"""The local DICOM database: a self-contained folder of DICOM files indexed in SQLite.

It is both a batch source (``[source] type = "dicom-db"``, filled by ``caseiterator import``)
and the cache of DICOMweb retrievals. It rides on dicomweb-client's ``DICOMfileClient`` (the
same search/retrieve API as the web client), with three things that client does not do:

Crash safety
    ``DICOMfileClient.store_instances`` inserts the index rows, then writes each file with a
    plain ``open(..., "wb")``: a kill in between leaves the index naming a missing or
    half-written file, which would load as a series with a damaged slice. Here the files of
    a batch are written first, atomically (temporary files in the same folder, each fsynced,
    ``os.replace``, the folders fsynced), and only then are the client's index rows inserted,
    in one transaction with each file's size in a table of our own (``caseiterator_files``).
    The rows are built with the client's own helpers (:func:`_encode`, :func:`_index_received`),
    so its searches and frame retrieval work unchanged. Files received from a server
    (:meth:`LocalDicomDatabase.store_files`) are stored byte for byte, not decoded and encoded
    again. A kill therefore leaves at worst an unindexed file, overwritten
    when the instance is stored again. Every read of the index
    (:meth:`LocalDicomDatabase.series_files`, :meth:`~LocalDicomDatabase.instance_uids`,
    :meth:`~LocalDicomDatabase.series_summaries`, and the "already stored?" check) also keeps
    only instances whose file exists with the recorded size, so a file damaged later (a disk
    tool, a copy cut short) is *absent* rather than served: the series shows fewer images and
    storing the instance again repairs it. That check is a ``stat`` per file, no read.
Threads
    ``sqlite3`` connections belong to the thread that made them, so each thread gets its own
    client (:attr:`LocalDicomDatabase.client`, via ``threading.local``); SQLite's WAL mode lets
    the GUI thread search while a prefetch worker stores. Changes (store, import, remove) take
    one lock per database folder, so a removal never races a store of the same series.
Series metadata
    The client's index has no SeriesDescription or StudyDescription (needed for case names and
    query filters); ``caseiterator_series`` keeps them, filled when storing (and from one
    file's header for series indexed some other way).

The index (``.dicom-file-client.db``) lives inside the database folder, next to ``studies/``.
The client's database manager and table layout are private API: dicomweb-client is pinned
(0.61.2) and the tests use the real client, so a change there fails them. Its
``delete_instance`` does not remove the index rows (it passes a string to ``executemany``),
hence :meth:`LocalDicomDatabase.remove_series` deletes them itself.

Store instances with :meth:`LocalDicomDatabase.store_datasets` or
:meth:`~LocalDicomDatabase.store_files`, never with ``client.store_instances`` (that path is
not crash-safe).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import sqlite3
import struct
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pydicom
import pydicom.uid
from dicomweb_client import DICOMfileClient
from dicomweb_client.file import _get_frame_offsets, _QueryResourceType
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag

from .atomic_files import PARTIAL_SUFFIX, fsync_folder
from .cases import SkippedItem
from .dicom_files import SCAN_TAGS, header_int, read_full, read_header
from .errors import CaseIteratorError
from .paths import user_data_dir
from .series_selection import SeriesSummary
from .tasks import CancelToken, ProgressCallback, check_cancel, no_progress

#: The index file DICOMfileClient keeps in its ``db_dir`` (here: the database folder).
INDEX_NAME = ".dicom-file-client.db"
#: Where DICOMfileClient stores instances: studies/<study>/series/<series>/instances/<sop>.
STORE_ROOT = "studies"
#: Suffix of files being written; never indexed, removed when found stale.

_FILES_TABLE = "caseiterator_files"
_SERIES_TABLE = "caseiterator_series"
_CLIENT_TABLES = ("studies", "series", "instances")
_PIXEL_DATA_TAGS = (Tag("PixelData"), Tag("FloatPixelData"), Tag("DoubleFloatPixelData"))
# A batch of datasets is encoded in memory before it is written: bound it by count and size.
_BATCH_COUNT = 64
_BATCH_BYTES = 128 * 2**20
# UIDs become folder and file names: only characters that cannot escape the folder.
_SAFE_UID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
# A writer holding the lock may be fsyncing a whole batch; readers never wait on it.
_BUSY_TIMEOUT_MS = 60_000

_FOLDER_LOCKS: dict[Path, threading.RLock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()

InstanceKey = tuple[str, str, str]


def default_database_dir() -> Path:
    """The per-user database folder: ``user_data_dir() / "dicom-db"`` (not created here)."""
    return user_data_dir() / "dicom-db"


class DicomDatabaseError(CaseIteratorError):
    """The local DICOM database cannot be opened or changed; the message names the folder.

    Attributes
    ----------
    folder
        The database folder concerned.
    reason
        What is wrong, without the folder and the fix.
    fix
        What to do about it.
    """

    def __init__(self, folder: Path, message: str, *, fix: str | None = None) -> None:
        self.folder = Path(folder)
        self.reason = message
        self.fix = fix
        super().__init__(f"{folder}: {message}" + (f" Fix: {fix}" if fix else ""))


@dataclass(frozen=True)
class ImportReport:
    """The outcome of :meth:`LocalDicomDatabase.import_paths`.

    Attributes
    ----------
    imported
        Instances copied into the database by this import.
    already_present
        DICOM files whose instance (SOPInstanceUID) was already in the database, complete.
    skipped
        Files that were not imported, each with the reason.
    """

    imported: int
    already_present: int
    skipped: tuple[SkippedItem, ...]


@dataclass(frozen=True)
class _InstanceRow:
    sop_uid: str
    sop_class_uid: str
    instance_number: int
    frames: int
    path: Path


class LocalDicomDatabase:
    """A folder of DICOM files indexed in SQLite, safe to use from several threads.

    Parameters
    ----------
    folder
        The database folder. Created (with its index) when missing or empty, unless
        ``readonly``. A folder that holds other files and no index is refused, so that pointing
        the database at a folder of one's own never indexes or changes that folder.
    readonly
        Open an existing database without writing to it: storing, importing and removing raise
        :class:`DicomDatabaseError`.

    Raises
    ------
    DicomDatabaseError
        When the folder is not a database (or, when ``readonly``, does not exist), naming the
        folder and the fix.
    """

    def __init__(self, folder: Path, *, readonly: bool = False) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.readonly = readonly
        self._index = self.folder / INDEX_NAME
        self._local = threading.local()
        self._clients: list[tuple[int, weakref.ref[DICOMfileClient]]] = []
        self._clients_guard = threading.Lock()
        self._closed = False
        url = f"file://{self.folder}"
        if Path(urlparse(url).path) != self.folder:
            # DICOMfileClient takes a URL and does not unquote it: '#', '?' and ';' cut the path.
            raise DicomDatabaseError(
                self.folder,
                "the folder path has a character a file URL cannot hold ('#', '?' or ';').",
                fix="choose a database folder whose path has none of them.",
            )
        self._url = url
        self._prepare_folder()
        with _FOLDER_LOCKS_GUARD:
            self._write_lock = _FOLDER_LOCKS.setdefault(self.folder.resolve(), threading.RLock())
        # Open the first client now, in this thread, so a broken index fails here.
        self._own_tables = False
        client = self.client
        if not readonly:
            with self._connection(client) as conn:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_FILES_TABLE} (StudyInstanceUID TEXT NOT NULL, "
                    "SeriesInstanceUID TEXT NOT NULL, SOPInstanceUID TEXT NOT NULL, "
                    "size INTEGER NOT NULL, "
                    "PRIMARY KEY (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID))"
                )
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_SERIES_TABLE} (StudyInstanceUID TEXT NOT NULL, "
                    "SeriesInstanceUID TEXT NOT NULL, SeriesDescription TEXT, "
                    "StudyDescription TEXT, PRIMARY KEY (StudyInstanceUID, SeriesInstanceUID))"
                )
        tables = {
            row[0]
            for row in self._connection(client).execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        self._own_tables = {_FILES_TABLE, _SERIES_TABLE} <= tables

    # -- opening -------------------------------------------------------------------------

    def _not_a_database(self, why: str) -> DicomDatabaseError:
        return DicomDatabaseError(
            self.folder,
            f"not a CaseIterator DICOM database ({why}).",
            fix=f"run 'caseiterator import FOLDER --db {self.folder}' to make one, or point at "
            "the database folder that holds " + INDEX_NAME + ".",
        )

    def _prepare_folder(self) -> None:
        """Check the folder is a database (or may become one) before the client touches it."""
        if self.folder.exists() and not self.folder.is_dir():
            raise self._not_a_database("it is a file, not a folder")
        if self._index.is_file():
            self._check_index()
            return
        if self.readonly:
            raise self._not_a_database(
                "the folder does not exist" if not self.folder.exists() else f"no {INDEX_NAME}"
            )
        if self.folder.exists():
            others = [
                p.name
                for p in self.folder.iterdir()
                if p.name != STORE_ROOT and not p.name.startswith(INDEX_NAME)
            ]
            if others:
                raise DicomDatabaseError(
                    self.folder,
                    f"the folder holds other files ({', '.join(sorted(others)[:3])}...) and no "
                    f"database index ({INDEX_NAME}); it is not a CaseIterator DICOM database.",
                    fix="give a new or empty folder for the database (to read DICOM files where "
                    'they are, use a batch with [source] type = "dicom-folder").',
                )
            # Only studies/ is left (the index was lost): the client re-indexes it. Files cut
            # short by a kill during a write must not be indexed.
            for stale in (self.folder / STORE_ROOT).rglob(f"*{PARTIAL_SUFFIX}"):
                stale.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _check_index(self) -> None:
        try:
            conn = sqlite3.connect(f"{self._index.as_uri()}?mode=ro", uri=True)
            try:
                names = {
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise self._not_a_database(f"{INDEX_NAME} cannot be read: {exc}") from exc
        missing = [t for t in _CLIENT_TABLES if t not in names]
        if missing:
            raise self._not_a_database(f"{INDEX_NAME} has no table {', '.join(missing)}")

    def _open_client(self) -> DICOMfileClient:
        try:
            client = DICOMfileClient(self._url, db_dir=self.folder, readonly=self.readonly)
        except Exception as exc:
            raise DicomDatabaseError(
                self.folder,
                f"the database index cannot be opened ({type(exc).__name__}: {exc}).",
                fix=f"check the folder is readable; if {INDEX_NAME} is damaged, move the folder "
                "away and import the images again.",
            ) from exc
        manager = client._db_manager
        if self.readonly:
            # The client opens read-write; swap in a read-only connection so nothing can write.
            manager._connection.close()
            conn = sqlite3.connect(
                f"{self._index.as_uri()}?mode=ro",
                uri=True,
                detect_types=sqlite3.PARSE_DECLTYPES,
                timeout=_BUSY_TIMEOUT_MS / 1000,
            )
            conn.row_factory = sqlite3.Row
            manager._db_connection_handle = conn
            manager._db_cursor_handle = None
        else:
            # The client sets synchronous=OFF, which can corrupt a WAL database on power loss;
            # NORMAL keeps it consistent at no real cost for our small transactions.
            manager._connection.execute("PRAGMA synchronous = NORMAL")
        manager._connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # The client's persistent cursor keeps its column probe (SELECT ... LIMIT 1) open: a read
        # transaction that makes this thread's first write fail at once with "database is
        # locked" after another thread has written. Close it; the client makes a new one.
        if manager._db_cursor_handle is not None:
            manager._db_cursor_handle.close()
            manager._db_cursor_handle = None
        if manager._connection.in_transaction:
            manager._connection.commit()
        return client

    @property
    def client(self) -> DICOMfileClient:
        """The calling thread's ``DICOMfileClient`` on this database (made on first use)."""
        if self._closed:
            raise DicomDatabaseError(self.folder, "the database was closed.")
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._open_client()
            self._local.client = client
            with self._clients_guard:
                self._clients.append((threading.get_ident(), weakref.ref(client)))
        return client

    @staticmethod
    def _connection(client: DICOMfileClient) -> sqlite3.Connection:
        return client._db_manager._connection

    def close(self) -> None:
        """Close the index connections (those of other threads close when their thread ends)."""
        self._closed = True
        me = threading.get_ident()
        with self._clients_guard:
            clients, self._clients = self._clients, []
        for ident, ref in clients:
            client = ref()
            if client is None or ident != me:
                continue  # sqlite3 refuses to close another thread's connection
            with contextlib.suppress(sqlite3.Error):
                self._connection(client).close()
        self._local = threading.local()

    def __enter__(self) -> LocalDicomDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalDicomDatabase({str(self.folder)!r}, readonly={self.readonly})"

    # -- reading -------------------------------------------------------------------------

    def _instance_rows(self, study_uid: str, series_uid: str) -> list[_InstanceRow]:
        """The series' instances whose file is on disk and complete (see the module notes)."""
        conn = self._connection(self.client)
        size_join = (
            f"LEFT JOIN {_FILES_TABLE} f ON f.StudyInstanceUID = i.StudyInstanceUID "
            "AND f.SeriesInstanceUID = i.SeriesInstanceUID "
            "AND f.SOPInstanceUID = i.SOPInstanceUID"
            if self._own_tables
            else ""
        )
        size = "f.size" if self._own_tables else "NULL"
        rows = conn.execute(
            f"SELECT i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, i.NumberOfFrames, "
            f"i._file_path, {size} AS size FROM instances i {size_join} "
            "WHERE i.StudyInstanceUID = ? AND i.SeriesInstanceUID = ?",
            (study_uid, series_uid),
        ).fetchall()
        found = []
        for row in rows:
            path = self.folder / row["_file_path"]
            if not _complete(path, row["size"]):
                continue
            found.append(
                _InstanceRow(
                    sop_uid=row["SOPInstanceUID"],
                    sop_class_uid=str(row["SOPClassUID"] or ""),
                    instance_number=_as_int(row["InstanceNumber"], 0),
                    frames=_as_int(row["NumberOfFrames"], 1),
                    path=path,
                )
            )
        found.sort(key=lambda r: (r.instance_number, str(r.path)))
        return found

    def _is_present(self, key: InstanceKey) -> bool:
        conn = self._connection(self.client)
        if self._own_tables:
            row = conn.execute(
                f"SELECT i._file_path, f.size FROM instances i LEFT JOIN {_FILES_TABLE} f "
                "ON f.StudyInstanceUID = i.StudyInstanceUID "
                "AND f.SeriesInstanceUID = i.SeriesInstanceUID "
                "AND f.SOPInstanceUID = i.SOPInstanceUID WHERE i.StudyInstanceUID = ? "
                "AND i.SeriesInstanceUID = ? AND i.SOPInstanceUID = ?",
                key,
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT _file_path, NULL AS size FROM instances WHERE StudyInstanceUID = ? "
                "AND SeriesInstanceUID = ? AND SOPInstanceUID = ?",
                key,
            ).fetchone()
        return row is not None and _complete(self.folder / row[0], row[1])

    def series_files(self, study_uid: str, series_uid: str) -> tuple[Path, ...]:
        """Absolute paths of the series' complete instance files (empty if unknown).

        Instances whose file is missing or shorter than written are left out (see the module
        notes): compare with the expected number of instances to know a series is complete.
        """
        return tuple(r.path for r in self._instance_rows(study_uid, series_uid))

    def instance_uids(self, study_uid: str, series_uid: str) -> set[str]:
        """SOPInstanceUIDs of the series' instances that are stored completely."""
        return {r.sop_uid for r in self._instance_rows(study_uid, series_uid)}

    def series_summaries(self, filters: Mapping[str, str] | None = None) -> list[SeriesSummary]:
        """Every series with at least one complete instance, optionally filtered, in batch order.

        Parameters
        ----------
        filters
            QIDO-RS style attribute filters, all of which must match: ``PatientID``,
            ``PatientName``, ``StudyDate``, ``StudyDescription``, ``AccessionNumber``,
            ``Modality``, ``SeriesDescription``, ``StudyInstanceUID``, ``SeriesInstanceUID``.
            ``*`` and ``?`` are wildcards (case-insensitive for ``PatientName``, as PACS do);
            ``StudyDate`` takes a date or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left
            open); UIDs take a comma-separated list. An empty value matches everything.

        Returns
        -------
        list of SeriesSummary
            With ``files`` filled, sorted by :func:`~.sources.series_cases.series_sort_key`.

        Raises
        ------
        ValueError
            For an unknown filter key or a malformed date, naming it.
        """
        # Imported here: the sources package imports this module (dicom-db and DICOMweb sources).
        from .sources.series_cases import series_sort_key

        tests = _compile_filters(filters or {})
        conn = self._connection(self.client)
        description = (
            f"LEFT JOIN {_SERIES_TABLE} m ON m.StudyInstanceUID = s.StudyInstanceUID "
            "AND m.SeriesInstanceUID = s.SeriesInstanceUID"
            if self._own_tables
            else ""
        )
        columns = (
            "m.SeriesDescription, m.StudyDescription"
            if self._own_tables
            else "NULL AS SeriesDescription, NULL AS StudyDescription"
        )
        rows = conn.execute(
            "SELECT s.StudyInstanceUID, s.SeriesInstanceUID, s.Modality, s.SeriesNumber, "
            f"s.AccessionNumber, st.PatientID, st.PatientName, st.StudyDate, {columns} "
            "FROM series s JOIN studies st ON st.StudyInstanceUID = s.StudyInstanceUID "
            f"{description}"
        ).fetchall()
        summaries = []
        for row in rows:
            values = {key: _text(row[key]) for key in row.keys()}  # noqa: SIM118 - sqlite3.Row
            study_uid, series_uid = values["StudyInstanceUID"], values["SeriesInstanceUID"]
            instances: list[_InstanceRow] | None = None
            if row["SeriesDescription"] is None:
                # Indexed without us (rebuilt index): read the descriptions from one file.
                instances = self._instance_rows(study_uid, series_uid)
                if not instances:
                    continue
                values.update(self._descriptions_from_file(study_uid, series_uid, instances[0]))
            if not all(test(values) for test in tests):
                continue
            if instances is None:
                instances = self._instance_rows(study_uid, series_uid)
            if not instances:
                continue
            number = _as_int(row["SeriesNumber"], -1)
            summaries.append(
                SeriesSummary(
                    study_uid=study_uid,
                    series_uid=series_uid,
                    modality=values["Modality"],
                    description=values["SeriesDescription"],
                    series_number=None if number < 0 else number,
                    n_images=sum(r.frames for r in instances),
                    patient_id=values["PatientID"],
                    patient_name=values["PatientName"],
                    study_date=values["StudyDate"],
                    study_description=values["StudyDescription"],
                    sop_class_uid=instances[0].sop_class_uid,
                    files=tuple(r.path for r in instances),
                )
            )
        summaries.sort(key=series_sort_key)
        return summaries

    def _descriptions_from_file(
        self, study_uid: str, series_uid: str, instance: _InstanceRow
    ) -> dict[str, str]:
        ds, _ = read_header(instance.path, tags=SCAN_TAGS)
        found = {
            "SeriesDescription": str(ds.get("SeriesDescription", "")) if ds else "",
            "StudyDescription": str(ds.get("StudyDescription", "")) if ds else "",
        }
        if not self.readonly and self._own_tables:
            with self._connection(self.client) as conn:
                conn.execute(
                    f"INSERT OR REPLACE INTO {_SERIES_TABLE} VALUES (?, ?, ?, ?)",
                    (study_uid, series_uid, found["SeriesDescription"], found["StudyDescription"]),
                )
        return found

    # -- writing -------------------------------------------------------------------------

    def _check_writable(self, action: str) -> None:
        if self.readonly:
            raise DicomDatabaseError(
                self.folder,
                f"cannot {action}: the database was opened read-only.",
                fix="open it without readonly=True to change it.",
            )

    def store_datasets(self, datasets: Iterable[Dataset]) -> int:
        """Store instances (retrieved from a server, say); those already stored are skipped.

        Datasets are taken from ``datasets`` in batches, so a generator keeps memory bounded.
        Each file is written atomically before it counts as stored (see the module notes).

        Returns
        -------
        int
            The number of instances newly stored.

        Raises
        ------
        DicomDatabaseError
            When the database is read-only, or an instance cannot be stored (no UIDs, truncated
            pixel data, not encodable); the instances before it are stored.
        """
        self._check_writable("store instances")
        stored = 0
        batch: list[Dataset] = []
        keys: set[InstanceKey] = set()
        size = 0
        for ds in datasets:
            key, reason = _instance_key(ds)
            reason = reason or _unstorable_reason(ds)
            if key is None or reason:
                stored += self._store_or_raise(batch)
                sop = ds.get("SOPInstanceUID", "(no SOPInstanceUID)")
                raise DicomDatabaseError(
                    self.folder,
                    f"instance {sop} cannot be stored: {reason}.",
                    fix="retrieve the instance again; if it stays broken, report it to the PACS "
                    "administrator.",
                )
            if key in keys or self._is_present(key):
                continue
            keys.add(key)
            batch.append(ds)
            size += _approximate_size(ds)
            if len(batch) >= _BATCH_COUNT or size >= _BATCH_BYTES:
                stored += self._store_or_raise(batch)
                batch, keys, size = [], set(), 0
        return stored + self._store_or_raise(batch)

    def _store_or_raise(self, batch: list[Dataset]) -> int:
        stored, failed = self._store_batch(batch)
        if failed:
            ds, reason = failed[0]
            raise DicomDatabaseError(
                self.folder,
                f"{len(failed)} instance(s) could not be stored; the first, "
                f"{ds.get('SOPInstanceUID', '?')}, {reason}.",
                fix="retrieve them again; if they stay broken, report it to the PACS "
                "administrator.",
            )
        return stored

    def _store_batch(self, batch: list[Dataset]) -> tuple[int, list[tuple[Dataset, str]]]:
        """Write and index one batch; returns (number stored, failed datasets with reasons).

        Files first, each atomically; then, in one transaction, the client's index rows with
        our size and description rows: the index never names a file that is not complete.
        """
        if not batch:
            return 0, []
        client = self.client
        manager = client._db_manager
        encoded: list[_Encoded] = []
        failed: list[tuple[Dataset, str]] = []
        for ds in batch:
            try:
                encoded.append(_encode(manager, ds))
            except Exception as exc:  # pydicom raises many types for odd datasets
                # pydicom puts a whole traceback in some messages: the first line says it.
                first_line = (str(exc).splitlines() or [""])[0]
                failed.append((ds, f"cannot be encoded ({type(exc).__name__}: {first_line})"))
        if not encoded:
            return 0, failed
        self._write_and_index(client, encoded)
        return len(encoded), failed

    def _write_and_index(self, client: DICOMfileClient, encoded: list[_Encoded]) -> None:
        """Write a batch of files durably, then index them in one transaction.

        All files of the batch are written first, then each is fsynced (the kernel writes
        them back together instead of one round trip per file), renamed into place, and the
        folders synced: only then do the index rows name them (see the module notes).
        """
        with self._write_lock:
            placed = _write_files_synced(
                [(self.folder / item.rel_path, item.content) for item in encoded]
            )
            for folder in {path.parent for path in placed}:
                fsync_folder(folder)  # make the renames durable before the index names them
            rows = {
                "studies": {e.study[0]: e.study for e in encoded},
                "series": {e.series[:2]: e.series for e in encoded},
                "instances": {e.key: e.instance for e in encoded},
            }
            with self._connection(client) as conn:
                for table, values in rows.items():
                    marks = ", ".join("?" * len(next(iter(values.values()))))
                    conn.executemany(
                        f"INSERT OR REPLACE INTO {table} VALUES ({marks})", values.values()
                    )
                conn.executemany(
                    f"INSERT OR REPLACE INTO {_FILES_TABLE} VALUES (?, ?, ?, ?)",
                    [(*e.key, len(e.content)) for e in encoded],
                )
                conn.executemany(
                    f"INSERT OR REPLACE INTO {_SERIES_TABLE} VALUES (?, ?, ?, ?)",
                    {e.key[:2]: (*e.key[:2], *e.descriptions) for e in encoded}.values(),
                )

    def store_files(self, contents: Iterable[bytes], *, only: Collection[str] | None = None) -> int:
        """Store instances received as DICOM files (WADO-RS parts, say), byte for byte.

        A DICOM file (preamble, ``DICM``, file meta, little endian) is written as received:
        only its header up to the pixel data is read, for the index, and the pixel data is
        checked against the image size, so nothing is decoded or encoded again. Anything else
        (no file meta, big endian) is decoded and stored as :meth:`store_datasets` does.
        Files are written in batches, atomically and synced before they are indexed.

        Parameters
        ----------
        contents
            The files' bytes; taken in batches, so a generator keeps memory bounded.
        only
            SOPInstanceUIDs to store; other instances are skipped (None: all).

        Returns
        -------
        int
            The number of instances newly stored (those already stored are skipped).

        Raises
        ------
        DicomDatabaseError
            When the database is read-only, or an instance cannot be stored (not DICOM, no
            UIDs, truncated pixel data); the instances before it are stored.
        """
        self._check_writable("store instances")
        client = self.client
        manager = client._db_manager
        stored = 0
        batch: list[_Encoded] = []
        keys: set[InstanceKey] = set()
        size = 0
        series_rows: dict[tuple[str, str], tuple[tuple, ...]] = {}
        for content in contents:
            try:
                item = _index_received(manager, content, series_rows)
                if item is None:  # not a plain DICOM file: decode it and encode it again
                    ds = pydicom.dcmread(io.BytesIO(content), force=True)
                    item = _encode_checked(manager, ds)
            except Exception as exc:  # pydicom raises many types for damaged data
                if batch:
                    self._write_and_index(client, batch)
                    stored += len(batch)
                first_line = (str(exc).splitlines() or [""])[0]
                raise DicomDatabaseError(
                    self.folder,
                    f"a received instance cannot be stored ({type(exc).__name__}: {first_line}).",
                    fix="retrieve the series again; if it stays broken, report it to the PACS "
                    "administrator.",
                ) from None
            if only is not None and item.key[2] not in only:
                continue
            if item.key in keys or self._is_present(item.key):
                continue
            keys.add(item.key)
            batch.append(item)
            size += len(item.content)
            if len(batch) >= _BATCH_COUNT or size >= _BATCH_BYTES:
                self._write_and_index(client, batch)
                stored += len(batch)
                batch, keys, size = [], set(), 0
        if batch:
            self._write_and_index(client, batch)
            stored += len(batch)
        return stored

    def release_thread(self) -> None:
        """Close the calling thread's index connection (a worker thread about to end).

        The next use from this thread opens a new one.
        """
        client = getattr(self._local, "client", None)
        if client is None:
            return
        del self._local.client
        with self._clients_guard:
            self._clients = [(i, r) for i, r in self._clients if r() is not client]
        with contextlib.suppress(sqlite3.Error):
            self._connection(client).close()

    def import_paths(
        self,
        paths: Path | Iterable[Path],
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Copy the DICOM files in ``paths`` (files, folders recursively) into the database.

        The database is self-contained (like Slicer's "copy" import): the originals may be
        deleted afterwards. Files that are not DICOM, cannot be read or have truncated pixel
        data are skipped with the reason; an instance already stored completely is counted in
        ``already_present`` and not written again, so importing twice changes nothing.

        Parameters
        ----------
        paths
            Files and folders to import. The database folder itself is never re-imported.
        progress
            Called as ``progress(done, total, message)`` with files as units.
        cancel
            Checked between files; the instances of batches already written stay stored.

        Raises
        ------
        DicomDatabaseError
            When the database is read-only.
        OperationCancelled
            When ``cancel`` was set.
        """
        self._check_writable("import")
        skipped: list[SkippedItem] = []
        files = self._files_to_import(paths, skipped)
        total = len(files)
        imported = already = 0
        pending: list[tuple[Path, Dataset]] = []
        pending_keys: set[InstanceKey] = set()
        pending_bytes = 0

        def flush() -> int:
            stored, failed = self._store_batch([ds for _, ds in pending])
            reasons = {id(ds): reason for ds, reason in failed}
            for path, ds in pending:
                if id(ds) in reasons:
                    skipped.append(SkippedItem(str(path), reasons[id(ds)]))
            pending.clear()
            pending_keys.clear()
            return stored

        progress(0, total, f"importing {total} files")
        for done, path in enumerate(files):
            check_cancel(cancel)
            if done % 10 == 0:
                progress(done, total, f"importing {path.parent.name}/{path.name}")
            header, reason = read_header(path, tags=SCAN_TAGS)
            key = None
            if header is not None:
                key, reason = _instance_key(header)
            if key is None:
                skipped.append(SkippedItem(str(path), reason or "unreadable"))
                continue
            if key in pending_keys or self._is_present(key):
                already += 1
                continue
            try:
                ds = read_full(path)
            except Exception as exc:  # pydicom raises many types for damaged files
                skipped.append(
                    SkippedItem(str(path), f"unreadable DICOM file ({type(exc).__name__}: {exc})")
                )
                continue
            reason = _unstorable_reason(ds)
            if reason:
                skipped.append(SkippedItem(str(path), reason))
                continue
            pending.append((path, ds))
            pending_keys.add(key)
            pending_bytes += _approximate_size(ds)
            if len(pending) >= _BATCH_COUNT or pending_bytes >= _BATCH_BYTES:
                imported += flush()
                pending_bytes = 0
        imported += flush()
        progress(total, total, f"imported {imported} instances")
        return ImportReport(imported, already, tuple(skipped))

    def _files_to_import(
        self, paths: Path | Iterable[Path], skipped: list[SkippedItem]
    ) -> list[Path]:
        if isinstance(paths, (str, os.PathLike)):
            paths = [Path(paths)]
        own = self.folder.resolve()
        files: list[Path] = []
        for given in paths:
            path = Path(given).expanduser()
            if path.is_file():
                files.append(path)
            elif path.is_dir():
                if _is_within(path.resolve(), own):
                    continue
                for root, dirs, names in os.walk(path):
                    # Importing a parent of the database must not re-import the database.
                    dirs[:] = sorted(
                        d for d in dirs if not _is_within(Path(root, d).resolve(), own)
                    )
                    files.extend(Path(root) / n for n in sorted(names))
            else:
                skipped.append(SkippedItem(str(path), "no such file or folder"))
        return files

    def remove_series(self, study_uid: str, series_uid: str) -> None:
        """Drop a series (a corrupt or partial cached copy, say): its index rows, then its files.

        Rows go first: a kill in between leaves unindexed files, which are harmless and are
        overwritten when the series is stored again.
        """
        self._check_writable("remove a series")
        with self._write_lock:
            conn = self._connection(self.client)
            where = "WHERE StudyInstanceUID = ? AND SeriesInstanceUID = ?"
            uids = (study_uid, series_uid)
            paths = [
                self.folder / r[0]
                for r in conn.execute(f"SELECT _file_path FROM instances {where}", uids)
            ]
            with conn:
                conn.execute(f"DELETE FROM instances {where}", uids)
                conn.execute(f"DELETE FROM series {where}", uids)
                conn.execute(
                    "DELETE FROM studies WHERE StudyInstanceUID = ? AND NOT EXISTS "
                    "(SELECT 1 FROM series WHERE StudyInstanceUID = ?)",
                    (study_uid, study_uid),
                )
                if self._own_tables:
                    conn.execute(f"DELETE FROM {_FILES_TABLE} {where}", uids)
                    conn.execute(f"DELETE FROM {_SERIES_TABLE} {where}", uids)
            for path in paths:
                if _is_within(path, self.folder):
                    path.unlink(missing_ok=True)
            if _SAFE_UID.match(study_uid) and _SAFE_UID.match(series_uid):
                study_dir = self.folder / STORE_ROOT / study_uid
                # Also removes unindexed leftovers (files of an interrupted store).
                shutil.rmtree(study_dir / "series" / series_uid, ignore_errors=True)
                for empty in (study_dir / "series", study_dir):
                    with contextlib.suppress(OSError):
                        empty.rmdir()


# -- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Encoded:
    """One instance ready to write and index (rows laid out as DICOMfileClient's tables)."""

    key: InstanceKey
    content: bytes
    rel_path: str
    study: tuple
    series: tuple
    instance: tuple
    descriptions: tuple[str, str]


def _encode(manager: Any, ds: Dataset) -> _Encoded:
    """Encode ``ds`` as a DICOM file and build its index rows as ``insert_instances`` does.

    Done here rather than through ``insert_instances`` because that inserts the rows *before*
    the file exists, and encodes with pydicom's deprecated ``write_like_original`` (a warning
    and a log line per instance).
    """
    key, reason = _instance_key(ds)
    if key is None:
        raise ValueError(reason)
    _complete_file_meta(ds)
    syntax = ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    content = buffer.getvalue()
    first_frame, frame_offsets = -1, np.zeros((0,), dtype=np.uint32)
    if any(tag in ds for tag in _PIXEL_DATA_TAGS):
        # The client serves frames from these offsets (retrieve_instance_frames).
        fp = manager._get_file_pointer(io.BytesIO(content), transfer_syntax_uid=syntax)
        pydicom.dcmread(fp, specific_tags=[Tag("PatientID")], stop_before_pixels=True)
        first_frame, frame_offsets = _get_frame_offsets(
            fp,
            number_of_frames=header_int(ds, "NumberOfFrames", 1),
            number_of_pixels_per_frame=int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel),
            transfer_syntax_uid=syntax,
            bits_allocated=int(ds.BitsAllocated),
        )
    study, series, sop = key
    rel_path = f"{STORE_ROOT}/{study}/series/{series}/instances/{sop}"
    return _Encoded(
        key=key,
        content=content,
        rel_path=rel_path,
        study=tuple(manager._extract_study_metadata(ds)),
        series=tuple(manager._extract_series_metadata(ds)),
        instance=(
            *manager._extract_instance_metadata(ds),
            str(syntax),
            rel_path,
            first_frame,
            frame_offsets,
        ),
        descriptions=(str(ds.get("SeriesDescription", "")), str(ds.get("StudyDescription", ""))),
    )


def _encode_checked(manager: Any, ds: Dataset) -> _Encoded:
    """:func:`_encode` after the checks :meth:`LocalDicomDatabase.store_datasets` makes."""
    key, reason = _instance_key(ds)
    reason = reason or _unstorable_reason(ds)
    if key is None or reason:
        raise ValueError(f"instance {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}: {reason}")
    return _encode(manager, ds)


def _index_received(
    manager: Any, content: bytes, series_rows: dict[tuple[str, str], tuple[tuple, ...]]
) -> _Encoded | None:
    """Index rows of a received DICOM file, reading only the header before its pixel data.

    Returns None when ``content`` is not a little-endian DICOM file with file meta (the caller
    decodes and encodes it then). ``series_rows`` caches the study and series rows and the
    descriptions by series: they are the same for every instance of a series, and converting
    their text values (character sets, person names) is most of the cost of a header.

    Raises
    ------
    ValueError
        When the instance has no UIDs or SOP class, or its pixel data is cut short.
    """
    if len(content) < 132 or content[128:132] != b"DICM":
        return None
    buffer = io.BytesIO(content)
    ds = pydicom.dcmread(buffer, stop_before_pixels=True)
    syntax = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    if not syntax or not pydicom.uid.UID(syntax).is_little_endian:
        return None
    syntax = pydicom.uid.UID(syntax)
    row = {keyword: _header_value(manager, ds, keyword) for keyword in _instance_keywords(manager)}
    uids = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(row[keyword] or "").strip()
        if not value:
            raise ValueError(f"DICOM file without {keyword}")
        if not _SAFE_UID.match(value):
            raise ValueError(f"{keyword} {value!r} is not a valid UID")
        uids.append(value)
    study, series, sop = uids
    if not row["SOPClassUID"]:
        raise ValueError(f"instance {sop} has no SOPClassUID")
    first_frame, frame_offsets = -1, np.zeros((0,), dtype=np.uint32)
    at = buffer.tell()  # stop_before_pixels leaves the file at the pixel data's tag
    if len(content) >= at + 8 and Tag(*struct.unpack_from("<HH", content, at)) in _PIXEL_DATA_TAGS:
        header = 8 if syntax.is_implicit_VR else 12
        if len(content) < at + header:
            raise ValueError(f"instance {sop}: the pixel data is cut short")
        frames = _as_int(row["NumberOfFrames"], 1)
        pixels = _as_int(row["Rows"], 0) * _as_int(row["Columns"], 0)
        pixels *= _as_int(row["SamplesPerPixel"], 1)
        bits = _as_int(row["BitsAllocated"], 0)
        (length,) = struct.unpack_from("<I", content, at + header - 4)
        if not syntax.is_compressed and length != 0xFFFFFFFF:
            expected = (frames * pixels * bits + 7) // 8
            actual = min(length, len(content) - at - header)
            if expected and actual < expected:
                raise ValueError(
                    f"instance {sop}: pixel data is truncated ({actual} of {expected} bytes)"
                )
        buffer.seek(at)
        first_frame, frame_offsets = _get_frame_offsets(
            manager._get_file_pointer(buffer, transfer_syntax_uid=syntax),
            number_of_frames=frames,
            number_of_pixels_per_frame=pixels,
            transfer_syntax_uid=syntax,
            bits_allocated=bits,
        )
    cached = series_rows.get((study, series))
    if cached is None:
        cached = (
            tuple(manager._extract_study_metadata(ds)),
            tuple(manager._extract_series_metadata(ds)),
            (str(ds.get("SeriesDescription", "")), str(ds.get("StudyDescription", ""))),
        )
        series_rows[(study, series)] = cached
    rel_path = f"{STORE_ROOT}/{study}/series/{series}/instances/{sop}"
    return _Encoded(
        key=(study, series, sop),
        content=content,
        rel_path=rel_path,
        study=cached[0],
        series=cached[1],
        instance=(*row.values(), str(syntax), rel_path, first_frame, frame_offsets),
        descriptions=cached[2],
    )


def _instance_keywords(manager: Any) -> list[str]:
    """The keywords of the client's ``instances`` row (``_extract_instance_metadata``)."""
    return manager._attributes[_QueryResourceType.INSTANCES]


def _header_value(manager: Any, ds: Dataset, keyword: str) -> str | int | None:
    """``manager._get_data_element_value(ds, keyword)``, without pydicom's value conversion
    for the plain binary, integer-string and ASCII values of an instance row (most of the
    cost of indexing a received file); anything else goes through the client."""
    elem = ds.get_item(keyword)
    if isinstance(elem, RawDataElement) and elem.value:
        vr = elem.VR or dictionary_VR(elem.tag)
        raw = elem.value
        fmt = _BINARY_INTS.get(vr)
        if fmt is not None and len(raw) == struct.calcsize(fmt):
            return struct.unpack(fmt, raw)[0]
        if vr in ("UI", "CS", "IS") and b"\\" not in raw and raw.isascii():
            text = raw.decode("ascii").strip(" \0")
            if text and vr != "IS":
                return text
            if text.lstrip("+-").isdigit():
                return int(text)
    return manager._get_data_element_value(ds, keyword)


_BINARY_INTS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}


def _write_files_synced(files: list[tuple[Path, bytes]]) -> list[Path]:
    """Write each (target, content) to a temporary file beside it, fsync them all, then rename
    each into place; returns the targets. On any failure no temporary file is left behind
    (targets renamed before it stay: they are complete, and not indexed yet)."""
    temps: list[tuple[Path, Path]] = []
    handles = []
    try:
        for target, content in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
            handle = open(temp, "xb")  # noqa: SIM115 - closed below, after the fsync
            temps.append((temp, target))
            handles.append(handle)
            handle.write(content)
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for temp, target in temps:
            os.replace(temp, target)
    finally:
        for handle in handles:
            handle.close()
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
    return [target for _, target in temps]


def _complete(path: Path, size: int | None) -> bool:
    """Whether an indexed file is there in full (``size`` None: recorded by someone else)."""
    if path.name.endswith(PARTIAL_SUFFIX):
        return False
    try:
        actual = path.stat().st_size
    except OSError:
        return False
    return actual == size if size is not None else actual > 0


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _instance_key(ds: Dataset) -> tuple[InstanceKey | None, str | None]:
    """The (study, series, instance) UIDs of ``ds``, or None and the reason it has none."""
    uids = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if not value:
            return None, f"DICOM file without {keyword}"
        if not _SAFE_UID.match(value):
            return None, f"{keyword} {value!r} is not a valid UID"
        uids.append(value)
    return (uids[0], uids[1], uids[2]), None


def _unstorable_reason(ds: Dataset) -> str | None:
    """Why ``ds`` must not go into the database (truncated pixel data), or None."""
    if "SOPClassUID" not in ds:
        return "DICOM file without SOPClassUID"
    syntax = _transfer_syntax(ds)
    if "PixelData" not in ds or syntax.is_compressed:
        return None
    bits = header_int(ds, "BitsAllocated", 0)
    count = (
        header_int(ds, "Rows", 0)
        * header_int(ds, "Columns", 0)
        * header_int(ds, "NumberOfFrames", 1)
        * header_int(ds, "SamplesPerPixel", 1)
    )
    expected = (count * bits + 7) // 8
    actual = len(ds.PixelData or b"")
    if expected and actual < expected:
        return (
            f"pixel data is truncated ({actual} of {expected} bytes); the file is damaged: send "
            "it again from the scanner or PACS"
        )
    return None


def _transfer_syntax(ds: Dataset) -> pydicom.uid.UID:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return meta.TransferSyntaxUID
    # No file meta (a file without it, or a dataset built in memory): the encoding it was read
    # with says what it is; datasets made in memory are written explicit little endian.
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    if little is False:
        return pydicom.uid.ExplicitVRBigEndian
    return pydicom.uid.ExplicitVRLittleEndian


def _complete_file_meta(ds: Dataset) -> None:
    """DICOMfileClient needs ``file_meta.TransferSyntaxUID``; files without meta lack it."""
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = _transfer_syntax(ds)


def _approximate_size(ds: Dataset) -> int:
    pixels = ds.get("PixelData")
    return len(pixels) if isinstance(pixels, (bytes, bytearray)) else 0


def _as_int(value: object, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _text(value: object) -> str:
    return "" if value is None else str(value)


# -- QIDO-style filters ----------------------------------------------------------------------

#: Filter keys and how each matches: "uid" (list), "date" (range), "pn" (case-insensitive).
FILTER_KEYS: dict[str, str] = {
    "PatientID": "text",
    "PatientName": "pn",
    "StudyDate": "date",
    "StudyDescription": "text",
    "AccessionNumber": "text",
    "Modality": "text",
    "SeriesDescription": "text",
    "StudyInstanceUID": "uid",
    "SeriesInstanceUID": "uid",
}

_DATE_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")


def _compile_filters(filters: Mapping[str, str]) -> list[Callable[[Mapping[str, str]], bool]]:
    tests = []
    for key, raw in filters.items():
        kind = FILTER_KEYS.get(key)
        if kind is None:
            raise ValueError(
                f"unknown filter {key!r}; use one of: {', '.join(FILTER_KEYS)} (QIDO-RS keywords)"
            )
        value = "" if raw is None else str(raw).strip()
        if not value:
            continue  # QIDO: an empty value matches everything
        tests.append(_filter(key, kind, value))
    return tests


def _filter(key: str, kind: str, value: str) -> Callable[[Mapping[str, str]], bool]:
    if kind == "uid":
        wanted = {v.strip() for v in re.split(r"[,\\]", value) if v.strip()}
        return lambda row: row[key] in wanted
    if kind == "date":
        if re.fullmatch(r"\d{8}", value):
            return lambda row: row[key] == value
        match = _DATE_RANGE.match(value)
        if not match or value == "-":
            raise ValueError(
                f"StudyDate {value!r} is not a date or range; write YYYYMMDD, "
                "YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD"
            )
        low, high = match.group(1) or "00000000", match.group(2) or "99999999"
        return lambda row: bool(row[key]) and low <= row[key][:8] <= high
    if "*" in value or "?" in value or kind == "pn":
        flags = re.IGNORECASE if kind == "pn" else 0
        pattern = re.compile(_wildcard_regex(value), flags)
        return lambda row: pattern.fullmatch(row[key]) is not None
    return lambda row: row[key] == value


def _wildcard_regex(value: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)


__all__ = [
    "FILTER_KEYS",
    "INDEX_NAME",
    "DicomDatabaseError",
    "ImportReport",
    "LocalDicomDatabase",
    "default_database_dir",
]
