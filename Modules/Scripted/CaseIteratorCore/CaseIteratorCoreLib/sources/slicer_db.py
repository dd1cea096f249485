"""Slicer DICOM database batches: a site's existing 3D Slicer database, read in place.

3D Slicer (CTK's ``ctkDICOMDatabase``) keeps its DICOM database in a folder holding
``ctkDICOM.sql`` (an SQLite index with tables SchemaInfo, Patients, Studies, Series, Images),
``ctkDICOMTagCache.sql`` and, for files imported by copy, ``dicom/<study>/<series>/<sop>.dcm``.
``Images.Filename`` is relative to that folder for copied files (Slicer 4.11 and later) and
absolute for linked files and for copies made by older versions.

The index is opened strictly read-only (SQLite ``mode=ro`` plus ``PRAGMA query_only``): nothing
is written, no journal is created, and the connection is closed as soon as the series are
listed, so 3D Slicer can keep using the database at the same time. Every series of the index
becomes a candidate case; the cases are named, ordered and identified exactly as the
DICOM-folder source names the same files (:func:`.series_cases.case_from_series`).

Example::

    [source]
    type = "slicer-db"
    path = "/data/SlicerDICOMDatabase"   # the folder holding ctkDICOM.sql, or that file

    [source.series]
    modality = "CT"
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..batch_file import BatchDefinition
from ..cases import Case, SkippedItem
from ..dicom_files import NON_IMAGE_MODALITIES, header_int, read_header
from ..errors import BatchDefinitionError
from ..problems import Problem, ProblemCode
from ..series_selection import SeriesRule, SeriesSummary
from ..tasks import CancelToken, ProgressCallback, check_cancel, no_progress
from .base import BatchSource
from .series_cases import case_from_series, select_image_series, series_sort_key

KEYS = ("path", "series")

#: The index file 3D Slicer keeps in its DICOM database folder.
DATABASE_FILE = "ctkDICOM.sql"

#: CTK schema versions (major.minor) whose tables hold the columns read here; Slicer 4.10
#: wrote 0.6.x, Slicer 5.0-5.4 0.7.0, Slicer 5.6 and later 0.8.x (URL column added).
SUPPORTED_SCHEMAS = ("0.5", "0.6", "0.7", "0.8")

#: The columns read from each table (present in every supported schema).
REQUIRED_COLUMNS = {
    "Patients": ("UID", "PatientsName", "PatientID"),
    "Studies": ("StudyInstanceUID", "PatientsUID", "StudyDate", "StudyDescription"),
    "Series": (
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "Modality",
    ),
    "Images": ("Filename", "SeriesInstanceUID"),
}

_SQLITE_MAGIC = b"SQLite format 3\x00"

_SERIES_SQL = """
SELECT se.SeriesInstanceUID, se.StudyInstanceUID, se.SeriesNumber, se.SeriesDescription,
       se.Modality, st.StudyDate, st.StudyDescription, pa.PatientID, pa.PatientsName
