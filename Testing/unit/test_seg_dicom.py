"""DICOM SEG results: valid (dciodvfy), read back voxel-exact by dcmqi, highdicom and us.

Every kind (BINARY, LABELMAP) on every source geometry: axial ascending (the demo phantom),
descending z, oblique, anisotropic with frames that are not byte-aligned, and a multi-frame
(enhanced) source whose frames are stored in reverse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from CaseIteratorCoreLib.batch_file import SegmentTemplate
from CaseIteratorCoreLib.demo_data import phantom, write_ct_series
from CaseIteratorCoreLib.dicom_series import DicomSeriesInfo
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.image_files import _geometry_of, read_dicom_files
from CaseIteratorCoreLib.seg_dicom import (
    LABEL_MAP_SEGMENTATION_STORAGE,
    SEGMENTATION_STORAGE,
    SegKind,
    SegmentationFileError,
    build_dicom_seg,
    dicom_seg_geometry,
    next_series_number,
    read_dicom_seg,
    seg_creator,
    seg_references_series,
    write_dicom_seg,
)
from CaseIteratorCoreLib.segmentation import AlgorithmType, Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code

from series_factory import write_series

BIN = Path(sys.executable).parent
ANATOMY = Code("SCT", "123037004", "Anatomical Structure")
LIVER = Segment("Liver", ANATOMY, Code("SCT", "10200004", "Liver"), (221, 130, 101),
                region=Code("SCT", "818987002", "Abdomen"))  # fmt: skip
LESION = Segment(
    "Lesion",
    Code("SCT", "49755003", "Morphologically Altered Structure"),
    Code("SCT", "4147007", "Mass"),
    (216, 64, 64),
    algorithm=AlgorithmType.SEMIAUTOMATIC,
    algorithm_name="Threshold",
)
AORTA = Segment("Aorta", ANATOMY, Code("SCT", "15825003", "Aorta"), (12, 200, 34))


@dataclass
class Source:
    geometry: Geometry
    info: DicomSeriesInfo
    files: list[Path]


def _source(files: list[Path]) -> Source:
    geometry, info, problems = read_dicom_files(files, pixels=False)
    assert problems == [] and isinstance(geometry, Geometry) and info is not None
    return Source(geometry, info, files)


def _rotation(degrees_x: float, degrees_z: float) -> tuple[float, ...]:
    ax, az = np.radians(degrees_x), np.radians(degrees_z)
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rotation = rx @ rz
    return (*rotation[:, 0], *rotation[:, 1])


def make_source(kind: str, folder: Path) -> Source:
    """A source series with the geometry ``kind`` names."""
    if kind == "axial-phantom":
        ph = phantom(1, size=32, n_slices=12)
        files = write_ct_series(ph, folder, study_uid=generate_uid(), series_uid=generate_uid(),
                                frame_of_reference_uid=generate_uid())  # fmt: skip
        return _source(files)
    if kind == "descending-z":
        return _source(write_series(folder, n=7, orientation=(1, 0, 0, 0, -1, 0), seed=kind))
    if kind == "oblique":
        return _source(
            write_series(folder, n=6, orientation=_rotation(25, 10), origin=(3, -7, 40), seed=kind)
        )
    if kind == "anisotropic":
        # 11 x 7 = 77 pixels a frame: BINARY frames are not byte-aligned.
        return _source(
            write_series(folder, n=5, rows=11, cols=7, pixel_spacing=(0.55, 1.3), dz=3.3,
                         seed=kind)
        )  # fmt: skip
    if kind == "multi-frame":
        singles = write_series(folder / "singles", n=6, rows=11, cols=7, seed=kind)
        datasets = [pydicom.dcmread(f) for f in reversed(singles)]
        enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
            datasets, generate_uid(), 5, generate_uid(), 1
        )
        path = folder / "enhanced" / "CT.dcm"
        path.parent.mkdir(parents=True)
        enhanced.save_as(path)
        source = _source([path])
        assert source.info.frame_numbers[0] == 6  # slice 0 is the last frame
        return source
    raise ValueError(kind)


def make_segmentation(geometry: Geometry, *, overlap: bool) -> Segmentation:
    """Three segments with empty slices between them; the lesion inside the liver if overlap."""
    nk, nj, ni = geometry.shape
    liver = np.zeros(geometry.shape, bool)
    liver[1 : nk - 2, 1 : nj - 2, 1 : ni - 2] = True
    liver[nk // 2, 2:4, 2:4] = False  # a hole
    lesion = np.zeros(geometry.shape, bool)
    lesion[2:4, nj // 2 : nj // 2 + 2, ni // 2 : ni // 2 + 2] = True
    if not overlap:
        liver &= ~lesion
    aorta = np.zeros(geometry.shape, bool)
    aorta[:, nj - 1, 0] = True
    aorta[nk - 1, :, ni - 1] = True
    return Segmentation.from_masks([liver, lesion, aorta], geometry, [LIVER, LESION, AORTA])


def dciodvfy(path: Path) -> list[str]:
    """Run dciodvfy; fail on any error line, return the warning lines."""
    done = subprocess.run(
        [str(BIN / "dciodvfy"), str(path)], capture_output=True, text=True, check=False
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert errors == [], f"dciodvfy errors in {path.name}:\n" + "\n".join(errors)
    return [line for line in lines if line.startswith("Warning")]


def dcmqi_masks(path: Path, geometry: Geometry, tmp: Path) -> dict[int, np.ndarray]:
    """Read a SEG with dcmqi's segimage2itkimage: segment number -> mask on ``geometry``."""
    out = tmp / f"dcmqi-{path.stem}"
    out.mkdir()
    done = subprocess.run(
        [str(BIN / "segimage2itkimage"), "--inputDICOM", str(path), "--outputDirectory",
         str(out), "--prefix", "s"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((out / "s-meta.json").read_text())
    masks = {}
    for index, attributes in enumerate(meta["segmentAttributes"], start=1):
        image = sitk.ReadImage(str(out / f"s-{index}.nrrd"))
        array = sitk.GetArrayFromImage(image)
        grid = _geometry_of(image)
        offset = grid.voxel_offset_in(geometry)
        assert offset is not None, f"dcmqi's grid {grid.describe()} is not on the source grid"
        i, j, k = offset
        for item in attributes:
            full = np.zeros(geometry.shape, bool)
            nk, nj, ni = array.shape
            full[k : k + nk, j : j + nj, i : i + ni] = array == item["labelID"]
            masks[item["labelID"]] = full
    return masks


def highdicom_masks(path: Path, source: Source) -> dict[int, np.ndarray]:
    """Read a SEG with highdicom, by source instance (or frame): segment number -> mask."""
    seg = hd.seg.segread(path)
    info = source.info
    numbers = seg.segment_numbers
    if info.frame_numbers[0] is None:
        pixels = seg.get_pixels_by_source_instance(
            list(info.sop_instance_uids), segment_numbers=numbers
        )
    else:
        pixels = seg.get_pixels_by_source_frame(
            info.sop_instance_uids[0],
            [int(f) for f in info.frame_numbers],  # type: ignore[arg-type]
            segment_numbers=numbers,
        )
    return {n: pixels[..., index] > 0 for index, n in enumerate(numbers)}


GEOMETRIES = ("axial-phantom", "descending-z", "oblique", "anisotropic", "multi-frame")


@pytest.mark.parametrize("kind", [SegKind.BINARY, SegKind.LABELMAP])
@pytest.mark.parametrize("geometry_kind", GEOMETRIES)
def test_seg_is_valid_and_read_back_voxel_exact_by_dcmqi_highdicom_and_us(
    tmp_path: Path, geometry_kind: str, kind: SegKind
) -> None:
    source = make_source(geometry_kind, tmp_path / "series")
    overlap = kind == SegKind.BINARY
    segmentation = make_segmentation(source.geometry, overlap=overlap)
    assert segmentation.overlapping == overlap
    path = write_dicom_seg(
        build_dicom_seg(segmentation, source.info, reader="Dr Who", series_number=7, kind=kind),
        tmp_path / "out" / "seg.dcm",
    )
    warnings = dciodvfy(path)
    assert not [w for w in warnings if "Content Creator" in w]  # the reader is a proper PN
    expected = {n: segmentation.mask(n - 1) for n in (1, 2, 3)}
    for name, masks in (
        ("dcmqi", dcmqi_masks(path, source.geometry, tmp_path)),
        ("highdicom", highdicom_masks(path, source)),
    ):
        assert sorted(masks) == [1, 2, 3], name
        for number, mask in expected.items():
            assert np.array_equal(masks[number], mask), f"{name}: segment {number} differs"
    back = read_dicom_seg(path, source.info, source.geometry)
    assert [s.name for s in back.segments] == ["Liver", "Lesion", "Aorta"]
    for index in range(3):
        assert np.array_equal(back.mask(index), segmentation.mask(index))
    assert back.overlapping == overlap


def test_frames_sit_on_the_source_slices_and_reference_them(tmp_path: Path) -> None:
    source = make_source("descending-z", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=True)
    ds = build_dicom_seg(segmentation, source.info, reader="jdoe", series_number=3)
    path = write_dicom_seg(ds, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    headers = {h.SOPInstanceUID: h for h in (pydicom.dcmread(f) for f in source.files)}
    # Empty frames are left out: one frame per segment and painted slice.
    painted = sum(
        int(np.count_nonzero(segmentation.mask(i).reshape(7, -1).any(axis=1))) for i in range(3)
    )
    assert ds.NumberOfFrames == painted == len(ds.PerFrameFunctionalGroupsSequence)
    for item in ds.PerFrameFunctionalGroupsSequence:
        reference = item.DerivationImageSequence[0].SourceImageSequence[0]
        header = headers[reference.ReferencedSOPInstanceUID]
        assert reference.ReferencedSOPClassUID == header.SOPClassUID
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, [float(v) for v in header.ImagePositionPatient])
    shared = ds.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [1, 0, 0, 0, -1, 0],
    )
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.info.series_uid
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == set(headers)
    assert seg_references_series(ds, source.info.series_uid)
    assert not seg_references_series(ds, generate_uid())
    # Patient and study come from the source; the SEG is a new series of that study.
    any_header = next(iter(headers.values()))
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate"):
        assert ds[keyword].value == any_header[keyword].value
    assert ds.FrameOfReferenceUID == any_header.FrameOfReferenceUID
    assert ds.SeriesInstanceUID != any_header.SeriesInstanceUID


def test_multi_frame_source_frames_are_referenced_by_number(tmp_path: Path) -> None:
    source = make_source("multi-frame", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    ds = build_dicom_seg(segmentation, source.info, reader="jdoe", series_number=3)
    ds = pydicom.dcmread(write_dicom_seg(ds, tmp_path / "seg.dcm"))
    enhanced = pydicom.dcmread(source.files[0])
    frame_positions = [
        [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
        for f in enhanced.PerFrameFunctionalGroupsSequence
    ]
    for item in ds.PerFrameFunctionalGroupsSequence:
        reference = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID
        frame = int(reference.ReferencedFrameNumber)
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, frame_positions[frame - 1])
    (series,) = ds.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [
        enhanced.SOPInstanceUID
    ]


def test_every_save_is_a_new_series_by_the_reader(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    first = build_dicom_seg(segmentation, source.info, reader="Ann Smith", series_number=4)
    second = build_dicom_seg(
        segmentation, source.info, reader="Ann Smith", series_number=next_series_number([1, 4])
    )
    assert first.SeriesInstanceUID != second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert (first.SeriesNumber, second.SeriesNumber) == (4, 5)
    assert first.SeriesDescription == "Segmentation by Ann Smith"
    assert str(first.ContentCreatorName) == "Ann Smith^"
    assert seg_creator(pydicom.dcmread(write_dicom_seg(first, tmp_path / "a.dcm"))) == "Ann Smith"
    custom = build_dicom_seg(
        segmentation, source.info, reader="x", series_number=1, series_description="AI check"
    )
    assert custom.SeriesDescription == "AI check"


def test_next_series_number() -> None:
    assert next_series_number([]) == 1
    assert next_series_number([1, "3", None, "", 2]) == 4
    assert next_series_number(["abc", 1000]) == 1001


def test_segment_metadata_codes_colours_and_algorithm(tmp_path: Path) -> None:
    source = make_source("oblique", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=True)
    ds = build_dicom_seg(segmentation, source.info, reader="jdoe", series_number=3)
    ds = pydicom.dcmread(write_dicom_seg(ds, tmp_path / "seg.dcm"))
    liver, lesion, aorta = ds.SegmentSequence
    assert liver.SegmentLabel == "Liver" and liver.SegmentAlgorithmType == "MANUAL"
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    assert liver.AnatomicRegionSequence[0].CodeValue == "818987002"
    assert "SegmentationAlgorithmIdentificationSequence" not in liver
    assert lesion.SegmentAlgorithmType == "SEMIAUTOMATIC"
    algorithm = lesion.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "Threshold"
    family = algorithm.AlgorithmFamilyCodeSequence[0]
    assert (family.CodingSchemeDesignator, family.CodeValue) == ("DCM", "123105")  # histogram
    assert "AnatomicRegionSequence" not in aorta
    for item, segment in zip(ds.SegmentSequence, (LIVER, LESION, AORTA), strict=True):
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.subtract(rgb, segment.color)).max() <= 1
    back = read_dicom_seg(ds, source.info, source.geometry)
    assert back.segments == (LIVER, LESION, AORTA)
    assert ds.SegmentsOverlap == "YES"


def test_several_tools_named_keep_the_first_tools_algorithm_family(tmp_path: Path) -> None:
    """The editor names every semi-automatic tool used ("Threshold, Islands"): the family is
    the first one's (histogram analysis), not the generic default."""
    import dataclasses

    source = make_source("anisotropic", tmp_path / "series")
    mask = np.zeros(source.geometry.shape, bool)
    mask[1:3, 2:6, 2:6] = True
    lesion = dataclasses.replace(LESION, algorithm_name="Threshold, Islands")
    segmentation = Segmentation.from_masks([mask], source.geometry, [lesion])
    ds = build_dicom_seg(segmentation, source.info, reader="jdoe", series_number=3)
    algorithm = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "Threshold, Islands"
    family = algorithm.AlgorithmFamilyCodeSequence[0]
    assert (family.CodingSchemeDesignator, family.CodeValue) == ("DCM", "123105")


def test_labelmap_refuses_overlap_naming_the_segments(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=True)
    with pytest.raises(ValueError, match=r"'Liver' and 'Lesion' overlap.*write a BINARY SEG"):
        build_dicom_seg(
            segmentation, source.info, reader="x", series_number=1, kind=SegKind.LABELMAP
        )


def test_labelmap_accepts_layers_that_do_not_overlap_and_is_smaller(tmp_path: Path) -> None:
    source = make_source("axial-phantom", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    # Slicer may keep non-overlapping segments in separate layers: still one label per voxel.
    masks = [segmentation.mask(i) for i in range(3)]
    separate = Segmentation(
        segmentation.geometry,
        segmentation.segments,
        tuple(m.astype(np.uint8) for m in masks),
        ((0, 1), (1, 1), (2, 1)),
    )
    labelmap = build_dicom_seg(separate, source.info, reader="x", series_number=1, kind="LABELMAP")
    binary = build_dicom_seg(separate, source.info, reader="x", series_number=1)
    assert labelmap.SOPClassUID == LABEL_MAP_SEGMENTATION_STORAGE
    assert binary.SOPClassUID == SEGMENTATION_STORAGE
    assert binary.SegmentsOverlap == "NO"
    small = write_dicom_seg(labelmap, tmp_path / "labelmap.dcm").stat().st_size
    large = write_dicom_seg(binary, tmp_path / "binary.dcm").stat().st_size
    assert small < large
    back = read_dicom_seg(tmp_path / "labelmap.dcm", source.info, source.geometry)
    assert np.array_equal(back.labelmap(), segmentation.labelmap())


def test_empty_segments_and_empty_segmentation_are_valid(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    empty = Segmentation.empty(source.geometry, [LIVER, LESION])
    for kind in SegKind:
        ds = build_dicom_seg(empty, source.info, reader="x", series_number=1, kind=kind)
        path = write_dicom_seg(ds, tmp_path / f"{kind}.dcm")
        dciodvfy(path)
        back = read_dicom_seg(path, source.info, source.geometry)
        assert back.voxel_counts() == (0, 0)
        assert [s.name for s in back.segments] == ["Liver", "Lesion"]
    assert hd.seg.segread(tmp_path / "BINARY.dcm").number_of_segments == 2


def test_derived_from_headers_are_copied_verbatim(tmp_path: Path) -> None:
    # Slightly irregular positions (within the loader's tolerance): the SEG uses the stored ones.
    positions = [(0.0, 0.0, 2.0 * k + (0.004 if k == 2 else 0.0)) for k in range(5)]
    files = write_series(tmp_path / "series", n=5, positions=positions)
    source = _source(files)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    segmentation = make_segmentation(source.geometry, overlap=False)
    ds = build_dicom_seg(
        segmentation, source.info, reader="x", series_number=1, derived_from=headers
    )
    by_uid = {h.SOPInstanceUID: h for h in headers}
    for item in ds.PerFrameFunctionalGroupsSequence:
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        stored = [str(v) for v in by_uid[uid].ImagePositionPatient]
        assert [str(v) for v in item.PlanePositionSequence[0].ImagePositionPatient] == stored


def test_segmentation_not_on_the_source_is_refused(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    other = Geometry((7, 11, 4), (0, 0, 0), (1, 1, 1), np.eye(3))
    with pytest.raises(ValueError, match=r"4 slices but series .* has 5"):
        build_dicom_seg(Segmentation.empty(other, [LIVER]), source.info, reader="x",
                        series_number=1)  # fmt: skip
    with pytest.raises(ValueError, match="no segment"):
        build_dicom_seg(Segmentation.empty(source.geometry, []), source.info, reader="x",
                        series_number=1)  # fmt: skip


def test_write_is_atomic_and_replaces_whole(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    target = tmp_path / "results" / "seg.dcm"
    target.parent.mkdir()
    target.write_bytes(b"x" * 10_000_000)  # a bigger old file
    ds = build_dicom_seg(segmentation, source.info, reader="x", series_number=1)
    write_dicom_seg(ds, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["seg.dcm"]  # no temporary left
    assert pydicom.dcmread(target).SOPInstanceUID == ds.SOPInstanceUID
    assert target.stat().st_mode & 0o044  # readable like any saved file, not private


def test_reads_a_seg_made_by_dcmqi(tmp_path: Path) -> None:
    """A SEG from another producer (here 3D Slicer's exporter) comes back on the grid."""
    source = make_source("oblique", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    labels = segmentation.labelmap()
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(source.geometry.origin)
    image.SetSpacing(source.geometry.spacing)
    image.SetDirection(tuple(source.geometry.direction.ravel()))
    sitk.WriteImage(image, str(tmp_path / "labels.nrrd"))
    meta = {
        "ContentCreatorName": "Doe^Jane",
        "SeriesDescription": "dcmqi",
        "SeriesNumber": "9",
        "InstanceNumber": "1",
        "segmentAttributes": [[
            {"labelID": n, "SegmentLabel": s.name, "SegmentAlgorithmType": "MANUAL",
             "SegmentedPropertyCategoryCodeSequence": {"CodeValue": s.category.value,
                "CodingSchemeDesignator": s.category.scheme, "CodeMeaning": s.category.meaning},
             "SegmentedPropertyTypeCodeSequence": {"CodeValue": s.type.value,
                "CodingSchemeDesignator": s.type.scheme, "CodeMeaning": s.type.meaning},
             "recommendedDisplayRGBValue": list(s.color)}
            for n, s in enumerate(segmentation.segments, start=1)
        ]],
    }  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    done = subprocess.run(
        [str(BIN / "itkimage2segimage"), "--inputImageList", str(tmp_path / "labels.nrrd"),
         "--inputDICOMDirectory", str(tmp_path / "series"), "--outputDICOM",
         str(tmp_path / "dcmqi.dcm"), "--inputMetadata", str(tmp_path / "meta.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ds = pydicom.dcmread(tmp_path / "dcmqi.dcm")
    assert seg_creator(ds) == "Doe^Jane"
    assert seg_references_series(ds, source.info.series_uid)
    back = read_dicom_seg(ds, source.info, source.geometry)
    assert np.array_equal(back.labelmap(), labels)
    assert [s.name for s in back.segments] == ["Liver", "Lesion", "Aorta"]
    assert back.segments[2].color == AORTA.color


def test_templates_order_the_segments_and_fill_missing_ones(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    path = write_dicom_seg(
        build_dicom_seg(segmentation, source.info, reader="x", series_number=1), tmp_path / "s.dcm"
    )
    spleen = SegmentTemplate("Spleen", ANATOMY, Code("SCT", "78961009", "Spleen"), (157, 108, 162))
    aorta = SegmentTemplate("Main artery", ANATOMY, AORTA.type, (1, 2, 3))  # matched by its code
    back = read_dicom_seg(path, source.info, source.geometry, templates=[aorta, spleen])
    assert [s.name for s in back.segments] == ["Aorta", "Spleen", "Liver", "Lesion"]
    assert back.segments[0].color == AORTA.color  # the SEG's colour wins
    assert back.voxel_counts()[1] == 0
    assert np.array_equal(back.mask(0), segmentation.mask(2))
    assert np.array_equal(back.mask(2), segmentation.mask(0))


def test_seg_on_another_grid_or_frame_of_reference_is_refused(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    other = make_source("oblique", tmp_path / "other")
    segmentation = make_segmentation(source.geometry, overlap=False)
    path = write_dicom_seg(
        build_dicom_seg(segmentation, source.info, reader="x", series_number=1), tmp_path / "s.dcm"
    )
    with pytest.raises(SegmentationFileError, match=r"frame of reference .*drawn on another image"):
        read_dicom_seg(path, other.info, other.geometry)
    with pytest.raises(SegmentationFileError, match=r"not on the image grid: orientation"):
        read_dicom_seg(path, None, other.geometry)
    shifted = Geometry(
        source.geometry.size,
        tuple(np.add(source.geometry.origin, (0.3, 0, 0))),
        source.geometry.spacing,
        source.geometry.direction,
    )
    with pytest.raises(SegmentationFileError, match="lies between the image's voxels"):
        read_dicom_seg(path, None, shifted)
    with pytest.raises(SegmentationFileError, match="is not a DICOM SEG"):
        read_dicom_seg(source.files[0], None, source.geometry)


def test_seg_own_geometry_spans_its_frames(tmp_path: Path) -> None:
    source = make_source("oblique", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    lesion_only = Segmentation.from_masks([segmentation.mask(1)], source.geometry, [LESION])
    path = write_dicom_seg(
        build_dicom_seg(lesion_only, source.info, reader="x", series_number=1), tmp_path / "s.dcm"
    )
    own = dicom_seg_geometry(path)
    assert own.size == (source.geometry.size[0], source.geometry.size[1], 2)  # slices 2 and 3
    assert own.voxel_offset_in(source.geometry) == (0, 0, 2)
    back = read_dicom_seg(path, None, own)
    assert np.array_equal(back.mask(0), lesion_only.mask(0)[2:4])


@pytest.mark.parametrize("geometry_kind", ["oblique", "multi-frame"])
def test_same_frames_and_references_as_highdicom_constructor(
    tmp_path: Path, geometry_kind: str
) -> None:
    """Ours and highdicom's own constructor, from the same source headers, frame by frame."""
    source = make_source(geometry_kind, tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=True)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in source.files]
    for header in headers:
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                        "StudyTime", "ReferringPhysicianName"):  # fmt: skip
            header.setdefault(keyword, "")
    ours = pydicom.dcmread(
        write_dicom_seg(
            build_dicom_seg(segmentation, source.info, reader="x", series_number=1,
                            derived_from=headers),
            tmp_path / "ours.dcm",
        )
    )  # fmt: skip
    if source.info.frame_numbers[0] is None:
        by_uid = {h.SOPInstanceUID: h for h in headers}
        headers = [by_uid[uid] for uid in source.info.sop_instance_uids]
        array = np.stack([segmentation.mask(i) for i in range(3)], axis=-1)
    else:  # highdicom wants the multi-frame source's frames in stored order
        order = np.argsort([int(f) for f in source.info.frame_numbers])  # type: ignore[arg-type]
        array = np.stack([segmentation.mask(i)[order] for i in range(3)], axis=-1)
    descriptions = [
        hd.seg.SegmentDescription(
            n, s.name, hd.sr.CodedConcept(s.category.value, s.category.scheme, s.category.meaning),
            hd.sr.CodedConcept(s.type.value, s.type.scheme, s.type.meaning), "MANUAL",
        )
        for n, s in enumerate(segmentation.segments, start=1)
    ]  # fmt: skip
    theirs = hd.seg.Segmentation(
        headers, array.astype(np.uint8), "BINARY", descriptions, generate_uid(), 1,
        generate_uid(), 1, "x", "x", "1", "1",
    )  # fmt: skip
    theirs = pydicom.dcmread(write_dicom_seg(theirs, tmp_path / "theirs.dcm"))

    def frames(ds: pydicom.Dataset) -> dict:
        seg = hd.seg.Segmentation.from_dataset(ds)
        pixels = seg.pixel_array.reshape(int(ds.NumberOfFrames), -1)
        out = {}
        for item, bits in zip(ds.PerFrameFunctionalGroupsSequence, pixels, strict=True):
            ref = item.DerivationImageSequence[0].SourceImageSequence[0]
            key = (
                int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                ref.ReferencedSOPInstanceUID,
                int(ref.get("ReferencedFrameNumber", 0) or 0),
                tuple(
                    round(float(v), 4) for v in item.PlanePositionSequence[0].ImagePositionPatient
                ),
            )
            out[key] = bits.tobytes()
        return out

    assert frames(ours) == frames(theirs)
    for keyword in ("SegmentsOverlap", "FrameOfReferenceUID", "Rows", "Columns"):
        assert ours[keyword].value == theirs[keyword].value
    shared_ours = ours.SharedFunctionalGroupsSequence[0]
    shared_theirs = theirs.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in shared_ours.PixelMeasuresSequence[0].PixelSpacing],
        [float(v) for v in shared_theirs.PixelMeasuresSequence[0].PixelSpacing],
    )

    def referenced(ds: pydicom.Dataset) -> set[str]:
        (series,) = ds.ReferencedSeriesSequence
        return {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence}

    assert referenced(ours) == referenced(theirs)


def test_reads_a_fractional_seg_as_above_half(tmp_path: Path) -> None:
    """An AI tool's FRACTIONAL SEG (probabilities): voxels above half the maximum are inside."""
    source = make_source("descending-z", tmp_path / "series")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in source.files]
    for header in headers:
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                        "StudyTime", "ReferringPhysicianName"):  # fmt: skip
            header.setdefault(keyword, "")
    by_uid = {h.SOPInstanceUID: h for h in headers}
    headers = [by_uid[uid] for uid in source.info.sop_instance_uids]
    probability = np.zeros(source.geometry.shape, np.float32)
    probability[2:5, 3:7, 2:6] = 0.9
    probability[3, 3:7, 2:6] = 0.4  # below half: outside
    description = hd.seg.SegmentDescription(
        1, "Liver", hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure"),
        hd.sr.CodedConcept("10200004", "SCT", "Liver"), "AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            "nnU-Net", codes.cid7162.ArtificialIntelligence, "2"
        ),
    )  # fmt: skip
    seg = hd.seg.Segmentation(
        headers, probability, "FRACTIONAL", [description], generate_uid(), 1, generate_uid(), 1,
        "AI", "AI", "1", "1",
    )  # fmt: skip
    back = read_dicom_seg(write_dicom_seg(seg, tmp_path / "ai.dcm"), source.info, source.geometry)
    assert np.array_equal(back.mask(0), probability > 0.5)
    (segment,) = back.segments
    assert segment.algorithm == AlgorithmType.AUTOMATIC and segment.algorithm_name == "nnU-Net"
