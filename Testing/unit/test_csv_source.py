"""CSV table batches, SlicerCaseIterator-compatible: columns, path resolution, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.errors import BatchDefinitionError, CaseLoadError
from CaseIteratorCoreLib.loading import inspect_case, load_case
from CaseIteratorCoreLib.problems import ProblemCode, Severity
from CaseIteratorCoreLib.sources import CsvTableSource, open_source

from series_factory import write_series


def write_image(
    path: Path,
    shape=(6, 8, 10),
    spacing=(0.9, 0.8, 2.0),
    origin=(1.0, 2.0, 3.0),
    value: int = 0,
    dtype=np.int16,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(np.prod(shape)).reshape(shape) % 50 + value).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def open_csv(path: Path) -> CsvTableSource:
    source = open_source(load_batch(path))
    assert isinstance(source, CsvTableSource)
    return source


def test_path_resolution_follows_slicercaseiterator(tmp_path: Path) -> None:
    absolute = write_image(tmp_path / "abs" / "a.nrrd")
    write_image(tmp_path / "root" / "b.nii.gz")
    write_image(tmp_path / "c.mha")
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "d.nrrd")
    table = tmp_path / "cases.csv"
    table.write_text(
        f"ID,path,image\np1,,{absolute}\np2,root,b.nii.gz\np3,,c.mha\np4,{elsewhere},d.nrrd\n"
    )
    cases = list(open_csv(table).iter_cases())
    assert [c.id for c in cases] == ["p1", "p2", "p3", "p4"]
    assert [c.image.path for c in cases] == [
        absolute,
        tmp_path / "root" / "b.nii.gz",
        tmp_path / "c.mha",
        elsewhere / "d.nrrd",
    ]
    assert all(not c.problems for c in cases)
    assert cases[1].result.stem == "b" and cases[1].result.folder == tmp_path / "root"


def test_configured_columns_and_extra_images_and_masks(tmp_path: Path) -> None:
    write_image(tmp_path / "t1.nrrd")
    write_image(tmp_path / "t2.nrrd", value=5)
    write_image(tmp_path / "lab.nrrd", dtype=np.uint8)
    (tmp_path / "cases.csv").write_text("patient;scan;second;label\nA;t1.nrrd;t2.nrrd;lab.nrrd\n")
    (tmp_path / "batch.toml").write_text(
        '[source]\ntype = "csv"\npath = "cases.csv"\nimage_column = "scan"\n'
        'mask_column = "label"\nadditional_image_columns = ["second"]\n'
    )
    source = open_source(load_batch(tmp_path / "batch.toml"))
    (case,) = list(source.iter_cases())
    assert case.id == "A"
    assert [r.role for r in case.images] == ["image", "second"]
    assert [r.role for r in case.masks] == ["label"]
    loaded = load_case(source, case)
    assert loaded.problems == ()
    assert len(loaded.extra_images) == 1 and len(loaded.masks) == 1
    assert loaded.masks[0].labels.shape == loaded.image.volume.array.shape


def test_missing_image_column_is_a_batch_error_naming_the_columns(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("ID,scan\nA,x.nrrd\n")
    (tmp_path / "batch.toml").write_text('[source]\ntype = "csv"\npath = "cases.csv"\n')
    with pytest.raises(BatchDefinitionError) as info:
        open_source(load_batch(tmp_path / "batch.toml"))
    assert "has no column 'image'" in str(info.value) and "ID, scan" in str(info.value)
    assert info.value.key == "source.image_column"


def test_wrong_configured_column_names_the_key_line(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("ID,image\nA,x.nrrd\n")
    (tmp_path / "batch.toml").write_text(
        '[source]\ntype = "csv"\npath = "cases.csv"\nmask_column = "seg"\n'
    )
    with pytest.raises(BatchDefinitionError) as info:
        open_source(load_batch(tmp_path / "batch.toml"))
    assert info.value.line == 4 and "no column 'seg'" in str(info.value)


def test_missing_file_and_empty_cell_are_case_problems_batch_goes_on(
    tmp_path: Path,
) -> None:
    write_image(tmp_path / "ok.nrrd")
    table = tmp_path / "cases.csv"
    table.write_text("ID,image\nA,ok.nrrd\nB,gone.nrrd\nC,\n")
    source = open_csv(table)
    cases = list(source.iter_cases())
    assert [c.id for c in cases] == ["A", "B", "C"]
    reports = [inspect_case(source, c) for c in cases]
    assert reports[0].ok
    assert reports[1].problems[0].code is ProblemCode.MISSING_FILE
    assert f"row 3 of cases.csv, column 'image': file not found: {tmp_path / 'gone.nrrd'}" in (
        reports[1].problems[0].message
    )
    assert "row 4 of cases.csv: no image given in column 'image'" in reports[2].problems[0].message
    with pytest.raises(CaseLoadError, match="file not found"):
        load_case(source, cases[1])


def test_ids_fall_back_to_image_names_and_stay_unique(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "scan.nii.gz")
    write_image(tmp_path / "b" / "scan.nii.gz")
    table = tmp_path / "cases.csv"
    table.write_text("image\na/scan.nii.gz\nb/scan.nii.gz\n")
    cases = list(open_csv(table).iter_cases())
    assert [c.id for c in cases] == ["scan", "scan-2"]


def test_mismatched_mask_is_reported_not_resampled(tmp_path: Path) -> None:
    write_image(tmp_path / "img.nrrd")
    write_image(tmp_path / "mask.nrrd", shape=(6, 8, 10), spacing=(1.0, 1.0, 2.0), dtype=np.uint8)
    table = tmp_path / "cases.csv"
    table.write_text("ID,image,mask\nA,img.nrrd,mask.nrrd\n")
    source = open_csv(table)
    (case,) = list(source.iter_cases())
    report = inspect_case(source, case)
    (problem,) = report.problems
    assert problem.code is ProblemCode.MASK_GEOMETRY_MISMATCH
    assert problem.severity is Severity.WARNING
    assert (
        "mask.nrrd" in problem.message
        and "spacing (1, 1, 2) mm instead of (0.9, 0.8, 2) mm" in (problem.message)
    )
    loaded = load_case(source, case)
    assert loaded.masks == () and loaded.problems == (problem,)


def test_cropped_mask_on_the_image_grid_is_placed(tmp_path: Path) -> None:
    write_image(tmp_path / "img.nrrd", origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 2.0))
    mask = np.ones((2, 3, 4), np.uint8)
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((5.0, 4.0, 6.0))  # voxel (5, 4, 3) of the image
    sitk.WriteImage(image, str(tmp_path / "crop.seg.nrrd"))
    table = tmp_path / "cases.csv"
    table.write_text("ID,image,mask\nA,img.nrrd,crop.seg.nrrd\n")
    source = open_csv(table)
    (case,) = list(source.iter_cases())
    loaded = load_case(source, case)
    labels = loaded.masks[0].labels
    assert labels.shape == (6, 8, 10) and labels.sum() == 24
    assert labels[3:5, 4:7, 5:9].all()


def test_dicom_series_folder_as_image_cell(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", n=4)
    table = tmp_path / "cases.csv"
    table.write_text("ID,image\nA,ct\n")
    source = open_csv(table)
    (case,) = list(source.iter_cases())
    loaded = load_case(source, case)
    assert loaded.image.volume.geometry.size == (10, 12, 4)
    assert loaded.image.dicom is not None and len(loaded.image.dicom.sop_instance_uids) == 4


def test_folder_with_two_series_is_a_case_problem(tmp_path: Path) -> None:
    write_series(tmp_path / "ct" / "one", n=3, seed="1")
    write_series(tmp_path / "ct" / "two", n=3, seed="2")
    table = tmp_path / "cases.csv"
    table.write_text("ID,image\nA,ct\n")
    source = open_csv(table)
    (case,) = list(source.iter_cases())
    (problem,) = inspect_case(source, case).problems
    assert problem.code is ProblemCode.MULTIPLE_SERIES and "holds 2 DICOM series" in problem.message


def test_unreadable_image_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\n")
    table = tmp_path / "cases.csv"
    table.write_text("ID,image\nA,broken.nrrd\n")
    source = open_csv(table)
    (case,) = list(source.iter_cases())
    (problem,) = inspect_case(source, case).problems
    assert problem.code is ProblemCode.UNREADABLE_FILE and "broken.nrrd" in problem.message


def _sheared_nifti(path: Path, shear: float) -> None:
    """A NIfTI whose sform's second axis leans by ``shear`` (SimpleITK never writes one)."""
    import gzip
    import struct

    sitk.WriteImage(sitk.Image(8, 8, 4, sitk.sitkInt16), str(path.with_suffix("")))
    raw = bytearray(path.with_suffix("").read_bytes())
    struct.pack_into("<h", raw, 254, 1)  # sform_code: scanner
    rows = ((-1, shear, 0, 0), (0, -1, 0, 0), (0, 0, 1, 0))
    for at, row in zip((280, 296, 312), rows, strict=True):
        struct.pack_into("<4f", raw, at, *row)
    path.write_bytes(gzip.compress(bytes(raw)))
    path.with_suffix("").unlink()


def test_a_sheared_nifti_loads_with_a_warning_that_says_so(tmp_path: Path) -> None:
    """ITK squares a sheared grid and only prints on the console: the reader is told."""
    _sheared_nifti(tmp_path / "sheared.nii.gz", 0.2)
    _sheared_nifti(tmp_path / "square.nii.gz", 0.0)
    table = tmp_path / "cases.csv"
    table.write_text("image\nsheared.nii.gz\nsquare.nii.gz\n")
    source = open_source(load_batch(table))
    sheared, square = list(source.iter_cases())
    loaded = load_case(source, sheared)
    (problem,) = loaded.problems
    assert problem.code is ProblemCode.SHEARED_GRID and problem.severity is Severity.WARNING
    assert "sheared.nii.gz" in problem.message and "sheared by 11.31°" in problem.message
    assert [p.code for p in inspect_case(source, sheared).problems] == [ProblemCode.SHEARED_GRID]
    assert load_case(source, square).problems == ()
