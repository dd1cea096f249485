"""Build 3D Slicer DICOM databases for tests, the way Slicer (CTK's ``ctkDICOMDatabase``) does.

A Slicer DICOM database is a folder holding:

- ``ctkDICOM.sql``: the SQLite index (tables SchemaInfo, Patients, Studies, Series, Images...);
- ``ctkDICOMTagCache.sql``: a cache of header values (not needed to find files);
- ``dicom/<md5(study)[:8]>/<md5(series)[:8]>/<md5(sop)>.dcm``: copies of imported files.

What this builder reproduces, and where it was read (CTK, ``Libs/DICOM/Core``):

- The tables: ``Resources/dicom-schema.sql`` of commontk/CTK (schema 0.7.0, as stored at commit
  01ab373d), plus the 0.8.0 change of CTK pull request #1154 / Slicer pull request #7472 (Dec
  2023): ``Images`` gains a ``URL`` column and an instance may have a URL, a file or both; the
  0.8.x ``Images`` DDL below follows the ``.schema`` of a Slicer-made 0.8.1 database (Filename
  NULL-able, non-unique filename index). Only the CREATE statements are kept: the default rows
  of ``ColumnDisplayProperties`` are display settings nobody here reads.
- The rows (``ctkDICOMDatabase.cpp``, SchemaVersion "0.8.0" at commit 013d9a4f): one Patients
  row per (PatientID, PatientsName), ``UID`` autoincremented and referenced by
  ``Studies.PatientsUID``; an empty PatientID is replaced by the StudyInstanceUID and an empty
  name by the PatientID (``uidsForDataSet``); dates are bound as ``QDate`` and so stored as
  ISO text ``yyyy-MM-dd`` (NULL when not a valid date); SeriesNumber as an integer (0 when
  absent); timestamps as ISO date-times.
- The paths (``insert`` / ``storeDatasetFile`` / ``ctk::absolutePathFromInternal``): a copied
  file is stored under ``dicom/`` with the MD5 names above and its ``Filename`` is relative to
  the database folder (older Slicer stored it absolute); a linked file (not copied) keeps its
  absolute path. Relative names are resolved against the folder holding ``ctkDICOM.sql``.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from CaseIteratorCoreLib.dicom_files import header_int, read_header

DATABASE_FILE = "ctkDICOM.sql"
TAG_CACHE_FILE = "ctkDICOMTagCache.sql"

# CREATE statements of CTK's Libs/DICOM/Core/Resources/dicom-schema.sql, schema 0.7.0
# (commontk/CTK commit 01ab373d); {images} is replaced by the Images table of the version built.
_SCHEMA = """
CREATE TABLE 'SchemaInfo' ( 'Version' VARCHAR(1024) NOT NULL );
{images}
CREATE TABLE 'Patients' (
  'UID' INTEGER PRIMARY KEY AUTOINCREMENT,
  'PatientsName' VARCHAR(255) NULL ,
  'PatientID' VARCHAR(255) NULL ,
  'PatientsBirthDate' DATE NULL ,
  'PatientsBirthTime' TIME NULL ,
  'PatientsSex' VARCHAR(1) NULL ,
  'PatientsAge' VARCHAR(10) NULL ,
  'PatientsComments' VARCHAR(255) NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedPatientsName' VARCHAR(255) NULL ,
  'DisplayedNumberOfStudies' INT NULL ,
  'DisplayedLastStudyDate' DATE NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL );
