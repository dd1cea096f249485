"""Where results are saved and where a reader resumes from, for the local input modes.

The DICOMweb destination (outbox, server search) is tested against Orthanc in
``Testing/integration/test_outbox.py``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from CaseIteratorCoreLib.batch_file import BatchDefinition, OutputSpec, load_batch
from CaseIteratorCoreLib.cases import Case, ImageFileRef, ResultTarget
from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase
from CaseIteratorCoreLib.result_store import (
    NRRD_CASE_KEY,
    NRRD_READER_KEY,
    ResultKind,
    ResultStore,
    ResultStoreError,
    ResumeOrigin,
    same_reader,
)
from CaseIteratorCoreLib.sources import open_source

from series_factory import write_series


def _patient(k: int, ds: pydicom.Dataset) -> None:
    """What highdicom needs of its source images beyond series_factory's slices."""
    ds.PatientBirthDate, ds.PatientSex, ds.StudyTime = "", "O", "120000"
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dicom" / "case1"
    write_series(folder, n=6, rows=12, cols=10, tweak=_patient)
    return folder


def source_datasets(folder: Path) -> list[Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("IM*.dcm"))]


def make_seg(
    source: list[Dataset],
    reader: str,
    series_number: int,
    *,
    content_time: str | None = None,
) -> Dataset:
    """A BINARY SEG by ``reader`` over ``source`` (what the SEG writer of the app produces)."""
    mask = np.zeros((len(source), source[0].Rows, source[0].Columns), dtype=bool)
    mask[1:4, 2:8, 2:6] = True
    segment = hd.seg.SegmentDescription(
        1, "Liver", codes.SCT.Organ, codes.SCT.Liver, hd.seg.SegmentAlgorithmTypeValues.MANUAL
    )
    seg = hd.seg.Segmentation(
        source,
        mask,
        "BINARY",
        [segment],
        hd.UID(),
        series_number,
        hd.UID(),
        1,
        "CaseIterator",
        "CaseIterator",
        "0.1",
        "1",
        content_creator_name=f"{reader}^",
    )
    if content_time is not None:
        seg.ContentDate, seg.ContentTime = "20260102", content_time
    return seg


def nrrd_file(path: Path, fill: int) -> Path:
    """A tiny real NRRD label file (what the seg.nrrd writer hands over)."""
    image = sitk.GetImageFromArray(np.full((2, 3, 4), fill, np.uint8))
    sitk.WriteImage(image, str(path))
    return path


def csv_batch(tmp_path: Path) -> tuple[BatchDefinition, Case]:
    images = tmp_path / "images"
    images.mkdir()
    nrrd_file(images / "liver01.nrrd", 0)
    nrrd_file(images / "liver01_mask.nrrd", 1)
    table = tmp_path / "batch.csv"
    table.write_text("image,mask\nimages/liver01.nrrd,images/liver01_mask.nrrd\n")
    batch = load_batch(table)
    [case] = list(open_source(batch).iter_cases())
    return batch, case


def test_file_batch_saves_beside_the_image_as_slicercaseiterator(tmp_path: Path) -> None:
    batch, case = csv_batch(tmp_path)
    store = ResultStore(batch, "alice")
    saved = store.save(case, seg_nrrd_path=nrrd_file(tmp_path / "tmp.seg.nrrd", 3))
    target = tmp_path / "images" / "liver01_alice.seg.nrrd"
    assert saved.files == (target,)
    assert saved.refs == (str(target),)
    image = sitk.ReadImage(str(target))  # still a valid NRRD with the owner fields added
    assert sitk.GetArrayFromImage(image).max() == 3
    assert image.GetMetaData(NRRD_READER_KEY) == "alice"
    assert image.GetMetaData(NRRD_CASE_KEY) == case.id
    assert (tmp_path / "tmp.seg.nrrd").is_file()  # the given file is left alone
    # The reader saves again: the newest keeps the name, the earlier one a dated name.
    store.save(case, seg_nrrd_path=nrrd_file(tmp_path / "tmp.seg.nrrd", 4))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(target))).max() == 4
    [previous] = [p for p in (tmp_path / "images").glob("*.seg.nrrd") if p != target]
    assert re.fullmatch(r"liver01_alice\.\d{8}T\d{6}\.seg\.nrrd", previous.name)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(previous))).max() == 3
    assert store.find_latest(case).path == target
    assert not list((tmp_path / "images").glob(".*partial"))


