"""DICOM-folder batches: recursive scan, one case per series, selection rule, skipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.loading import inspect_case, load_case
from CaseIteratorCoreLib.sources import DicomFolderSource, open_source

from series_factory import write_series


def folder_source(path: Path, rule: str = "") -> DicomFolderSource:
    if rule:
        batch_file = path.parent / "batch.toml"
        batch_file.write_text(
            f'[source]\ntype = "dicom-folder"\npath = "{path.name}"\n\n[source.series]\n{rule}\n'
        )
        source = open_source(load_batch(batch_file))
    else:
        source = open_source(load_batch(path))
    assert isinstance(source, DicomFolderSource)
    return source


def test_demo_batch_lists_one_case_per_series_and_loads_them(demo_batch: Path) -> None:
    batch = load_batch(demo_batch)
    source = open_source(batch)
    cases = list(source.iter_cases())
    assert len(cases) == 2
    assert source.skipped == []
    assert cases[0].details["modality"] == "CT" and cases[0].details["images"] == "24"
    assert cases[0].id == cases[0].images[0].series_uid
    loaded = load_case(source, cases[0])
    volume = loaded.image.volume
    files = [str(f) for f in cases[0].images[0].files]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(Path(files[0]).parent)))
    image = reader.Execute()
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))
    assert loaded.image.window == (40.0, 400.0)  # from the DICOM header
    assert volume.array.min() >= -1024 and volume.array.dtype == np.int16


def test_scan_is_recursive_and_skips_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "incoming"
    write_series(root / "p1" / "s1", n=4, seed="a")
    write_series(root / "p2" / "deep" / "s2", n=5, seed="b")
    (root / "notes.txt").write_text("hello")
    good = (root / "p1" / "s1" / "IM0001.dcm").read_bytes()
    (root / "p1" / "broken.dcm").write_bytes(good[:300])  # cut inside the header
    source = folder_source(root)
    cases = list(source.iter_cases())
    assert sorted(c.details["images"] for c in cases) == ["4", "5"]
    reasons = {Path(s.path).name: s.reason for s in source.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert "the file may be truncated" in reasons["broken.dcm"]


def test_non_image_series_is_skipped_with_its_kind(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_series(root / "ct", n=4, seed="ct")

    def as_sr(k, ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
        ds.Modality = "SR"

    write_series(root / "sr", n=1, seed="sr", tweak=as_sr)
    source = folder_source(root)
    cases = list(source.iter_cases())
    assert len(cases) == 1
    (skipped,) = source.skipped
    assert "structured report (SR), not an image" in skipped.reason


def test_series_rule_selects_by_modality_description_and_size(tmp_path: Path) -> None:
    root = tmp_path / "dicom"

    def describe(text: str, modality: str = "CT"):
        def tweak(k, ds):
            ds.SeriesDescription = text
            ds.Modality = modality

        return tweak

    write_series(root / "a", n=3, seed="a", tweak=describe("Localizer"))
    write_series(root / "b", n=6, seed="b", tweak=describe("Abdomen portal venous"))
    write_series(root / "c", n=6, seed="c", tweak=describe("Abdomen arterial"))
    write_series(root / "d", n=6, seed="d", tweak=describe("T2 portal", "MR"))
    source = folder_source(root, 'modality = "CT"\ndescription = "portal"')
    cases = list(source.iter_cases())
    assert [c.details["series_description"] for c in cases] == ["Abdomen portal venous"]
    reasons = sorted(s.reason.split("not selected: ")[1] for s in source.skipped)
    assert reasons == [
        "description 'Abdomen arterial' does not match 'portal'",
        "description 'Localizer' does not match 'portal'",
        "modality MR is not CT",
    ]
    sized = folder_source(root, 'min_images = 4\nexclude_description = "T2"')
    assert len(list(sized.iter_cases())) == 2


def test_per_study_largest(tmp_path: Path) -> None:
    root = tmp_path / "dicom"

    def same_study(k, ds):
        ds.StudyInstanceUID = "1.2.3.4"

    write_series(root / "small", n=3, seed="s", tweak=same_study)
    write_series(root / "large", n=7, seed="l", tweak=same_study)
    cases = list(folder_source(root, 'per_study = "largest"').iter_cases())
    assert [c.details["images"] for c in cases] == ["7"]


def test_empty_folder_is_an_unusable_batch(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    source = folder_source(tmp_path / "empty")
    with pytest.raises(BatchDefinitionError, match="no DICOM files found"):
        list(source.iter_cases())


def test_bad_series_inside_folder_batch_does_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    write_series(root / "good", n=4, seed="g")
    bad = write_series(root / "bad", n=6, seed="b", dz=2.0, origin=(0, 0, 0))
    bad[2].unlink()
    source = folder_source(root)
    reports = [inspect_case(source, c) for c in source.iter_cases()]
    assert sorted(r.ok for r in reports) == [False, True]
    (bad_report,) = [r for r in reports if not r.ok]
    assert "missing slice between z=2.00 mm (IM0002.dcm) and z=6.00 mm (IM0004.dcm)" in (
        bad_report.problems[0].message
    )


def test_bare_datasets_without_preamble_are_read(tmp_path: Path) -> None:
    import pydicom
    from pydicom.filewriter import write_dataset

    files = write_series(tmp_path / "dicom", n=4)
    for path in files:  # rewrite as a bare implicit-VR dataset: no preamble, no file meta
        ds = pydicom.dcmread(path)
        with path.open("wb") as handle:
            buffer = pydicom.filebase.DicomFileLike(handle)
            buffer.is_little_endian, buffer.is_implicit_VR = True, True
            del ds.file_meta
            write_dataset(buffer, ds)
    source = folder_source(tmp_path / "dicom")
    (case,) = list(source.iter_cases())
    assert source.skipped == []
    assert load_case(source, case).image.volume.geometry.size == (10, 12, 4)
