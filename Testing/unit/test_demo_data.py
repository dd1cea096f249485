"""The synthetic CT demo data: deterministic, geometrically consistent, anatomically sane."""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import tomllib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

try:
    import CaseIteratorCoreLib  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(
        0, str(Path(__file__).resolve().parents[2] / "Modules/Scripted/CaseIteratorCore")
    )

from CaseIteratorCoreLib.demo_data import (
    LABELS,
    DemoPhantom,
    phantom,
    write_ct_series,
    write_demo_batch,
    write_demo_csv_batch,
)

SMALL = {"size": 64, "n_slices": 20}
UIDS = {
    "study_uid": "1.2.826.0.1.3680043.8.498.1",
    "series_uid": "1.2.826.0.1.3680043.8.498.2",
    "frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.3",
}


def read_series(folder: Path) -> sitk.Image:
    """Read a DICOM series the way ITK-based viewers do (sorted by position, not file name)."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    return reader.Execute()


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path, with its content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def centroid(ph: DemoPhantom, label: int) -> np.ndarray:
    """LPS centre of mass (mm) of a label."""
    k, j, i = np.nonzero(ph.labels == label)
    ijk = np.array([i.mean(), j.mean(), k.mean()])
    return np.asarray(ph.origin) + ijk * np.asarray(ph.spacing)


@pytest.fixture(scope="module")
def cases() -> list[DemoPhantom]:
    return [phantom(i, size=96, n_slices=40) for i in range(4)]


# --- phantom ---------------------------------------------------------------------------------


def test_phantom_is_deterministic() -> None:
    a, b = phantom(0, **SMALL), phantom(0, **SMALL)
    assert np.array_equal(a.hu, b.hu)
    assert np.array_equal(a.labels, b.labels)
    assert (a.spacing, a.origin, a.patient_id, a.study_date) == (
        b.spacing,
        b.origin,
        b.patient_id,
        b.study_date,
    )


def test_cases_and_seeds_differ() -> None:
    a, b = phantom(0, **SMALL), phantom(1, **SMALL)
    assert a.patient_id == "DEMO-001" and b.patient_id == "DEMO-002"
    assert a.patient_name == "Demo^Patient01"
    assert not np.array_equal(a.labels, b.labels)
    other_seed = phantom(0, **SMALL, seed=7)
    assert not np.array_equal(a.labels, other_seed.labels)


def test_types_shapes_and_geometry_ranges(cases: list[DemoPhantom]) -> None:
    for ph in cases:
        assert ph.hu.dtype == np.int16 and ph.labels.dtype == np.uint8
        assert ph.hu.shape == ph.labels.shape == (40, 96, 96)
        assert set(np.unique(ph.labels)) <= set(LABELS)
        col, row, dz = ph.spacing
        assert col == row and 0.6 <= col <= 0.9
        assert dz in (1.0, 1.25, 2.0, 2.5, 3.0)
        # Centred in x and y: the image centre is at LPS (0, 0).
        assert ph.origin[0] == pytest.approx(-(96 - 1) / 2 * col, abs=1e-3)
        assert ph.origin[1] == pytest.approx(-(96 - 1) / 2 * row, abs=1e-3)
        assert ph.hu.min() >= -1024
        assert len(ph.study_date) == 8 and ph.study_date.isdigit()
        assert ph.geometry.shape == ph.hu.shape


def test_default_slice_count_covers_a_realistic_range() -> None:
    for i in range(3):
        ph = phantom(i, size=16)
        n = ph.hu.shape[0]
        assert 100 <= n <= 300
        assert n * ph.spacing[2] <= 450.0 + 1e-6


def test_anatomy_hounsfield_units(cases: list[DemoPhantom]) -> None:
    for ph in cases:
        hu, labels = ph.hu, ph.labels
        for label in (1, 2, 3, 4, 5):
            assert (labels == label).any(), f"{ph.patient_id} has no {LABELS[label]}"
        liver = hu[labels == 1]
        assert 50 <= liver.mean() <= 70
        # Lesions must stand out from the liver (hyper- ~100 or hypodense ~20 HU).
        assert np.median(np.abs(hu[labels == 2] - np.median(liver))) > 25
        assert hu[labels == 5].mean() < -700
        assert hu[labels == 4].mean() > 300
        assert 150 <= hu[labels == 3].mean() <= 250
        # Air around the patient, noisy but near -1000.
        border = np.concatenate([hu[:, 0, :].ravel(), hu[:, -1, :].ravel(), hu[:, :, 0].ravel()])
        assert border.max() < -900 and abs(border.mean() + 1000) < 10
        # Gaussian noise of about 10 HU: the spread inside the (flat) aorta.
        assert 5 <= hu[labels == 3].std() <= 15
        # A subcutaneous fat layer: plenty of voxels around -100 HU.
        assert ((hu > -130) & (hu < -70)).sum() > 0.05 * hu.size


def test_body_encloses_every_organ(cases: list[DemoPhantom]) -> None:
    for ph in cases:
        for k in range(ph.hu.shape[0]):
            tissue = sitk.GetImageFromArray((ph.hu[k] > -500).astype(np.uint8))
            body = sitk.GetArrayFromImage(sitk.BinaryFillhole(tissue))  # lungs and gas are holes
            organs = ph.labels[k] > 0
            assert not (organs & (body == 0)).any(), f"{ph.patient_id} slice {k}: organ outside"


def test_organs_are_on_the_right_side_of_the_patient(cases: list[DemoPhantom]) -> None:
    # LPS: x grows to the patient's left, y to the back, z to the head.
    for ph in cases:
        liver, aorta, spine, lungs = (centroid(ph, label) for label in (1, 3, 4, 5))
        assert liver[0] < 0, "liver must be on the patient's right (negative x)"
        assert aorta[0] > 0, "aorta must be left of the midline"
        assert aorta[1] < spine[1], "aorta must be anterior to the spine"
        assert spine[1] > 0, "spine must be posterior"
        assert lungs[2] > liver[2], "lungs must be above the liver"


def test_anatomy_scales_with_image_size() -> None:
    small, large = phantom(2, size=64, n_slices=10), phantom(2, size=256, n_slices=10)
    frac_small = (small.labels == 1).mean()
    frac_large = (large.labels == 1).mean()
    assert frac_small == pytest.approx(frac_large, rel=0.1)


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        phantom(0, size=4)
    with pytest.raises(ValueError):
        phantom(0, n_slices=0)


# --- DICOM series ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoPhantom, list[Path]]:
    ph = phantom(1, **SMALL)
    paths = write_ct_series(ph, tmp_path_factory.mktemp("series"), **UIDS, uid_seed="t")
    return ph, paths


def test_series_files_and_attributes(small_series: tuple[DemoPhantom, list[Path]]) -> None:
    ph, paths = small_series
    assert [p.name for p in paths] == [f"IM{k:04d}.dcm" for k in range(1, 21)]
    sop_uids = set()
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT" and ds.Manufacturer == "CaseIterator demo"
        assert ds.StudyInstanceUID == UIDS["study_uid"]
        assert ds.SeriesInstanceUID == UIDS["series_uid"]
        assert ds.FrameOfReferenceUID == UIDS["frame_of_reference_uid"]
        assert ds.PatientID == ph.patient_id and str(ds.PatientName) == ph.patient_name
        assert ds.StudyDate == ds.SeriesDate == ph.study_date
        assert ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        z = ph.origin[2] + k * ph.spacing[2]
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(
            [ph.origin[0], ph.origin[1], z]
        )
        assert float(ds.SliceLocation) == pytest.approx(z)
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == ph.spacing[2]
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert ds.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16,
            16,
            15,
            0,
        )
        assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (-1024.0, 1.0)
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
        assert ds.PatientPosition == "HFS" and ds.BodyPartExamined == "ABDOMEN"
        assert ds.PositionReferenceIndicator == ""
        hu = ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, ph.hu[k])
        sop_uids.add(ds.SOPInstanceUID)
    assert len(sop_uids) == len(paths)


def test_series_encoding_matches_pydicom(small_series: tuple[DemoPhantom, list[Path]]) -> None:
    # Reading a file and saving it again with pydicom gives back the very same bytes: the fast
    # writer produces standard, well-ordered DICOM.
    _, paths = small_series
    for path in (paths[0], paths[-1]):
        buffer = io.BytesIO()
        pydicom.dcmread(path).save_as(buffer, enforce_file_format=True)
        assert buffer.getvalue() == path.read_bytes()


def test_series_geometry_read_by_simpleitk(small_series: tuple[DemoPhantom, list[Path]]) -> None:
    ph, paths = small_series
    image = read_series(paths[0].parent)
    assert image.GetSize() == (64, 64, 20)
    assert image.GetSpacing() == pytest.approx(ph.spacing, abs=1e-6)
    assert image.GetOrigin() == pytest.approx(ph.origin, abs=1e-4)
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert np.array_equal(sitk.GetArrayFromImage(image), ph.hu)


def test_pixel_spacing_order_rows_then_columns(tmp_path: Path) -> None:
    # Non-square pixels catch a swapped PixelSpacing (DICOM: row spacing first).
    ph = dataclasses.replace(phantom(0, size=32, n_slices=4), spacing=(0.5, 0.8, 2.0))
    paths = write_ct_series(ph, tmp_path, **UIDS)
    ds = pydicom.dcmread(paths[0])
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.5]
    assert read_series(tmp_path).GetSpacing() == pytest.approx((0.5, 0.8, 2.0))


def test_series_bytes_are_reproducible(tmp_path: Path) -> None:
    ph = phantom(3, size=32, n_slices=6)
    first = write_ct_series(phantom(3, size=32, n_slices=6), tmp_path / "a", **UIDS, uid_seed="x")
    second = write_ct_series(ph, tmp_path / "b", **UIDS, uid_seed="x")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    other = write_ct_series(ph, tmp_path / "c", **UIDS, uid_seed="y")
    assert pydicom.dcmread(other[0]).SOPInstanceUID != pydicom.dcmread(first[0]).SOPInstanceUID


def test_rewriting_a_shorter_series_leaves_no_stale_slices(tmp_path: Path) -> None:
    write_ct_series(phantom(0, size=16, n_slices=8), tmp_path, **UIDS)
    paths = write_ct_series(phantom(0, size=16, n_slices=5), tmp_path, **UIDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert read_series(tmp_path).GetSize()[2] == 5


# --- batches ---------------------------------------------------------------------------------

EXPECTED_TOML = {
    "name": "CaseIterator demo",
    "source": {"type": "dicom-folder", "path": "dicom"},
    "output": {"format": "dicom-seg", "destination": "results"},
    "segments": [
        {
            "name": "Liver",
            "category": "SCT:123037004:Anatomical Structure",
            "type": "SCT:10200004:Liver",
            "color": "#dd8265",
        },
        {
            "name": "Liver lesion",
            "category": "SCT:49755003:Morphologically Altered Structure",
            "type": "SCT:4147007:Mass",
            "region": "SCT:10200004:Liver",
            "color": "#f0e000",
        },
        {
            "name": "Aorta",
            "category": "SCT:123037004:Anatomical Structure",
            "type": "SCT:15825003:Aorta",
            "color": "#d84040",
        },
    ],
    "prefetch": {"depth": 2},
}


def test_demo_batch(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None, str]] = []
    toml_path = write_demo_batch(
        tmp_path, 3, size=32, n_slices=6, progress=lambda d, t, m: calls.append((d, t, m))
    )
    assert toml_path == tmp_path / "demo.toml"
    assert tomllib.loads(toml_path.read_text(encoding="utf-8")) == EXPECTED_TOML
    assert calls[-1][:2] == (3, 3) and [c[0] for c in calls] == [0, 1, 2, 3]

    dicom = tmp_path / "dicom"
    patients = sorted(p.name for p in dicom.iterdir())
    assert patients == ["DEMO-001", "DEMO-002", "DEMO-003"]
    studies = set()
    for index, patient in enumerate(patients):
        (series,) = (dicom / patient).iterdir()  # one series per patient
        files = sorted(series.glob("IM*.dcm"))
        assert len(files) == 6
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.PatientID == patient
        assert str(ds.PatientName) == f"Demo^Patient{index + 1:02d}"
        studies.add(ds.StudyInstanceUID)
        image = read_series(series)
        ph = phantom(index, size=32, n_slices=6)
        assert np.array_equal(sitk.GetArrayFromImage(image), ph.hu)
    assert len(studies) == 3


def test_demo_batch_loads_as_a_batch_definition(tmp_path: Path) -> None:
    from CaseIteratorCoreLib.batch_file import load_batch

    batch = load_batch(write_demo_batch(tmp_path, 1, size=16, n_slices=3))
    assert batch.name == "CaseIterator demo"
    assert batch.source.type == "dicom-folder"
    assert batch.source.path("path") == tmp_path / "dicom"
    assert [s.name for s in batch.segments] == ["Liver", "Liver lesion", "Aorta"]
    assert batch.segments[1].region is not None and batch.segments[1].region.value == "10200004"


def test_demo_batch_is_reproducible_and_idempotent(tmp_path: Path) -> None:
    write_demo_batch(tmp_path / "a", 2, size=16, n_slices=4)
    write_demo_batch(tmp_path / "b", 2, size=16, n_slices=4)
    first = tree_bytes(tmp_path / "a")
    assert first == tree_bytes(tmp_path / "b")
    # Writing again into the same folder gives the same files; a smaller batch drops the rest.
    write_demo_batch(tmp_path / "a", 2, size=16, n_slices=4)
    assert tree_bytes(tmp_path / "a") == first
    write_demo_batch(tmp_path / "a", 1, size=16, n_slices=4)
    assert sorted(p.name for p in (tmp_path / "a" / "dicom").iterdir()) == ["DEMO-001"]


def test_demo_batch_uids_depend_on_seed_and_size(tmp_path: Path) -> None:
    # Batches with different pixels must not share UIDs (a DICOM database would mix them up).
    write_demo_batch(tmp_path / "a", 1, size=16, n_slices=2)
    write_demo_batch(tmp_path / "b", 1, size=16, n_slices=2, seed=1)
    write_demo_batch(tmp_path / "c", 1, size=24, n_slices=2)
    first = [pydicom.dcmread(next((tmp_path / d).rglob("IM0001.dcm"))) for d in "abc"]
    assert len({ds.StudyInstanceUID for ds in first}) == 3
    assert len({ds.SeriesInstanceUID for ds in first}) == 3
    assert len({ds.SOPInstanceUID for ds in first}) == 3


@pytest.mark.parametrize("image_format", ["nrrd", "nii.gz"])
def test_csv_batch(tmp_path: Path, image_format: str) -> None:
    csv_path = write_demo_csv_batch(tmp_path, 2, size=48, n_slices=12, image_format=image_format)
    assert csv_path == tmp_path / "cases.csv"
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["ID", "path", "image", "mask"]
    assert [r["path"] for r in rows] == ["case_01", "case_02"]
    for index, row in enumerate(rows):
        # Image and mask are bare names, to be joined with the case folder.
        assert row["image"] == f"image.{image_format}" and "/" not in row["image"]
        folder = csv_path.parent / row["path"]
        image = sitk.ReadImage(str(folder / row["image"]))
        mask = sitk.ReadImage(str(folder / row["mask"]))
        ph = phantom(index, size=48, n_slices=12)
        assert row["ID"] == ph.patient_id
        assert image.GetPixelID() == sitk.sitkInt16 and mask.GetPixelID() == sitk.sitkUInt8
        for img in (image, mask):
            assert img.GetSpacing() == pytest.approx(ph.spacing)
            assert img.GetOrigin() == pytest.approx(ph.origin)
            assert img.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
        assert np.array_equal(sitk.GetArrayFromImage(image), ph.hu)
        mask_array = sitk.GetArrayFromImage(mask)
        assert set(np.unique(mask_array)) == {0, 1, 2}
        assert np.array_equal(mask_array, np.where(ph.labels <= 2, ph.labels, 0))


def test_csv_batch_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_format"):
        write_demo_csv_batch(tmp_path, image_format="mha")