def test_never_overwrites_another_readers_file(tmp_path: Path) -> None:
    batch, case = csv_batch(tmp_path)
    images = tmp_path / "images"
    ResultStore(batch, "bob").save(case, seg_nrrd_path=nrrd_file(tmp_path / "b.nrrd", 7))
    bobs = (images / "liver01_bob.seg.nrrd").read_bytes()
    ResultStore(batch, "alice").save(case, seg_nrrd_path=nrrd_file(tmp_path / "a.nrrd", 5))
    assert (images / "liver01_bob.seg.nrrd").read_bytes() == bobs
    # Names that differ only in characters a file name cannot hold get distinct files.
    first = ResultStore(batch, "J Doe").save(case, seg_nrrd_path=nrrd_file(tmp_path / "1.nrrd", 1))
    second = ResultStore(batch, "J_Doe").save(case, seg_nrrd_path=nrrd_file(tmp_path / "2.nrrd", 2))
    assert first.files[0].name.startswith("liver01_J_Doe-")  # a hash of the full name
    assert second.files == (images / "liver01_J_Doe.seg.nrrd",)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(first.files[0]))).max() == 1
    assert ResultStore(batch, "J Doe").find_latest(case).path == first.files[0]
    assert ResultStore(batch, "J_Doe").find_latest(case).path == second.files[0]
    assert ResultStore(batch, "bob").find_latest(case).path == images / "liver01_bob.seg.nrrd"


def test_two_cases_with_one_stem_in_a_shared_folder_keep_their_own_files(tmp_path: Path) -> None:
    batch_file = tmp_path / "b.toml"
    batch_file.write_text(
        '[source]\ntype = "csv"\npath = "t.csv"\n[output]\ndestination = "results"\n'
    )
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        nrrd_file(tmp_path / folder / "ct.nrrd", 0)
    (tmp_path / "t.csv").write_text("ID,image\none,a/ct.nrrd\ntwo,b/ct.nrrd\n")
    batch = load_batch(batch_file)
    one, two = list(open_source(batch).iter_cases())
    assert one.result.stem == two.result.stem == "ct"
    store = ResultStore(batch, "alice")
    first = store.save(one, seg_nrrd_path=nrrd_file(tmp_path / "1.nrrd", 1))
    second = store.save(two, seg_nrrd_path=nrrd_file(tmp_path / "2.nrrd", 2))
    assert first.files == (tmp_path / "results" / "ct_alice.seg.nrrd",)
    assert second.files == (tmp_path / "results" / "ct_alice.2.seg.nrrd",)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(first.files[0]))).max() == 1
    assert store.find_latest(one).path == first.files[0]
    assert store.find_latest(two).path == second.files[0]
    store.save(two, seg_nrrd_path=nrrd_file(tmp_path / "3.nrrd", 3))  # its own file again
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(first.files[0]))).max() == 1
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(second.files[0]))).max() == 3


def test_file_of_unknown_origin_is_kept_and_still_resumed_from(tmp_path: Path) -> None:
    batch, case = csv_batch(tmp_path)
    images = tmp_path / "images"
    # Written by SlicerCaseIterator (no owner fields): by its name it is alice's.
    legacy = nrrd_file(images / "liver01_alice.seg.nrrd", 9)
    before = legacy.read_bytes()
    store = ResultStore(batch, "alice")
    point = store.find_latest(case)
    assert point.path == legacy and point.origin is ResumeOrigin.FILE
    assert point.kind is ResultKind.SEG_NRRD
    assert point.describe().startswith("resumed from your save of ")
    os.utime(legacy, (time.time() - 60, time.time() - 60))
    saved = store.save(case, seg_nrrd_path=nrrd_file(tmp_path / "new.nrrd", 2))
    assert legacy.read_bytes() == before  # kept: it may be someone else's
    assert saved.files == (images / "liver01_alice.2.seg.nrrd",)
    assert store.find_latest(case).path == saved.files[0]  # the newest wins


