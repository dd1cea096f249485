"""The local DICOM database: import, store, crash safety, threads, read-only, dicom-db batches."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from CaseIteratorApp import import_command
from CaseIteratorCoreLib import dicom_database
from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.dicom_database import (
    INDEX_NAME,
    DicomDatabaseError,
    LocalDicomDatabase,
    default_database_dir,
)
from CaseIteratorCoreLib.errors import BatchDefinitionError, OperationCancelled
from CaseIteratorCoreLib.loading import load_case
from CaseIteratorCoreLib.sources.dicom_db import DicomDatabaseSource
from CaseIteratorCoreLib.sources.dicom_folder import DicomFolderSource
from CaseIteratorCoreLib.tasks import CancelToken

from series_factory import write_series

# DICOMfileClient.store_instances encodes with pydicom's deprecated ``write_like_original`` (a
# warning and a log line per instance); the database must not go through it.
pytestmark = pytest.mark.filterwarnings("error:'write_like_original':DeprecationWarning")

N_SLICES = 12


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """Two demo CT studies (64x64, 12 slices); returns the batch file."""
    return write_demo_batch(tmp_path / "demo", 2, size=64, n_slices=N_SLICES)


def db_batch(folder: Path, db: Path, extra: str = "") -> Path:
    batch = folder / "db.toml"
    batch.write_text(f'name = "db"\n\n[source]\ntype = "dicom-db"\npath = "{db}"\n{extra}')
    return batch


def db_source(folder: Path, db: Path, extra: str = "") -> DicomDatabaseSource:
    return DicomDatabaseSource.from_batch(load_batch(db_batch(folder, db, extra)))


def stored_files(db: Path) -> list[Path]:
    return sorted(p for p in (db / "studies").rglob("*") if p.is_file())


def datasets_of(paths: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in paths]


# -- import and the dicom-db source ---------------------------------------------------------


def test_imported_demo_gives_the_folder_cases_and_identical_voxels(
    demo: Path, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        report = database.import_paths(demo.parent / "dicom")
    assert (report.imported, report.already_present, report.skipped) == (2 * N_SLICES, 0, ())
    folder_source = DicomFolderSource.from_batch(load_batch(demo))
    expected = list(folder_source.iter_cases())
    # The database is a copy: the originals may go, the cases still load from the database.
    copy = tmp_path / "originals"
    shutil.copytree(demo.parent / "dicom", copy)
    shutil.rmtree(demo.parent / "dicom")
    folder_source = DicomFolderSource.from_batch(load_batch(copy))
    source = db_source(tmp_path, db)
    cases = list(source.iter_cases())
    assert [(c.id, c.name, c.index) for c in cases] == [(c.id, c.name, c.index) for c in expected]
    assert [dict(c.details) for c in cases] == [dict(c.details) for c in expected]
    assert source.skipped == []
    for case, reference in zip(cases, folder_source.iter_cases(), strict=True):
        assert all(db in f.parents for f in case.images[0].files)
        assert case.result.origin == str(db)
        mine, theirs = load_case(source, case), load_case(folder_source, reference)
        assert mine.image.volume.geometry.mismatch(theirs.image.volume.geometry) is None
        np.testing.assert_array_equal(mine.image.volume.array, theirs.image.volume.array)
        assert mine.image.window == theirs.image.window
    source.close()


def test_reimport_counts_already_present_and_writes_nothing(demo: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    dicom = demo.parent / "dicom"
    one_file = next(dicom.rglob("IM0001.dcm"))
    with LocalDicomDatabase(db) as database:
        first = database.import_paths([dicom, one_file])  # the file twice in one import
        files = stored_files(db)
        times = [p.stat().st_mtime_ns for p in files]
        second = database.import_paths([dicom])
        summaries = database.series_summaries()
    assert (first.imported, first.already_present) == (2 * N_SLICES, 1)
    assert (second.imported, second.already_present, second.skipped) == (0, 2 * N_SLICES, ())
    assert stored_files(db) == files and len(files) == 2 * N_SLICES
    assert [p.stat().st_mtime_ns for p in files] == times
    assert [s.n_images for s in summaries] == [N_SLICES, N_SLICES]


def test_files_that_cannot_be_imported_are_skipped_with_reasons(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    paths = write_series(incoming / "ct", n=5, seed="skip")
    (incoming / "notes.txt").write_text("not an image")
    good = paths[0].read_bytes()
    (incoming / "cut-header.dcm").write_bytes(good[:300])
    cut_pixels = incoming / "ct" / "IM0005.dcm"
    cut_pixels.write_bytes(cut_pixels.read_bytes()[:-50])  # last slice: pixel data cut short
    with LocalDicomDatabase(tmp_path / "db") as database:
        report = database.import_paths([incoming, tmp_path / "missing"])
        (summary,) = database.series_summaries()
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert "the file may be truncated" in reasons["cut-header.dcm"]
    assert reasons["IM0005.dcm"].startswith("pixel data is truncated (190 of 240 bytes)")
    assert reasons["missing"] == "no such file or folder"
    assert report.imported == 4 and summary.n_images == 4


def test_import_of_a_parent_folder_leaves_the_database_out(demo: Path) -> None:
    db = demo.parent / "db"  # the database inside the folder being imported
    with LocalDicomDatabase(db) as database:
        database.import_paths(demo.parent)
        report = database.import_paths(demo.parent)
    assert report.already_present == 2 * N_SLICES
    assert [Path(s.path).name for s in report.skipped] == ["demo.toml"]


def test_cancelled_import_keeps_what_was_stored(tmp_path: Path, monkeypatch) -> None:
    write_series(tmp_path / "in" / "a", n=10, seed="a")
    write_series(tmp_path / "in" / "b", n=10, seed="b")
    monkeypatch.setattr(dicom_database, "_BATCH_COUNT", 4)
    cancel = CancelToken()

    def progress(done: int, total: int | None, message: str) -> None:
        if done >= 10:
            cancel.cancel()

    with LocalDicomDatabase(tmp_path / "db") as database:
        with pytest.raises(OperationCancelled):
            database.import_paths(tmp_path / "in", progress, cancel)
        kept = sum(s.n_images for s in database.series_summaries())
        report = database.import_paths(tmp_path / "in")
    assert 0 < kept < 20
    assert (report.imported, report.already_present) == (20 - kept, kept)


# -- store_datasets, crash safety ------------------------------------------------------------


def test_store_datasets_is_idempotent_and_takes_generators(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=6, seed="store")
    with LocalDicomDatabase(tmp_path / "db") as database:
        assert database.store_datasets(datasets_of(paths[:3])) == 3
        assert database.store_datasets(pydicom.dcmread(p) for p in paths) == 3
        assert database.store_datasets(datasets_of(paths)) == 0
        ds = pydicom.dcmread(paths[0])
        files = database.series_files(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        uids = database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(files) == 6 and len(stored_files(tmp_path / "db")) == 6
    assert uids == {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    assert all(f.is_absolute() and f.is_file() for f in files)


def test_truncated_file_is_not_served_and_storing_again_repairs_it(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=5, seed="cut")
    first = pydicom.dcmread(paths[0])
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    with LocalDicomDatabase(tmp_path / "db") as database:
        database.store_datasets(datasets_of(paths))
        victim = database.series_files(study, series)[2]
        victim.write_bytes(victim.read_bytes()[:-100])  # as if a copy was cut short
        assert victim not in database.series_files(study, series)
        assert len(database.instance_uids(study, series)) == 4
        assert database.series_summaries()[0].n_images == 4
        assert database.store_datasets(datasets_of(paths)) == 1  # the cut one, only
        files = database.series_files(study, series)
    assert len(files) == 5 and victim in files
    stored = pydicom.dcmread(victim)
    original = next(pydicom.dcmread(p) for p in paths if p.name == "IM0003.dcm")
    assert stored.SOPInstanceUID == original.SOPInstanceUID
    assert stored.PixelData == original.PixelData


def test_kill_during_a_write_leaves_no_instance_that_looks_complete(
    tmp_path: Path, monkeypatch
) -> None:
    paths = write_series(tmp_path / "s", n=4, seed="kill")
    first = pydicom.dcmread(paths[0])
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    real_replace = os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the third file: written to its temp file, never renamed
            raise KeyboardInterrupt
        real_replace(src, dst)

    db = tmp_path / "db"
    database = LocalDicomDatabase(db)
    monkeypatch.setattr(dicom_database.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        database.store_datasets(datasets_of(paths))
    monkeypatch.setattr(dicom_database.os, "replace", real_replace)
    # Two files reached their place, but the index names none of the batch, and no
    # half-written file is left behind.
    assert len(stored_files(db)) == 2
    assert database.client.search_for_instances(study, series) == []
    assert database.series_files(study, series) == ()
    assert not list(db.rglob("*.partial"))
    database.close()
    with LocalDicomDatabase(db) as reopened:
        assert reopened.series_summaries() == []
        assert reopened.store_datasets(datasets_of(paths)) == 4
        files = reopened.series_files(study, series)
        assert len(files) == 4 == len(stored_files(db))
        frames = reopened.client.retrieve_instance_frames(
            study,
            series,
            first.SOPInstanceUID,
            frame_numbers=[1],
            media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
        )
    assert frames[0] == first.PixelData  # the client's own frame offsets are right


def test_remove_series_drops_index_and_files_and_it_can_be_stored_again(tmp_path: Path) -> None:
    keep = write_series(tmp_path / "keep", n=3, seed="keep")
    drop = write_series(tmp_path / "drop", n=3, seed="drop")
    dropped = pydicom.dcmread(drop[0])
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.store_datasets(datasets_of(keep + drop))
        database.remove_series(dropped.StudyInstanceUID, dropped.SeriesInstanceUID)
        assert database.series_files(dropped.StudyInstanceUID, dropped.SeriesInstanceUID) == ()
        assert [s.n_images for s in database.series_summaries()] == [3]
        assert database.client.search_for_series(dropped.StudyInstanceUID) == []
        assert not (db / "studies" / dropped.StudyInstanceUID).exists()
        assert len(stored_files(db)) == 3
        assert database.store_datasets(datasets_of(drop)) == 3
        assert len(database.series_summaries()) == 2


def test_dataset_without_uids_is_refused_naming_it(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_series(tmp_path / "s", n=1, seed="bad")[0])
    ds.SeriesInstanceUID = "../../etc"
    with (
        LocalDicomDatabase(tmp_path / "db") as database,
        pytest.raises(DicomDatabaseError, match="not a valid UID") as caught,
    ):
        database.store_datasets([ds])
    assert str(tmp_path / "db") in str(caught.value)
    assert stored_files(tmp_path / "db") == []


# -- threads ---------------------------------------------------------------------------------


def test_two_threads_store_different_series_while_another_searches(tmp_path: Path) -> None:
    series = [write_series(tmp_path / name, n=30, seed=name) for name in ("t1", "t2")]
    database = LocalDicomDatabase(tmp_path / "db")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []
    stored: dict[str, int] = {}
    clients: dict[str, int] = {}

    def store(name: str, paths: list[Path]) -> None:
        try:
            datasets = datasets_of(paths)
            clients[name] = id(database.client)
            barrier.wait()
            stored[name] = sum(database.store_datasets([ds]) for ds in datasets)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=store, args=(name, paths))
        for name, paths in zip(("t1", "t2"), series, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    searches = 0
    while any(t.is_alive() for t in threads) or searches == 0:
        database.series_summaries()  # the GUI thread searching meanwhile
        searches += 1
    for thread in threads:
        thread.join()
    assert errors == []
    assert stored == {"t1": 30, "t2": 30}
    assert len(set(clients.values()) | {id(database.client)}) == 3  # one client per thread
    summaries = database.series_summaries()
    assert sorted(s.n_images for s in summaries) == [30, 30]
    for summary, paths in zip(
        sorted(summaries, key=lambda s: s.series_uid),
        sorted(series, key=lambda p: pydicom.dcmread(p[0]).SeriesInstanceUID),
        strict=True,
    ):
        assert database.instance_uids(summary.study_uid, summary.series_uid) == {
            pydicom.dcmread(p).SOPInstanceUID for p in paths
        }
    database.close()


# -- opening: read-only, foreign folders, lost index ---------------------------------------


def test_readonly_reads_and_refuses_every_change(demo: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.import_paths(demo.parent / "dicom")
    before = {p: p.read_bytes() for p in [*stored_files(db), db / INDEX_NAME]}
    with LocalDicomDatabase(db, readonly=True) as readonly:
        (first, _) = summaries = readonly.series_summaries()
        assert len(summaries) == 2 and first.n_images == N_SLICES
        assert len(readonly.series_files(first.study_uid, first.series_uid)) == N_SLICES
        ds = pydicom.dcmread(first.files[0])
        for action in (
            lambda: readonly.import_paths(demo.parent / "dicom"),
            lambda: readonly.store_datasets([ds]),
            lambda: readonly.remove_series(first.study_uid, first.series_uid),
        ):
            with pytest.raises(DicomDatabaseError, match="read-only"):
                action()
    assert {p: p.read_bytes() for p in before} == before


def test_readonly_on_a_folder_that_is_not_a_database_names_it(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    write_series(plain, n=2, seed="plain")
    for folder in (plain, tmp_path / "missing"):
        with pytest.raises(DicomDatabaseError) as caught:
            LocalDicomDatabase(folder, readonly=True)
        assert str(folder) in str(caught.value) and "caseiterator import" in str(caught.value)
    assert not (tmp_path / "missing").exists()
    assert not (plain / INDEX_NAME).exists()


def test_a_folder_of_ones_own_files_is_never_made_a_database(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    write_series(mine, n=2, seed="mine")
    with pytest.raises(DicomDatabaseError, match="new or empty folder"):
        LocalDicomDatabase(mine)
    assert sorted(p.name for p in mine.iterdir()) == ["IM0001.dcm", "IM0002.dcm"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / INDEX_NAME).write_text("not sqlite")
    with pytest.raises(DicomDatabaseError, match="cannot be read"):
        LocalDicomDatabase(tmp_path / "junk")


def test_lost_index_is_rebuilt_from_the_stored_files(demo: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.import_paths(demo.parent / "dicom")
        expected = database.series_summaries()
    for index_file in db.glob(INDEX_NAME + "*"):
        index_file.unlink()
    with LocalDicomDatabase(db) as rebuilt:
        assert rebuilt.series_summaries() == expected


def test_default_database_dir_is_in_the_user_data_folder(caseiterator_data_dir: Path) -> None:
    assert default_database_dir() == caseiterator_data_dir / "dicom-db"


# -- filters and the batch file --------------------------------------------------------------


def test_qido_style_filters(demo: Path, tmp_path: Path) -> None:
    with LocalDicomDatabase(tmp_path / "db") as database:
        database.import_paths(demo.parent / "dicom")
        all_series = database.series_summaries()
        dates = sorted(s.study_date for s in all_series)

        def patients(**filters: str) -> list[str]:
            return [s.patient_id for s in database.series_summaries(filters)]

        assert patients(Modality="CT") == ["DEMO-001", "DEMO-002"]
        assert patients(Modality="MR") == []
        assert patients(PatientID="DEMO-00?") == ["DEMO-001", "DEMO-002"]
        assert patients(PatientName="demo^patient02") == ["DEMO-002"]
        assert patients(StudyDate=f"{dates[1]}-") == ["DEMO-002"]
        assert patients(StudyDate=f"-{dates[0]}") == ["DEMO-001"]
        assert patients(StudyDate=f"{dates[0]}-{dates[1]}", Modality="") == [
            "DEMO-001",
            "DEMO-002",
        ]
        assert patients(StudyDescription="*abdomen*") == ["DEMO-001", "DEMO-002"]
        assert patients(StudyDescription="*ABDOMEN*") == []  # case-sensitive, as QIDO-RS
        assert patients(SeriesInstanceUID=f"x,{all_series[1].series_uid}") == ["DEMO-002"]
        with pytest.raises(ValueError, match="unknown filter 'Modalty'"):
            database.series_summaries({"Modalty": "CT"})
        with pytest.raises(ValueError, match="StudyDate '2025'"):
            database.series_summaries({"StudyDate": "2025"})


def test_batch_file_with_query_and_series_rule(demo: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.import_paths(demo.parent / "dicom")

    def sr(k: int, ds: pydicom.Dataset) -> None:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
        ds.Modality = "SR"

    with LocalDicomDatabase(db) as database:
        database.import_paths(write_series(tmp_path / "sr", n=1, seed="sr", tweak=sr))
    source = db_source(tmp_path, db)
    cases = list(source.iter_cases())
    assert len(cases) == 2
    assert ["structured report (SR), not an image" in s.reason for s in source.skipped] == [True]
    source.close()
    source = db_source(
        tmp_path, Path("db"), '\n[source.query]\nPatientID = "DEMO-002"\n'
    )  # relative to the batch file
    assert [c.details["patient_id"] for c in source.iter_cases()] == ["DEMO-002"]
    source.close()
    source = db_source(tmp_path, db, "\n[source.series]\nmin_images = 20\n")
    assert list(source.iter_cases()) == []
    assert all("fewer than min_images = 20" in s.reason for s in source.skipped[1:])
    source.close()


def test_batch_file_mistakes_name_the_key_and_the_fix(demo: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.import_paths(demo.parent / "dicom")
    with pytest.raises(BatchDefinitionError) as caught:
        db_source(tmp_path, db, '\n[source.query]\nModalty = "CT"\n')
    assert caught.value.line == 8 and "did you mean 'Modality'" in str(caught.value)
    with pytest.raises(BatchDefinitionError, match="StudyDate '2025'") as caught:
        db_source(tmp_path, db, '\n[source.query]\nStudyDate = "2025"\n')
    with pytest.raises(BatchDefinitionError) as caught:
        db_source(tmp_path, demo.parent / "dicom")
    message = str(caught.value)
    assert caught.value.key == "source.path" and caught.value.line == 5
    assert str(demo.parent / "dicom") in message and "caseiterator import FOLDER --db" in message
    empty_db = tmp_path / "empty-db"
    LocalDicomDatabase(empty_db).close()
    with pytest.raises(BatchDefinitionError, match="holds no series"):
        list(db_source(tmp_path, empty_db).iter_cases())


# -- caseiterator import ---------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="caseiterator")
    import_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_import_command_counts_and_json(demo: Path, tmp_path: Path, capsys) -> None:
    dicom, db = demo.parent / "dicom", tmp_path / "db"
    assert run_cli("import", str(dicom), str(demo), "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "imported 24, already present 0, skipped 1"
    assert f"{demo}: not a DICOM file" in out
    assert run_cli("import", str(dicom), "--db", str(db), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["imported"], report["already_present"], report["skipped"]) == (0, 24, [])


def test_import_command_missing_folder_exit_2(tmp_path: Path, capsys) -> None:
    assert run_cli("import", str(tmp_path / "nope"), "--db", str(tmp_path / "db"), "--json") == 2
    captured = capsys.readouterr()
    assert "no such file or folder" in json.loads(captured.out)["error"]
    assert str(tmp_path / "nope") in captured.err
    assert not (tmp_path / "db").exists()


def test_import_command_defaults_to_the_user_database(demo: Path, caseiterator_data_dir) -> None:
    assert run_cli("import", str(demo.parent / "dicom")) == 0
    with LocalDicomDatabase(caseiterator_data_dir / "dicom-db", readonly=True) as database:
        assert len(database.series_summaries()) == 2


def test_a_thread_that_read_first_can_write_after_another_thread_wrote(tmp_path: Path) -> None:
    # The prefetcher's retrieval thread and the UI thread share one database: a thread whose
    # client was opened (and read) before another thread's write must still be able to write.
    first = [pydicom.dcmread(p) for p in write_series(tmp_path / "a", n=2, seed="a")]
    second = [pydicom.dcmread(p) for p in write_series(tmp_path / "b", n=2, seed="b")]
    third = [pydicom.dcmread(p) for p in write_series(tmp_path / "c", n=2, seed="c")]
    with LocalDicomDatabase(tmp_path / "db") as database:
        database.store_datasets(third)  # rows exist: the client's column probe finds one
        opened, written = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def reader_then_writer() -> None:
            try:
                database.series_summaries()
                opened.set()
                written.wait(10)
                database.store_datasets(second)
            except BaseException as exc:  # reported to the test below
                errors.append(exc)

        worker = threading.Thread(target=reader_then_writer)
        worker.start()
        assert opened.wait(10)
        database.store_datasets(first)
        written.set()
        worker.join(30)
        assert errors == []
        assert len(database.series_summaries()) == 3