CREATE TABLE 'Studies' (
  'StudyInstanceUID' VARCHAR(64) NOT NULL ,
  'PatientsUID' INT NOT NULL ,
  'StudyID' VARCHAR(255) NULL ,
  'StudyDate' DATE NULL ,
  'StudyTime' VARCHAR(20) NULL ,
  'StudyDescription' VARCHAR(255) NULL ,
  'AccessionNumber' VARCHAR(255) NULL ,
  'ModalitiesInStudy' VARCHAR(255) NULL ,
  'InstitutionName' VARCHAR(255) NULL ,
  'ReferringPhysician' VARCHAR(255) NULL ,
  'PerformingPhysiciansName' VARCHAR(255) NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedNumberOfSeries' INT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('StudyInstanceUID') );
CREATE TABLE 'Series' (
  'SeriesInstanceUID' VARCHAR(64) NOT NULL ,
  'StudyInstanceUID' VARCHAR(64) NOT NULL ,
  'SeriesNumber' INT NULL ,
  'SeriesDate' DATE NULL ,
  'SeriesTime' VARCHAR(20) NULL ,
  'SeriesDescription' VARCHAR(255) NULL ,
  'Modality' VARCHAR(20) NULL ,
  'BodyPartExamined' VARCHAR(255) NULL ,
  'FrameOfReferenceUID' VARCHAR(64) NULL ,
  'AcquisitionNumber' INT NULL ,
  'ContrastAgent' VARCHAR(255) NULL ,
  'ScanningSequence' VARCHAR(45) NULL ,
  'EchoNumber' INT NULL ,
  'TemporalPosition' INT NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedCount' INT NULL ,
  'DisplayedSize' VARCHAR(20) NULL ,
  'DisplayedNumberOfFrames' INT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('SeriesInstanceUID') );
{filename_index}
CREATE INDEX IF NOT EXISTS 'ImagesSeriesIndex' ON 'Images' ('SeriesInstanceUID');
CREATE INDEX IF NOT EXISTS 'SeriesStudyIndex' ON 'Series' ('StudyInstanceUID');
CREATE INDEX IF NOT EXISTS 'StudiesPatientIndex' ON 'Studies' ('PatientsUID');
CREATE TABLE 'Directories' (
  'Dirname' VARCHAR(1024) ,
  PRIMARY KEY ('Dirname') );
CREATE TABLE 'ColumnDisplayProperties' (
  'TableName' VARCHAR(64) NOT NULL,
  'FieldName' VARCHAR(64) NOT NULL ,
  'DisplayedName' VARCHAR(255) NULL ,
  'Visibility' INT NULL DEFAULT 1 ,
  'Weight' INT NULL ,
  'Format' VARCHAR(255) NULL ,
  PRIMARY KEY ('TableName', 'FieldName') );
CREATE TABLE 'DisplayedFieldGeneratorRules' (
  'Name' VARCHAR(64) NOT NULL,
  'Enabled' INT NULL DEFAULT 1 ,
  'Options' VARCHAR(255) NULL ,
  PRIMARY KEY ('Name') );
"""

_IMAGES_0_7 = """CREATE TABLE 'Images' (
  'SOPInstanceUID' VARCHAR(64) NOT NULL,
  'Filename' VARCHAR(1024) NOT NULL ,
  'SeriesInstanceUID' VARCHAR(64) NOT NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('SOPInstanceUID') );"""

_IMAGES_0_8 = """CREATE TABLE 'Images' (
  'SOPInstanceUID' VARCHAR(64) NOT NULL,
  'Filename' VARCHAR(1024) NULL,
  'URL' VARCHAR(2048) NULL,
  'SeriesInstanceUID' VARCHAR(64) NOT NULL ,
  'InsertTimestamp' VARCHAR(20) NOT NULL ,
  'DisplayedFieldsUpdatedTimestamp' DATETIME NULL ,
  PRIMARY KEY ('SOPInstanceUID') );"""

# ctkDICOMDatabase::initializeTagCache (one row per instance and tag).
_TAG_CACHE_SCHEMA = """
CREATE TABLE TagCache (
  SOPInstanceUID VARCHAR(64) NOT NULL,
  Tag VARCHAR(20) NOT NULL,
  Value VARCHAR(255) NULL,
  PRIMARY KEY (SOPInstanceUID, Tag) );
"""

_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "SeriesDescription",
    "Modality",
    "BodyPartExamined",
    "FrameOfReferenceUID",
]


def schema_sql(version: str = "0.8.0") -> str:
    """The CREATE statements of a CTK DICOM database of schema ``version`` (0.7.x or 0.8.x)."""
    if version.startswith("0.7."):
        images = _IMAGES_0_7
        index = "CREATE UNIQUE INDEX IF NOT EXISTS 'ImagesFilenameIndex' ON 'Images' ('Filename');"
    elif version.startswith("0.8."):
        images = _IMAGES_0_8
        index = "CREATE INDEX IF NOT EXISTS 'ImagesFilenameIndex' ON 'Images' ('Filename');"
    else:
        raise ValueError(f"schema_version must be 0.7.x or 0.8.x, got {version!r}")
    return _SCHEMA.format(images=images, filename_index=index)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _qdate(value: object) -> str | None:
    """A DICOM DA as Qt stores a bound ``QDate``: ``yyyy-MM-dd``, None when not a valid date."""
    text = str(value or "").strip()
    try:
        return datetime.strptime(text, "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def build_slicer_database(
    db_folder: Path,
    dicom_files: Iterable[Path],
    *,
    copy: bool = True,
    relative_paths: bool = True,
    schema_version: str = "0.8.0",
) -> Path:
    """Create (or add to) a 3D Slicer DICOM database in ``db_folder``, as Slicer's import does.

    Parameters
    ----------
    db_folder
        The database folder; created when missing. ``ctkDICOM.sql`` and
        ``ctkDICOMTagCache.sql`` are created in it when they do not exist yet.
    dicom_files
        Files to import. Files that are not DICOM, or lack the UIDs Slicer needs, are skipped
        (Slicer logs and ignores them); an instance already in the database is not added again.
    copy
        True: copy each file to ``dicom/<md5(study)[:8]>/<md5(series)[:8]>/<md5(sop)>.dcm``
        ("copy" import). False: link the file where it is ("add link" import).
    relative_paths
        For copied files: store ``Filename`` relative to the database folder (Slicer 4.11 and
        later) or absolute (older versions). Linked files are always stored absolute.
    schema_version
        The ``SchemaInfo`` version to write: "0.8.0" (Slicer 5.6 and later) or "0.7.0".

    Returns
    -------
    Path
        The database file ``db_folder/ctkDICOM.sql``.
    """
    db_folder = Path(db_folder).absolute()
    db_folder.mkdir(parents=True, exist_ok=True)
    database = db_folder / DATABASE_FILE
    fresh = not database.exists()
    with sqlite3.connect(database) as conn:
        if fresh:
            conn.executescript(schema_sql(schema_version))
            conn.execute("INSERT INTO 'SchemaInfo' VALUES(?)", (schema_version,))
        has_url = any(row[1] == "URL" for row in conn.execute("PRAGMA table_info('Images')"))
        for path in dicom_files:
            _insert(conn, db_folder, Path(path), copy=copy, relative=relative_paths, url=has_url)
    conn.close()
    tag_cache = db_folder / TAG_CACHE_FILE
    if not tag_cache.exists():
        with sqlite3.connect(tag_cache) as cache:
            cache.executescript(_TAG_CACHE_SCHEMA)
        cache.close()
    return database


def _insert(
    conn: sqlite3.Connection, db_folder: Path, path: Path, *, copy: bool, relative: bool, url: bool
) -> None:
    ds, _ = read_header(path, tags=_HEADER_TAGS)
    if ds is None:
        return
    sop = str(ds.get("SOPInstanceUID", ""))
    study = str(ds.get("StudyInstanceUID", ""))
    series = str(ds.get("SeriesInstanceUID", ""))
    patient_id = str(ds.get("PatientID", "") or "")
    patient_name = str(ds.get("PatientName", "") or "")
    # ctkDICOMDatabasePrivate::uidsForDataSet: anonymised data gets stand-in patient values.
    patient_id = patient_id or study
    patient_name = patient_name or patient_id
    if not (sop and study and series and patient_id):
        return
    if conn.execute("SELECT 1 FROM Images WHERE SOPInstanceUID = ?", (sop,)).fetchone():
        return
    now = datetime.now().isoformat(timespec="milliseconds")
    if copy:
        stored = db_folder / "dicom" / _md5(study)[:8] / _md5(series)[:8] / f"{_md5(sop)}.dcm"
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, stored)
        filename = stored.relative_to(db_folder).as_posix() if relative else stored.as_posix()
    else:
        filename = path.absolute().as_posix()

    row = conn.execute(
        "SELECT UID FROM Patients WHERE PatientID = ? AND PatientsName = ?",
        (patient_id, patient_name),
    ).fetchone()
    if row:
        patient_uid = row[0]
    else:
        patient_uid = conn.execute(
            "INSERT INTO Patients ('UID', 'PatientsName', 'PatientID', 'PatientsBirthDate', "
            "'PatientsSex', 'InsertTimestamp') VALUES (NULL, ?, ?, ?, ?, ?)",
            (
                patient_name,
                patient_id,
                _qdate(ds.get("PatientBirthDate")),
                str(ds.get("PatientSex", "") or ""),
                now,
            ),
        ).lastrowid
    if not conn.execute("SELECT 1 FROM Studies WHERE StudyInstanceUID = ?", (study,)).fetchone():
        conn.execute(
            "INSERT INTO Studies ('StudyInstanceUID', 'PatientsUID', 'StudyID', 'StudyDate', "
            "'StudyTime', 'StudyDescription', 'AccessionNumber', 'InsertTimestamp') "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                study,
                patient_uid,
                str(ds.get("StudyID", "") or ""),
                _qdate(ds.get("StudyDate")),
                str(ds.get("StudyTime", "") or ""),
                str(ds.get("StudyDescription", "") or ""),
                str(ds.get("AccessionNumber", "") or ""),
                now,
            ),
        )
    if not conn.execute("SELECT 1 FROM Series WHERE SeriesInstanceUID = ?", (series,)).fetchone():
        conn.execute(
            "INSERT INTO Series ('SeriesInstanceUID', 'StudyInstanceUID', 'SeriesNumber', "
            "'SeriesDate', 'SeriesTime', 'SeriesDescription', 'Modality', 'BodyPartExamined', "
            "'FrameOfReferenceUID', 'InsertTimestamp') VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                series,
                study,
                header_int(ds, "SeriesNumber", 0),
                _qdate(ds.get("SeriesDate")),
                str(ds.get("SeriesTime", "") or ""),
                str(ds.get("SeriesDescription", "") or ""),
                str(ds.get("Modality", "") or ""),
                str(ds.get("BodyPartExamined", "") or ""),
                str(ds.get("FrameOfReferenceUID", "") or ""),
                now,
            ),
        )
    if url:
        conn.execute(
            "INSERT INTO Images ('SOPInstanceUID', 'Filename', 'URL', 'SeriesInstanceUID', "
            "'InsertTimestamp') VALUES (?, ?, '', ?, ?)",
            (sop, filename, series, now),
        )
    else:
        conn.execute(
            "INSERT INTO Images ('SOPInstanceUID', 'Filename', 'SeriesInstanceUID', "
            "'InsertTimestamp') VALUES (?, ?, ?, ?)",
            (sop, filename, series, now),
        )


__all__ = ["DATABASE_FILE", "TAG_CACHE_FILE", "build_slicer_database", "schema_sql"]