def test_presegmentation_is_the_start_until_the_reader_saves(tmp_path: Path) -> None:
    batch, case = csv_batch(tmp_path)
    store = ResultStore(batch, "alice")
    point = store.find_latest(case)
    assert point.origin is ResumeOrigin.PRESEGMENTATION
    assert point.path == tmp_path / "images" / "liver01_mask.nrrd"
    assert point.kind is ResultKind.LABELMAP
    assert point.reader is None
    assert "pre-segmentation liver01_mask.nrrd" in point.describe()
    store.save(case, seg_nrrd_path=nrrd_file(tmp_path / "x.nrrd", 1))
    assert store.find_latest(case).origin is ResumeOrigin.FILE


def test_existing_seg_given_as_mask_is_a_dicom_presegmentation(
    tmp_path: Path, series_dir: Path
) -> None:
    ai = make_seg(source_datasets(series_dir), "AI model", 900)
    ai_path = tmp_path / "ai.dcm"
    ai.save_as(ai_path)
    batch, _ = csv_batch(tmp_path)
    case = Case(
        id="c1",
        name="c1",
        index=0,
        images=(ImageFileRef("image", series_dir),),
        masks=(ImageFileRef("mask", ai_path),),
        result=ResultTarget(stem="c1", folder=tmp_path),
    )
    point = ResultStore(batch, "alice").find_latest(case)
    assert point.origin is ResumeOrigin.PRESEGMENTATION
    assert point.kind is ResultKind.DICOM_SEG
    assert point.path == ai_path


def test_dicom_folder_seg_beside_the_series_each_save_a_new_file(series_dir: Path) -> None:
    batch = load_batch(series_dir.parent)
    [case] = list(open_source(batch).iter_cases())
    source = source_datasets(series_dir)
    alice = ResultStore(batch, "alice")
    assert alice.find_latest(case) is None
    first = alice.save(case, seg_dataset=make_seg(source, "alice", 101, content_time="100000"))
    second = alice.save(case, seg_dataset=make_seg(source, "alice", 102, content_time="140200"))
    assert first.files[0].parent == series_dir
    assert first.files[0].name == f"{case.result.stem}_alice.seg.dcm"
    assert second.files[0].name == f"{case.result.stem}_alice.2.seg.dcm"
    assert first.files[0].is_file()  # never overwritten
    assert second.refs[-1] == second.sop_instance_uid
    # Bob's result, even under a name that looks like alice's, is never alice's resume point.
    bobs = make_seg(source, "bob", 103, content_time="235900")
    bobs.save_as(series_dir / f"{case.result.stem}_alice.7.seg.dcm")
    point = alice.find_latest(case)
    assert point.path == second.files[0]
    assert point.origin is ResumeOrigin.FILE and point.kind is ResultKind.DICOM_SEG
    assert point.series_number == 102
    assert point.saved_at.strftime("%H:%M") == "14:02"
    assert "of 2026-01-02 14:02" in point.describe()
    # The folder scan lists the SEGs as skipped, not as cases.
    assert [c.id for c in open_source(batch).iter_cases()] == [case.id]


def test_seg_of_another_series_is_refused(series_dir: Path, tmp_path: Path) -> None:
    batch = load_batch(series_dir.parent)
    [case] = list(open_source(batch).iter_cases())
    other = tmp_path / "other"
    write_series(other, n=4, rows=12, cols=10, tweak=_patient, seed="other")
    seg = make_seg(source_datasets(other), "alice", 101)
    with pytest.raises(ResultStoreError, match=r"references series .* not the case's series"):
        ResultStore(batch, "alice").save(case, seg_dataset=seg)
    assert not list(series_dir.glob("*.seg.dcm"))