FROM Series AS se
LEFT JOIN Studies AS st ON st.StudyInstanceUID = se.StudyInstanceUID
LEFT JOIN Patients AS pa ON pa.UID = st.PatientsUID
"""

#: Header tags read from one file of a series: what the CTK tables do not hold (and the UID
#: that :func:`read_header` needs to accept the file as complete).
_PROBE_TAGS = ["SOPClassUID", "SeriesInstanceUID", "NumberOfFrames"]

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[/\\]|[/\\]{2}[^/\\])")


@dataclass(frozen=True)
class ListedSeries:
    """A series as listed in the index, with what is wrong with its files."""

    summary: SeriesSummary
    problems: tuple[Problem, ...]


class SlicerDicomDatabaseSource(BatchSource):
    """The series of an existing 3D Slicer DICOM database, selected by ``[source.series]``.

    Parameters
    ----------
    batch
        The batch definition.
    database
        The ``ctkDICOM.sql`` file; relative file names in it are relative to its folder.
    rule
        Which series become cases.
    schema_version
        The CTK schema version found in the database (``SchemaInfo``).

    Notes
    -----
    Series that are not images (SEG, SR, presentation states... told by Modality, or by the
    SOP class read from one file's header) or not selected by the rule are listed in
    :attr:`skipped` with the reason. A series whose files are missing on disk is still a case,
    carrying a problem that says how many files are missing and where, so the reader sees it
    in the list and can skip it.
    """

    type = "slicer-db"

    #: Seconds to wait while 3D Slicer holds a write lock (it does while importing).
    busy_timeout_s: ClassVar[float] = 10.0

    def __init__(
        self, batch: BatchDefinition, database: Path, rule: SeriesRule, schema_version: str
    ) -> None:
        super().__init__(batch)
        self.database = database
        self.folder = database.parent
        self.rule = rule
        self.schema_version = schema_version
        self._listed: list[ListedSeries] | None = None
        self._scan_skipped: list[SkippedItem] = []

    @classmethod
    def from_batch(cls, batch: BatchDefinition) -> SlicerDicomDatabaseSource:
        spec = batch.source
        spec.check_keys(KEYS)
        path = spec.path("path")
        assert path is not None
        path = Path(os.path.abspath(path))
        database = path / DATABASE_FILE if path.is_dir() else path
        if path.is_dir() and not database.is_file():
            raise spec.error(
                "path",
                f"{path} holds no {DATABASE_FILE}, so it is not a 3D Slicer DICOM database folder.",
                fix="point path at the folder 3D Slicer uses as its DICOM database (shown in "
                'Slicer\'s DICOM module), or use type = "dicom-folder" for a plain folder of '
                "DICOM files.",
            )
        rule = SeriesRule.from_spec(spec)
        # Refuse a wrong or unreadable database when the batch is loaded, not at the first case.
        with open_read_only(database, cls.busy_timeout_s) as conn:
            version = check_schema(conn, database)
        return cls(batch, database, rule, version)

    def describe(self) -> str:
        return f"3D Slicer DICOM database {self.folder}"

    def scan(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> list[ListedSeries]:
        """List every series of the index with its files resolved and checked (cached)."""
        if self._listed is not None:
            return self._listed
        self._scan_skipped = []
        progress(0, None, f"reading {self.database.name}")
        with open_read_only(self.database, self.busy_timeout_s) as conn:
            self.schema_version = check_schema(conn, self.database)
            has_url = "URL" in _columns(conn, "Images")
            # One read transaction: the series and their instances come from the same state
            # even if 3D Slicer commits an import in between.
            conn.execute("BEGIN")
            series_rows = conn.execute(_SERIES_SQL).fetchall()
            instances: dict[str, list[tuple[str, str]]] = defaultdict(list)
            url_column = "URL" if has_url else "''"
            for uid, filename, url in conn.execute(
                f"SELECT SeriesInstanceUID, Filename, {url_column} FROM Images"
            ):
                instances[str(uid or "")].append((str(filename or ""), str(url or "")))
            conn.execute("ROLLBACK")
        listed = []
        known = set()
        for done, row in enumerate(series_rows):
            if done % 20 == 0:
                check_cancel(cancel)
                progress(done, len(series_rows), "checking the files of each series")
            uid = str(row[0] or "")
            known.add(uid)
            entry = self._list_series(row, instances.get(uid, []))
            if entry is not None:
                listed.append(entry)
        for uid, rows in instances.items():
            if uid not in known:
                self._scan_skipped.append(
                    _skipped(
                        self.database,
                        f"{len(rows)} instances of series {uid} are listed without the series "
                        "itself (the database is incomplete; 3D Slicer rebuilds it when asked "
                        "to update the database)",
                    )
                )
        progress(len(series_rows), len(series_rows), "database read")
        listed.sort(key=lambda item: series_sort_key(item.summary))
        self._listed = listed
        return listed

    def _list_series(self, row: tuple, instances: list[tuple[str, str]]) -> ListedSeries | None:
        uid, study_uid, number, description, modality = (str(v or "") for v in row[:5])
        study_date, study_description, patient_id, patient_name = (str(v or "") for v in row[5:])
        label = f"{description!r} ({uid})"
        if not instances:
            self._scan_skipped.append(
                _skipped(
                    self.database,
                    f"series {label} is listed without any instance (its files were removed "
                    "from the database)",
                )
            )
            return None
        present: list[Path] = []
        missing: list[Path] = []
        windows: list[str] = []
        remote: list[str] = []  # listed without a file: a URL (Slicer 5.6+) or nothing
        for filename, url in instances:
            if not filename:
                remote.append(url)
                continue
            if os.name != "nt" and _WINDOWS_ABSOLUTE.match(filename):
                windows.append(filename)
                continue
            path = _absolute_path(filename, self.folder)
            (present if path.is_file() else missing).append(path)
        present.sort()
        missing.sort()
        sop_class, n_images = "", len(instances)
        if present and modality.upper() not in NON_IMAGE_MODALITIES:
            sop_class, n_images = _probe(present, n_images)
        if patient_id and patient_id == study_uid:
            # CTK stores the StudyInstanceUID as PatientID (and name) when the files have none;
            # undo it so anonymised data is named as the DICOM-folder source names it.
            patient_id = ""
            patient_name = "" if patient_name == study_uid else patient_name
        summary = SeriesSummary(
            study_uid=study_uid,
            series_uid=uid,
            modality=modality,
            description=description,
            series_number=_int_or_none(number),
            n_images=n_images,
            patient_id=patient_id,
            patient_name=patient_name,
            study_date=_dicom_date(study_date),
            study_description=study_description,
            sop_class_uid=sop_class,
            files=tuple(present),
        )
        problems = self._file_problems(summary, len(instances), missing, windows, remote)
        return ListedSeries(summary, problems)

    def _file_problems(
        self,
        summary: SeriesSummary,
        total: int,
        missing: list[Path],
        windows: list[str],
        remote: list[str],
    ) -> tuple[Problem, ...]:
        name = f"series {summary.description or summary.series_uid!r}"
        problems = []
        if missing:
            inside = [p for p in missing if _inside(p, self.folder)]
            count = f"all {total}" if len(missing) == total else f"{len(missing)} of {total}"
            if len(inside) == len(missing):
                text = (
                    f"{count} files of {name} are missing from the Slicer database folder "
                    f"{self.folder} (first missing: {missing[0]}); they were deleted or moved "
                    "after the import: import the series into 3D Slicer again"
                )
            else:
                text = (
                    f"{count} files of {name} listed in the Slicer database {self.database} "
                    f"are missing on disk (first missing: {missing[0]}); they were linked, not "
                    "copied, when imported: reconnect the drive or share that holds them, or "
                    "import the series into 3D Slicer again with copying"
                )
            problems.append(Problem(ProblemCode.MISSING_FILE, text))
        if windows:
            problems.append(
                Problem(
                    ProblemCode.MISSING_FILE,
                    f"{len(windows)} of {total} files of {name} are recorded as Windows paths "
                    f"(first: {windows[0]}): the database was made on Windows with linked "
                    "files; open the batch on that computer, or import the series with copying",
                )
            )
        if remote:
            urls = [u for u in remote if u]
            where = f"by URL only ({urls[0]})" if urls else "without a file"
            problems.append(
                Problem(
                    ProblemCode.MISSING_FILE,
                    f"{len(remote)} of {total} instances of {name} were never downloaded: 3D "
                    f"Slicer lists them {where}; retrieve the series in 3D Slicer's DICOM "
                    "browser first",
                )
            )
        return tuple(problems)

    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        listed = self.scan(progress, cancel)
        self._skipped = list(self._scan_skipped)
        problems = {item.summary.series_uid: item.problems for item in listed}
        chosen = select_image_series(
            (item.summary for item in listed),
            self.rule,
            self._skip,
            lambda summary: _series_path(summary, self.database),
        )
        for index, summary in enumerate(chosen):
            case = case_from_series(summary, index, str(self.folder))
            found = problems[summary.series_uid] + self._refused_files(summary)
            yield dataclasses.replace(case, problems=found) if found else case

    def _refused_files(self, summary: SeriesSummary) -> tuple[Problem, ...]:
        """A problem when the site may not read some of the series' files (Slicer's "link"
        import leaves them where they were, possibly outside the site's folders)."""
        refused = [r for f in summary.files if (r := self.batch.source.outside_allowed_folders(f))]
        if not refused:
            return ()
        more = f" (and {len(refused) - 1} more files)" if len(refused) > 1 else ""
        return (
            Problem(
                ProblemCode.OUTSIDE_ALLOWED_FOLDERS,
                f"series {summary.series_uid}: {refused[0]}{more}; copy the series into the "
                "database, or ask your site admin to allow that folder",
            ),
        )

    def count(self) -> int:
        """Number of cases (reads the database on first use)."""
        return sum(1 for _ in self.iter_cases())


@contextmanager
def open_read_only(database: Path, timeout: float = 10.0) -> Iterator[sqlite3.Connection]:
    """Open a Slicer ``ctkDICOM.sql`` so that nothing can be written to it or beside it.

    ``mode=ro`` makes SQLite open the file read-only (no journal is ever created) and
    ``query_only`` refuses any statement that would change it; 3D Slicer may keep the
    database open meanwhile. SQLite errors become :class:`BatchDefinitionError` naming the
    file and the fix.

    Raises
    ------
    BatchDefinitionError
        Not an SQLite file, locked by a writer for longer than ``timeout`` seconds, damaged.
    """
    _check_sqlite_file(database)
    uri = f"{database.absolute().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise _database_error(database, exc) from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        yield conn
    except sqlite3.Error as exc:
        raise _database_error(database, exc) from exc
    finally:
        conn.close()


def check_schema(conn: sqlite3.Connection, database: Path) -> str:
    """Check that ``conn`` is a CTK DICOM database this version reads; return its version.

    Raises
    ------
    BatchDefinitionError
        Naming the file, what is wrong (not a Slicer database, unknown or old schema version,
        missing table or column) and the fix.
    """
    tables = {
        str(name) for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    absent = [table for table in REQUIRED_COLUMNS if table not in tables]
    if len(absent) == len(REQUIRED_COLUMNS):
        found = ", ".join(sorted(tables)) or "no tables at all"
        raise BatchDefinitionError(
            database,
            f"not a 3D Slicer DICOM database: it has none of the tables Patients, Studies, "
            f"Series, Images (it holds {found}).",
            key="source.path",
            fix="point path at the folder 3D Slicer uses as its DICOM database (it holds "
            "ctkDICOM.sql and a dicom folder).",
        )
    if "SchemaInfo" not in tables:
        raise BatchDefinitionError(
            database,
            "this 3D Slicer DICOM database has no schema version: it was made by a very old "
            "3D Slicer.",
            key="source.path",
            fix="open the database once in a current 3D Slicer, which offers to update it.",
        )
    rows = conn.execute("SELECT Version FROM SchemaInfo").fetchall()
    version = str(rows[0][0]) if rows and rows[0][0] is not None else ""
    if ".".join(version.split(".")[:2]) not in SUPPORTED_SCHEMAS:
        raise BatchDefinitionError(
            database,
            f"3D Slicer DICOM database schema version {version or '(empty)'!r} is not one this "
            f"version of CaseIterator reads ({', '.join(v + '.x' for v in SUPPORTED_SCHEMAS)}).",
            key="source.path",
            fix="update CaseIterator (a newer 3D Slicer wrote it), or open the database once in "
            '3D Slicer 5 to update it; alternatively use type = "dicom-folder" with path set '
            "to the database's dicom folder to read the files directly.",
        )
    for table, columns in REQUIRED_COLUMNS.items():
        have = _columns(conn, table) if table in tables else set()
        lacking = [c for c in columns if c not in have]
        if lacking:
            what = f"table {table}" if table not in tables else f"{table}.{', '.join(lacking)}"
            raise BatchDefinitionError(
                database,
                f"this 3D Slicer DICOM database (schema {version}) lacks {what}: the file is "
                "damaged or was not made by 3D Slicer.",
                key="source.path",
                fix="let 3D Slicer rebuild the database (DICOM module), or use type = "
                '"dicom-folder" on its dicom folder.',
            )
    return version


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info('{table}')")}


def _check_sqlite_file(database: Path) -> None:
    try:
        with database.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise BatchDefinitionError(
            database,
            f"cannot read the 3D Slicer DICOM database: {exc.strerror or exc}.",
            key="source.path",
            fix="check that the file exists and that this user may read it.",
        ) from exc
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not an SQLite database file"
        raise BatchDefinitionError(
            database,
            f"not a 3D Slicer DICOM database: {what}.",
            key="source.path",
            fix="point path at the folder 3D Slicer uses as its DICOM database (it holds "
            "ctkDICOM.sql and a dicom folder), or at that ctkDICOM.sql file.",
        )


def _database_error(database: Path, exc: sqlite3.Error) -> BatchDefinitionError:
    text = str(exc)
    lowered = text.lower()
    journal = database.with_name(database.name + "-journal")
    if "locked" in lowered or "busy" in lowered:
        message = (
            "the 3D Slicer DICOM database is locked: another program (3D Slicer importing or "
            "deleting files) is writing to it."
        )
        fix = "wait until 3D Slicer has finished the import, then load the batch again."
    elif journal.exists():
        message = (
            f"the 3D Slicer DICOM database has an unfinished write ({journal.name} beside it) "
            f"that a read-only reader cannot complete (SQLite: {text})."
        )
        fix = "open the database once in 3D Slicer, which completes or undoes that write."
    elif "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        message = f"the 3D Slicer DICOM database file is damaged (SQLite: {text})."
        fix = (
            "restore it from a backup, or let 3D Slicer re-create it and import the files "
            "again; CaseIterator only reads it and never repairs it."
        )
    else:
        message = f"cannot read the 3D Slicer DICOM database (SQLite: {text})."
        fix = "check that the file and its folder can be read by this user."
    return BatchDefinitionError(database, message, key="source.path", fix=fix)


def _absolute_path(filename: str, folder: Path) -> Path:
    """Resolve ``Images.Filename`` as CTK does: absolute as is, else relative to the folder."""
    path = Path(filename)
    return Path(os.path.normpath(path if path.is_absolute() else folder / path))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _probe(files: list[Path], n_instances: int) -> tuple[str, int]:
    """SOP class of the series and its number of images (frames), from file headers.

    The CTK tables hold neither; one header tells an image from a SEG or an encapsulated PDF
    filed under an image modality, and only multi-frame series need every header read, so
    ``min_images`` counts frames as the DICOM-folder source does.
    """
    ds, _ = read_header(files[0], tags=_PROBE_TAGS)
    if ds is None:  # the loader reports the unreadable file by name
        return "", n_instances
    sop_class = str(ds.get("SOPClassUID", ""))
    if header_int(ds, "NumberOfFrames", 1) <= 1:
        return sop_class, n_instances
    frames = n_instances - len(files)  # instances not on disk count as one image each
    for path in files:
        other, _ = read_header(path, tags=_PROBE_TAGS)
        frames += header_int(other, "NumberOfFrames", 1) if other is not None else 1
    return sop_class, frames


def _dicom_date(value: str) -> str:
    """Back to a DICOM DA (``YYYYMMDD``): Qt stores the dates as ``yyyy-MM-dd``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?", value.strip())
    return "".join(match.groups()) if match else value.strip()


def _int_or_none(value: str) -> int | None:
    try:
        return int(value) if value != "" else None
    except ValueError:
        return None


def _series_path(summary: SeriesSummary, database: Path) -> Path:
    return summary.files[0].parent if summary.files else database


def _skipped(database: Path, reason: str) -> SkippedItem:
    return SkippedItem(str(database), reason)


__all__ = [
    "DATABASE_FILE",
    "SUPPORTED_SCHEMAS",
    "SlicerDicomDatabaseSource",
    "check_schema",
    "open_read_only",
]
