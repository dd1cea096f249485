"""Slicer DICOM database batches: a 3D Slicer database folder read in place, never written."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.errors import BatchDefinitionError, CaseLoadError
from CaseIteratorCoreLib.loading import inspect_case, load_case
from CaseIteratorCoreLib.problems import ProblemCode
from CaseIteratorCoreLib.sources import DicomFolderSource, slicer_db
from CaseIteratorCoreLib.sources.slicer_db import SlicerDicomDatabaseSource, open_read_only

from series_factory import write_series
from slicer_dicom_db import build_slicer_database

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.22"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def db_source(path: Path, rule: str = "") -> SlicerDicomDatabaseSource:
    """The source of a bare database folder, or of a batch file with a ``[source.series]`` rule."""
    if rule:
        batch_file = path.parent / "slicer-db.toml"
        batch_file.write_text(
            f'[source]\ntype = "slicer-db"\npath = "{path.name}"\n\n[source.series]\n{rule}\n'
        )
        return SlicerDicomDatabaseSource.from_batch(load_batch(batch_file))
    return SlicerDicomDatabaseSource.from_batch(load_batch(path))


def folder_source(path: Path, rule: str = "") -> DicomFolderSource:
    if rule:
        batch_file = path.parent / "dicom-folder.toml"
        batch_file.write_text(
            f'[source]\ntype = "dicom-folder"\npath = "{path.name}"\n\n[source.series]\n{rule}\n'
        )
        return DicomFolderSource.from_batch(load_batch(batch_file))
    return DicomFolderSource.from_batch(load_batch(path))


def listing(case: Case) -> tuple:
    """What a reader sees of a case in the list, and what progress is stored under."""
    return case.id, case.name, case.index, dict(case.details), case.result.stem


@pytest.fixture
def demo_dicom(demo_batch: Path) -> Path:
    return demo_batch.parent / "dicom"


def stored_filenames(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        names = [row[0] for row in conn.execute("SELECT Filename FROM Images")]
    conn.close()
    return names


@pytest.mark.parametrize(
    ("layout", "copy", "relative", "version"),
    [
        ("copied, relative names (Slicer 5.6+), folder moved", True, True, "0.8.0"),
        ("copied, relative names, schema 0.7.0 (Slicer 5.0-5.4)", True, True, "0.7.0"),
        ("copied, absolute names (older Slicer)", True, False, "0.8.0"),
        ("linked, not copied", False, True, "0.8.0"),
    ],
)
def test_same_cases_and_voxels_as_the_dicom_folder_source(
    demo_dicom: Path, tmp_path: Path, layout: str, copy: bool, relative: bool, version: str
) -> None:
    database = build_slicer_database(
        tmp_path / "built",
        dicom_files(demo_dicom),
        copy=copy,
        relative_paths=relative,
        schema_version=version,
    )
    names = stored_filenames(database)
    if copy and relative:
        assert all(n.startswith("dicom/") for n in names)
        # A database with relative names still works after its folder is moved.
        database = Path(shutil.move(database.parent, tmp_path / "moved")) / database.name
    else:
        assert all(Path(n).is_absolute() for n in names)
    files_root = database.parent if copy else demo_dicom
    expected = list(folder_source(demo_dicom).iter_cases())
    source = db_source(database.parent)
    cases = list(source.iter_cases())
    assert [listing(c) for c in cases] == [listing(c) for c in expected]
    assert source.skipped == [] and source.schema_version == version
    assert cases[0].name.startswith("DEMO-001 · ") and cases[0].details["images"] == "24"
    for case, reference in zip(cases, expected, strict=True):
        assert case.problems == ()
        assert all(f.is_relative_to(files_root) for f in case.images[0].files)
        loaded, wanted = load_case(source, case), load_case(folder_source(demo_dicom), reference)
        np.testing.assert_array_equal(loaded.image.volume.array, wanted.image.volume.array)
        got, want = loaded.image.volume.geometry, wanted.image.volume.geometry
        assert (got.size, got.origin, got.spacing) == (want.size, want.origin, want.spacing)
        np.testing.assert_array_equal(got.direction, want.direction)
        assert loaded.image.window == wanted.image.window


def test_missing_files_are_a_problem_of_the_case_naming_them(
    demo_dicom: Path, tmp_path: Path
) -> None:
    database = build_slicer_database(tmp_path / "db", dicom_files(demo_dicom))
    first, second = list(db_source(database.parent).iter_cases())
    gone = sorted(first.images[0].files)[5:8]
    for path in gone:
        path.unlink()
    for path in second.images[0].files:
        path.unlink()
    source = db_source(database.parent)
    broken, emptied = list(source.iter_cases())
    assert (broken.id, emptied.id) == (first.id, second.id)  # still listed, still skippable
    (problem,) = broken.problems
    assert problem.code is ProblemCode.MISSING_FILE and problem.is_error
    assert problem.message.startswith(
        "3 of 24 files of series 'Axial 1.25 mm portal venous' are missing from the Slicer "
        f"database folder {database.parent} (first missing: {gone[0]})"
    )
    assert "import the series into 3D Slicer again" in problem.message
    assert emptied.problems[0].message.startswith("all 24 files of series ")
    with pytest.raises(CaseLoadError, match="3 of 24 files"):
        load_case(source, broken)
    report = inspect_case(source, emptied)
    assert not report.ok and "all 24 files" in report.problems[0].message


def test_missing_linked_files_say_where_they_were(demo_dicom: Path, tmp_path: Path) -> None:
    images = shutil.copytree(demo_dicom, tmp_path / "usb-drive")
    database = build_slicer_database(tmp_path / "db", dicom_files(images), copy=False)
    shutil.rmtree(images / "DEMO-002")  # the drive holding one patient is not connected
    ok, lost = list(db_source(database.parent).iter_cases())
    assert ok.problems == ()
    message = lost.problems[0].message
    assert message.startswith(
        f"all 24 files of series 'Axial 3 mm portal venous' listed in the "
        f"Slicer database {database} are missing on disk"
    )
    assert str(images / "DEMO-002") in message and "reconnect the drive" in message


def test_instances_without_a_local_file_are_a_problem(demo_dicom: Path, tmp_path: Path) -> None:
    database = build_slicer_database(tmp_path / "db", dicom_files(demo_dicom))
    first = next(db_source(database.parent).iter_cases())
    with sqlite3.connect(database) as conn:  # what 3D Slicer 5.6+ lists after a DICOMweb query
        uids = [
            r[0]
            for r in conn.execute(
                "SELECT SOPInstanceUID FROM Images WHERE SeriesInstanceUID = ? LIMIT 3", (first.id,)
            )
        ]
        conn.execute(
            "UPDATE Images SET Filename = NULL, URL = 'https://pacs/dicom-web/studies/1' "
            f"WHERE SOPInstanceUID IN ({','.join('?' * len(uids))})",
            uids,
        )
        conn.execute(  # and a database made on Windows with linked files
            "UPDATE Images SET Filename = 'C:/Users/reader/CT/IM0001.dcm' WHERE rowid = "
            "(SELECT rowid FROM Images WHERE SeriesInstanceUID = ? AND Filename IS NOT NULL "
            "LIMIT 1)",
            (first.id,),
        )
    conn.close()
    case = next(db_source(database.parent).iter_cases())
    messages = [p.message for p in case.problems]
    assert len(messages) == 2 and case.details["images"] == "24"
    assert messages[0].startswith(
        "1 of 24 files of series 'Axial 1.25 mm portal venous' are "
        "recorded as Windows paths (first: C:/Users/reader/CT/IM0001.dcm)"
    )
    assert messages[1].startswith(
        "3 of 24 instances of series 'Axial 1.25 mm portal venous' were never downloaded"
    )
    assert len(case.images[0].files) == 20


def test_non_image_series_are_skipped_with_their_kind(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_series(root / "ct", n=4, seed="ct")

    def kind(sop_class: str, modality: str):
        def tweak(k, ds):
            ds.SOPClassUID = sop_class
            ds.file_meta.MediaStorageSOPClassUID = sop_class
            ds.Modality = modality

        return tweak

    write_series(root / "sr", n=1, seed="sr", tweak=kind(SR_STORAGE, "SR"))
    write_series(root / "seg", n=1, seed="seg", tweak=kind(SEG_STORAGE, "SEG"))
    # Filed under an image modality: only the SOP class in the file's header tells.
    write_series(root / "pdf", n=1, seed="pdf", tweak=kind(PDF_STORAGE, "OT"))
    database = build_slicer_database(tmp_path / "db", dicom_files(root))
    source = db_source(database.parent)
    cases = list(source.iter_cases())
    assert [c.details["images"] for c in cases] == ["4"]
    reasons = sorted(s.reason.split(") is ")[1] for s in source.skipped)
    assert reasons == [
        "a segmentation (SEG), not an image",
        "a structured report (SR), not an image",
        "an encapsulated PDF, not an image",
    ]
    assert all(Path(s.path).is_relative_to(database.parent / "dicom") for s in source.skipped)


def test_series_rule_selects_as_for_a_dicom_folder(tmp_path: Path) -> None:
    root = tmp_path / "dicom"

    def describe(text: str, modality: str = "CT", frames: int = 1):
        def tweak(k, ds):
            ds.SeriesDescription = text
            ds.Modality = modality
            if frames > 1:
                ds.NumberOfFrames = frames

        return tweak

    def same_study(k, ds):
        ds.StudyInstanceUID = "1.2.3.4"

    write_series(root / "a", n=3, seed="a", tweak=describe("Localizer"))
    write_series(root / "b", n=6, seed="b", tweak=describe("Abdomen portal venous"))
    write_series(root / "c", n=6, seed="c", tweak=describe("Abdomen arterial"))
    write_series(root / "d", n=6, seed="d", tweak=describe("T2 portal", "MR"))
    write_series(root / "e", n=2, seed="e", tweak=describe("Enhanced portal", frames=5))
    database = build_slicer_database(tmp_path / "db", dicom_files(root))
    for rule in (
        'modality = "CT"\ndescription = "portal"\nmin_images = 4',
        'min_images = 8\nexclude_description = "T2"',
        'modality = ["CT", "MR"]\nper_study = "largest"',
    ):
        source = db_source(database.parent, rule)
        reference = folder_source(root, rule)
        cases = list(source.iter_cases())
        assert [listing(c) for c in cases] == [listing(c) for c in reference.iter_cases()]
        assert sorted(s.reason for s in source.skipped) == sorted(
            s.reason for s in reference.skipped
        )
    source = db_source(database.parent, 'modality = "CT"\ndescription = "portal"\nmin_images = 4')
    selected = sorted(c.details["series_description"] for c in source.iter_cases())
    assert selected == ["Abdomen portal venous", "Enhanced portal"]  # 2 files of 5 frames
    assert "modality MR is not CT" in " ".join(s.reason for s in source.skipped)

    write_series(root / "f", n=3, seed="f", tweak=same_study)
    write_series(root / "g", n=7, seed="g", tweak=same_study)
    database = build_slicer_database(
        tmp_path / "db2", dicom_files(root / "f") + dicom_files(root / "g")
    )
    cases = list(db_source(database.parent, 'per_study = "largest"').iter_cases())
    assert [c.details["images"] for c in cases] == ["7"]


def test_anonymised_patients_are_named_as_in_a_dicom_folder(tmp_path: Path) -> None:
    def anonymous(k, ds):
        del ds.PatientID
        del ds.PatientName

    write_series(tmp_path / "dicom" / "anon", n=3, seed="anon", tweak=anonymous)
    database = build_slicer_database(tmp_path / "db", dicom_files(tmp_path / "dicom"))
    with sqlite3.connect(database) as conn:  # CTK files the study UID as patient ID and name
        ((patient_id, name, study),) = conn.execute(
            "SELECT PatientID, PatientsName, StudyInstanceUID FROM Patients JOIN Studies "
            "ON Studies.PatientsUID = Patients.UID"
        ).fetchall()
    conn.close()
    assert patient_id == name == study
    (case,) = db_source(database.parent).iter_cases()
    (expected,) = folder_source(tmp_path / "dicom").iter_cases()
    assert listing(case) == listing(expected)
    assert case.name.startswith("unknown patient · 2026-01-01")


@pytest.fixture
def read_only_tree(demo_dicom: Path, tmp_path: Path) -> Iterator[Path]:
    """A Slicer database whose folders and files are all read-only; permissions restored after."""
    database = build_slicer_database(tmp_path / "db", dicom_files(demo_dicom))
    paths = [*sorted(database.parent.rglob("*"), reverse=True), database.parent]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    yield database
    for path in paths:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_the_database_is_never_written(
    read_only_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = read_only_tree
    folder = database.parent
    before = (database.read_bytes(), database.stat().st_mtime_ns, folder.stat().st_mtime_ns)
    listed = sorted(p.name for p in folder.iterdir())
    opened = []
    real_connect = sqlite3.connect

    def spying_connect(target, *args, **kwargs):
        conn = real_connect(target, *args, **kwargs)
        opened.append((target, kwargs.get("uri")))
        # Running as root ignores file permissions: prove the connection itself cannot write.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE probe (x)")
        return conn

    monkeypatch.setattr(slicer_db.sqlite3, "connect", spying_connect)
    source = db_source(folder)
    cases = list(source.iter_cases())
    for case in cases:
        load_case(source, case)
    with open_read_only(database) as conn:
        assert conn.execute("PRAGMA query_only").fetchone() == (1,)
    assert len(cases) == 2 and len(opened) >= 2
    assert all(
        uri is True and str(target).endswith("ctkDICOM.sql?mode=ro") for target, uri in opened
    )
    after = (database.read_bytes(), database.stat().st_mtime_ns, folder.stat().st_mtime_ns)
    assert after == before  # same bytes, same mtime, no file created or removed in the folder
    assert sorted(p.name for p in folder.iterdir()) == listed
    assert not list(folder.glob("ctkDICOM.sql-*"))  # no -journal, -wal or -shm


def test_reads_while_slicer_holds_the_database(
    demo_dicom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = build_slicer_database(tmp_path / "db", dicom_files(demo_dicom))
    slicer = sqlite3.connect(database, isolation_level=None)
    try:
        # Slicer has it open, mid-import: a pending write transaction does not block readers.
        slicer.execute("BEGIN IMMEDIATE")
        slicer.execute("INSERT INTO Directories VALUES ('/incoming')")
        assert len(list(db_source(database.parent).iter_cases())) == 2
        slicer.execute("ROLLBACK")
        # While Slicer commits, it holds the file exclusively: refused with the reason and fix.
        slicer.execute("BEGIN EXCLUSIVE")
        monkeypatch.setattr(SlicerDicomDatabaseSource, "busy_timeout_s", 0.2)
        with pytest.raises(BatchDefinitionError) as error:
            db_source(database.parent)
        assert error.value.path == database
        assert "is locked" in str(error.value)
        assert "wait until 3D Slicer has finished the import" in str(error.value)
    finally:
        slicer.close()
    assert len(list(db_source(database.parent).iter_cases())) == 2


def _write_db(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(script)
    conn.close()
    return path


@pytest.mark.parametrize(
    ("make", "message", "fix"),
    [
        (
            lambda p: _write_db(p, "CREATE TABLE notes (text);"),
            "not a 3D Slicer DICOM database: it has none of the tables Patients, Studies, "
            "Series, Images (it holds notes)",
            "point path at the folder 3D Slicer uses as its DICOM database",
        ),
        (
            lambda p: p.write_text("patient list\n") and p,
            "not a 3D Slicer DICOM database: not an SQLite database file",
            "point path at the folder 3D Slicer uses",
        ),
        (
            lambda p: p.write_bytes(b"") or p,
            "not a 3D Slicer DICOM database: an empty file",
            "point path at the folder",
        ),
        (
            lambda p: (
                build_slicer_database(p.parent, [])
                and _write_db(p, "UPDATE SchemaInfo SET Version = '0.9.0';")
            ),
            "schema version '0.9.0' is not one this version of CaseIterator reads",
            "update CaseIterator",
        ),
        (
            lambda p: _write_db(
                p, "CREATE TABLE Images (Filename); CREATE TABLE Series (SeriesInstanceUID);"
            ),
            "has no schema version: it was made by a very old 3D Slicer",
            "open the database once in a current 3D Slicer",
        ),
        (
            lambda p: (
                build_slicer_database(p.parent, [])
                and _write_db(p, "ALTER TABLE Series DROP COLUMN Modality;")
            ),
            "lacks Series.Modality",
            "let 3D Slicer rebuild the database",
        ),
    ],
    ids=["other sqlite", "text file", "empty file", "newer schema", "unversioned", "no column"],
)
def test_a_wrong_database_file_is_refused_naming_it(
    tmp_path: Path, make, message: str, fix: str
) -> None:
    database = tmp_path / "db" / "ctkDICOM.sql"
    database.parent.mkdir()
    make(database)
    with pytest.raises(BatchDefinitionError) as error:
        db_source(database.parent)
    assert error.value.path == database
    assert str(error.value).startswith(f"{database}: ")
    assert message in error.value.reason
    assert fix in (error.value.fix or "")


def test_a_folder_without_ctkdicom_sql_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    batch_file = tmp_path / "batch.toml"
    batch_file.write_text('name = "x"\n\n[source]\ntype = "slicer-db"\npath = "empty"\n')
    with pytest.raises(BatchDefinitionError) as error:
        SlicerDicomDatabaseSource.from_batch(load_batch(batch_file))
    assert (error.value.path, error.value.line, error.value.key) == (batch_file, 5, "source.path")
    assert "holds no ctkDICOM.sql" in error.value.reason
    assert 'type = "dicom-folder"' in (error.value.fix or "")


def test_bare_folder_and_database_file_are_both_accepted(demo_dicom: Path, tmp_path: Path) -> None:
    database = build_slicer_database(
        tmp_path / "site" / "SlicerDICOMDatabase", dicom_files(demo_dicom)
    )
    batch = load_batch(database.parent)
    assert batch.source.type == "slicer-db"
    source = SlicerDicomDatabaseSource.from_batch(batch)
    assert source.describe() == f"3D Slicer DICOM database {database.parent}"
    batch_file = tmp_path / "site" / "reading.toml"
    batch_file.write_text(
        '[source]\ntype = "slicer-db"\npath = "SlicerDICOMDatabase/ctkDICOM.sql"\n'
    )
    by_file = SlicerDicomDatabaseSource.from_batch(load_batch(batch_file))
    assert [c.id for c in by_file.iter_cases()] == [c.id for c in source.iter_cases()]
    assert all(c.result.origin == str(database.parent) for c in by_file.iter_cases())
    with pytest.raises(BatchDefinitionError, match="unknown key 'folder'"):
        batch_file.write_text('[source]\ntype = "slicer-db"\nfolder = "SlicerDICOMDatabase"\n')
        SlicerDicomDatabaseSource.from_batch(load_batch(batch_file))