def test_destination_folder(series_dir: Path, tmp_path: Path) -> None:
    batch_file = tmp_path / "b.toml"
    batch_file.write_text(
        f'[source]\ntype = "dicom-folder"\npath = "{series_dir.parent}"\n'
        '[output]\ndestination = "results"\n'
    )
    batch = load_batch(batch_file)
    [case] = list(open_source(batch).iter_cases())
    saved = ResultStore(batch, "alice").save(
        case, seg_dataset=make_seg(source_datasets(series_dir), "alice", 101)
    )
    assert saved.files[0].parent == tmp_path / "results"
    assert f"folder {tmp_path / 'results'}" == saved.place
    assert ResultStore(batch, "alice").find_latest(case).path == saved.files[0]
    assert ResultStore(batch, "bob").find_latest(case) is None


def test_dicom_database_batch_stores_the_seg_in_the_database(
    series_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    with LocalDicomDatabase(db) as database:
        database.import_paths([series_dir])
    batch_file = tmp_path / "db.toml"
    batch_file.write_text(f'[source]\ntype = "dicom-db"\npath = "{db}"\n')
    batch = load_batch(batch_file)
    [case] = list(open_source(batch).iter_cases())
    source = source_datasets(series_dir)
    alice = ResultStore(batch, "alice")
    older = alice.save(case, seg_dataset=make_seg(source, "alice", 101, content_time="090000"))
    newer = alice.save(case, seg_dataset=make_seg(source, "alice", 102, content_time="100000"))
    ResultStore(batch, "bob").save(
        case, seg_dataset=make_seg(source, "bob", 103, content_time="235959")
    )
    assert newer.files[0].is_relative_to(db)
    assert "local DICOM database" in newer.place
    assert older.files[0] != newer.files[0]
    point = alice.find_latest(case)
    assert point.origin is ResumeOrigin.DATABASE
    assert point.sop_instance_uid == newer.sop_instance_uid
    assert pydicom.dcmread(point.path).SOPInstanceUID == newer.sop_instance_uid
    # Still one case: SEG series are not images.
    assert [c.id for c in open_source(batch).iter_cases()] == [case.id]


def test_slicer_database_is_never_written_to(tmp_path: Path, series_dir: Path) -> None:
    from CaseIteratorCoreLib.batch_file import SourceSpec

    slicer_db = tmp_path / "SlicerDICOMDatabase"
    batch = BatchDefinition(
        name="slicer",
        path=slicer_db,
        source=SourceSpec("slicer-db", {"path": str(slicer_db)}, tmp_path, slicer_db),
        output=OutputSpec(),
    )
    case = Case(
        id="s1",
        name="s1",
        index=0,
        images=(),
        result=ResultTarget(stem="s1", folder=slicer_db / "dicom" / "x", origin=str(slicer_db)),
    )
    store = ResultStore(batch, "alice", results_dir=tmp_path / "results")
    assert store.folder_for(case) == tmp_path / "results"
    saved = store.save(case, seg_nrrd_path=nrrd_file(tmp_path / "r.nrrd", 1))
    assert saved.files == (tmp_path / "results" / "s1_alice.seg.nrrd",)
    assert not slicer_db.exists()
    assert store.find_latest(case).path == saved.files[0]


def test_default_results_folder_is_per_user_and_per_batch(
    tmp_path: Path, caseiterator_data_dir: Path
) -> None:
    batch, _ = csv_batch(tmp_path)
    folder = ResultStore(batch, "alice").results_dir
    assert folder.parent == caseiterator_data_dir / "results"
    assert batch.name in folder.name


def test_same_reader(tmp_path: Path) -> None:
    assert same_reader("alice^", "alice")
    assert same_reader("Alice", "alice")
    assert same_reader("Doe^Jane", "Doe^Jane")
    assert same_reader("J Doe^", "J^Doe")  # how the SEG writer stores "J^Doe"
    assert not same_reader("alice2", "alice")
    assert not same_reader("", "alice")
    assert not same_reader(None, "alice")
    with pytest.raises(ValueError, match="reader"):
        ResultStore(csv_batch(tmp_path)[0], " ")
