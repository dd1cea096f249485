"""Geometry and content checks of DICOM series: each bad input names what is wrong and where."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from CaseIteratorCoreLib.geometry import Geometry, Volume
from CaseIteratorCoreLib.image_files import dicom_files_in, read_dicom_files
from CaseIteratorCoreLib.problems import ProblemCode

from series_factory import pattern, write_series


def read(files):
    volume, info, problems = read_dicom_files(files)
    return volume, info, problems


def only_problem(problems, code: ProblemCode):
    assert [p.code for p in problems] == [code], [p.message for p in problems]
    return problems[0].message


def test_good_series_loads_with_simpleitk_geometry(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=6, origin=(-5.0, -4.0, 10.0), dz=2.5)
    volume, info, problems = read(files)
    assert problems == []
    assert isinstance(volume, Volume)
    image = sitk.ReadImage([str(f) for f in files])
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.direction.ravel(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))
    assert volume.geometry.spacing == pytest.approx((0.7, 0.8, 2.5))
    assert info.sop_instance_uids[0] != info.sop_instance_uids[1]


def test_shuffled_and_descending_files_are_sorted_along_the_normal(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=5, dz=-3.0)  # written head to feet
    volume, _, problems = read(list(reversed(files)))
    assert problems == []
    assert volume.geometry.origin[2] == pytest.approx(10.0 - 4 * 3.0)
    np.testing.assert_array_equal(volume.array, pattern(5, 12, 10)[::-1])


def test_oblique_series_matches_simpleitk(tmp_path: Path) -> None:
    a, b = np.radians(20), 0.3
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rotation = rz @ rx
    orientation = (*rotation[:, 0], *rotation[:, 1])
    files = write_series(tmp_path, n=5, orientation=orientation, dz=1.5)
    volume, _, problems = read(files)
    assert problems == []
    image = sitk.ReadImage([str(f) for f in files])
    np.testing.assert_allclose(volume.geometry.direction.ravel(), image.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-3)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))


def test_missing_slice_names_the_positions_and_files(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=8, origin=(0, 0, 10.0), dz=2.5)
    files[3].unlink()
    del files[3]
    volume, _, problems = read(files)
    assert volume is None
    message = only_problem(problems, ProblemCode.MISSING_SLICE)
    assert "1 missing slice between z=15.00 mm (IM0003.dcm) and z=20.00 mm (IM0005.dcm)" in message


def test_nonuniform_spacing_is_refused_with_the_step(tmp_path: Path) -> None:
    zs = [0.0, 2.0, 4.0, 6.3, 8.3, 10.3]
    files = write_series(tmp_path, n=6, positions=[(0, 0, z) for z in zs])
    volume, _, problems = read(files)
    message = only_problem(problems, ProblemCode.NONUNIFORM_SPACING)
    assert "from 2.000 to 2.300 mm" in message
    assert "IM0003.dcm (z=4.00 mm) and IM0004.dcm (z=6.30 mm)" in message
    assert volume is None


def test_rounding_of_positions_is_tolerated(tmp_path: Path) -> None:
    zs = [0.0, 1.2501, 2.4999, 3.7502, 5.0]
    files = write_series(tmp_path, n=5, positions=[(0, 0, z) for z in zs])
    volume, _, problems = read(files)
    assert problems == [] and volume.geometry.spacing[2] == pytest.approx(1.25)


def test_mixed_matrix_size_names_the_odd_file(tmp_path: Path) -> None:
    def tweak(k, ds):
        if k == 4:
            ds.Rows, ds.Columns = 6, 5
            ds.PixelData = np.zeros((6, 5), "<i2").tobytes()

    files = write_series(tmp_path, n=6, tweak=tweak)
    _, _, problems = read(files)
    message = only_problem(problems, ProblemCode.MIXED_SIZE)
    assert "5 are 10x12, 1 are 5x6" in message and "IM0005.dcm" in message


def test_mixed_orientation_names_the_odd_file(tmp_path: Path) -> None:
    def tweak(k, ds):
        if k == 2:
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]

    files = write_series(tmp_path, n=5, tweak=tweak)
    _, _, problems = read(files)
    message = only_problem(problems, ProblemCode.MIXED_ORIENTATION)
    assert "2 orientations" in message and "(IM0003.dcm)" in message


def test_gantry_tilt_is_reported_with_the_angle(tmp_path: Path) -> None:
    tilt = np.radians(15)
    positions = [(0, k * 2.0 * np.sin(tilt), k * 2.0 * np.cos(tilt)) for k in range(6)]
    files = write_series(tmp_path, n=6, positions=positions)
    _, _, problems = read(files)
    message = only_problem(problems, ProblemCode.GANTRY_TILT)
    assert "gantry tilt of 15.0°" in message


def test_two_volumes_in_one_series_are_reported(tmp_path: Path) -> None:
    positions = [(0, 0, 2.0 * (k % 4)) for k in range(8)]
    files = write_series(tmp_path, n=8, positions=positions)
    _, _, problems = read(files)
    message = only_problem(problems, ProblemCode.DUPLICATE_POSITION)
    assert "more than one volume" in message


def test_single_slice_series_is_not_a_volume(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=1)
    _, _, problems = read(files)
    assert "single-slice series (IM0001.dcm)" in only_problem(problems, ProblemCode.SINGLE_SLICE)


def test_segmentation_is_not_an_image(tmp_path: Path) -> None:
    def tweak(k, ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
        ds.Modality = "SEG"

    files = write_series(tmp_path, n=3, tweak=tweak)
    _, _, problems = read(files)
    message = only_problem(problems, ProblemCode.NOT_AN_IMAGE)
    assert "segmentation (SEG)" in message


def test_missing_geometry_names_the_file(tmp_path: Path) -> None:
    def tweak(k, ds):
        if k == 1:
            del ds.ImagePositionPatient

    files = write_series(tmp_path, n=4, tweak=tweak)
    _, _, problems = read(files)
    assert "IM0002.dcm" in only_problem(problems, ProblemCode.MISSING_GEOMETRY)


def test_truncated_file_is_named(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=5)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 60])
    volume, _, problems = read(files)
    assert volume is None
    assert any("IM0003.dcm" in p.message for p in problems), [p.message for p in problems]
    assert all(p.code is ProblemCode.UNREADABLE_FILE for p in problems)
    assert "IM0003.dcm: pixel data is truncated (180 of 240 bytes)" in problems[0].message


def test_headers_only_does_not_decode(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=5)
    grid, _, problems = read_dicom_files(files, pixels=False)
    assert problems == [] and isinstance(grid, Geometry) and grid.size == (10, 12, 5)


def test_rescale_slope_and_intercept_are_applied_per_slice(tmp_path: Path) -> None:
    def tweak(k, ds):
        ds.RescaleSlope, ds.RescaleIntercept = ("2", "-100") if k == 1 else ("0.5", "10")

    files = write_series(tmp_path, n=3, tweak=tweak)
    volume, _, problems = read(files)
    assert problems == []
    raw = pattern(3, 12, 10).astype(float)
    expected = np.stack([raw[0] * 0.5 + 10, raw[1] * 2 - 100, raw[2] * 0.5 + 10])
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, expected)


def test_unsigned_with_intercept_gives_hounsfield_units(tmp_path: Path) -> None:
    def tweak(k, ds):
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.PixelData = (pattern(3, 12, 10)[k].astype(np.int32) + 1024).astype("<u2").tobytes()

    files = write_series(tmp_path, n=3, tweak=tweak)
    volume, _, problems = read(files)
    assert problems == [] and volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, pattern(3, 12, 10))


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"],
    ids=["RLE", "JPEG-LS", "JPEG2000"],
)
def test_compressed_series_decode_to_the_same_voxels(tmp_path: Path, syntax: str) -> None:
    files = write_series(tmp_path, n=3, rows=64, cols=48)  # JPEG 2000 needs a few resolutions
    import pydicom

    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    volume, _, problems = read(files)
    assert problems == []
    np.testing.assert_array_equal(volume.array, pattern(3, 64, 48))


def test_undecodable_transfer_syntax_is_refused_clearly(tmp_path: Path) -> None:
    import pydicom

    files = write_series(tmp_path, n=3)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 video: no decoder
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x0a" + b"\x00" * 20])
        ds["PixelData"].VR = "OB"
        ds.save_as(path)
    volume, _, problems = read(files)
    assert volume is None
    assert problems and problems[0].code is ProblemCode.UNDECODABLE
    assert "MPEG2" in problems[0].message and "IM0001.dcm" in problems[0].message


def test_enhanced_multiframe_ct_loads_like_the_classic_series(tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom

    files = write_series(tmp_path / "classic", n=6, dz=1.5, origin=(-3, -2, 40))
    classic, _, _ = read(files)
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Manufacturer = "test"
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.StudyTime, ds.StudyID, ds.AccessionNumber = "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.ContentDate, ds.ContentTime = "20260101", "120000"
        ds.AcquisitionNumber, ds.KVP, ds.BodyPartExamined = 1, "120", "ABDOMEN"
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    volume, info, problems = read([path])
    assert problems == []
    np.testing.assert_array_equal(volume.array, classic.array)
    np.testing.assert_allclose(volume.geometry.origin, classic.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(volume.geometry.spacing, classic.geometry.spacing, atol=1e-4)
    assert info.frame_numbers[0] is not None


def test_real_ct_from_pydicom_matches_simpleitk(pydicom_series: Path) -> None:
    folder = pydicom_series / "98892001" / "CT5N"
    groups, skipped = dicom_files_in(folder)
    assert len(groups) == 1 and skipped == []
    volume, _, problems = read(next(iter(groups.values())))
    assert problems == []
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))


def test_real_irregular_ct_reports_the_gap(pydicom_series: Path) -> None:
    groups, _ = dicom_files_in(pydicom_series / "77654033" / "CT2")
    _, _, problems = read(next(iter(groups.values())))
    message = only_problem(problems, ProblemCode.MISSING_SLICE)
    assert "between z=-99.48 mm (17106) and z=103.02 mm (17136)" in message


def test_real_radial_mr_reports_mixed_orientation(pydicom_series: Path) -> None:
    groups, _ = dicom_files_in(pydicom_series / "98892003" / "MR700")
    _, _, problems = read(next(iter(groups.values())))
    assert "7 orientations" in only_problem(problems, ProblemCode.MIXED_ORIENTATION)


def _scout_first(k: int, ds: pydicom.Dataset) -> None:
    """Slice 0 is a lateral scout kept in the series (some CT scanners do this)."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if k == 0 else "AXIAL"]
    if k == 0:
        ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        ds.ImagePositionPatient = ["0", "-50", "100"]


def test_a_localizer_in_the_series_is_left_out_with_a_warning(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=6, tweak=_scout_first)
    volume, info, problems = read(files)
    assert [p.code for p in problems] == [ProblemCode.LOCALIZER_LEFT_OUT]
    assert not problems[0].is_error and "IM0001.dcm" in problems[0].message
    np.testing.assert_array_equal(volume.array, pattern(6, 12, 10)[1:])
    scout_uid = pydicom.dcmread(files[0]).SOPInstanceUID
    assert scout_uid not in info.sop_instance_uids and len(info.sop_instance_uids) == 5


def test_a_series_of_localizers_only_is_not_emptied(tmp_path: Path) -> None:
    def all_scouts(k: int, ds: pydicom.Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        if k == 0:
            ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]

    volume, _, problems = read(write_series(tmp_path, n=3, tweak=all_scouts))
    assert volume is None and problems[0].code is ProblemCode.MIXED_ORIENTATION
