""".seg.nrrd results: what desktop 3D Slicer reads, our reader, labelmaps, file names."""

from __future__ import annotations

import os
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CaseIteratorCoreLib.batch_file import SegmentTemplate
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.mrml_segmentation import (
    BINARY_LABELMAP,
    ensure_segmentations_logic,
    parse_terminology_entry,
)
from CaseIteratorCoreLib.seg_dicom import SegmentationFileError
from CaseIteratorCoreLib.seg_nrrd import (
    read_seg_nrrd,
    result_file_name,
    safe_reader_name,
    unique_result_path,
    write_seg_nrrd,
)
from CaseIteratorCoreLib.segmentation import AlgorithmType, Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code

slicer = pytest.importorskip("slicer", reason="slicer-core is a pinned dependency")
pytestmark = pytest.mark.slicer

ANATOMY = Code("SCT", "123037004", "Anatomical Structure")
LIVER = Segment("Liver", ANATOMY, Code("SCT", "10200004", "Liver"), (221, 130, 101),
                region=Code("SCT", "818987002", "Abdomen"))  # fmt: skip
LESION = Segment("Lesion", ANATOMY, Code("SCT", "4147007", "Mass"), (216, 64, 64),
                 algorithm=AlgorithmType.SEMIAUTOMATIC, algorithm_name="Threshold")  # fmt: skip
AORTA = Segment("Aorta", ANATOMY, Code("SCT", "15825003", "Aorta"), (12, 200, 34))


def oblique() -> Geometry:
    a = np.radians(15)
    direction = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return Geometry((24, 18, 10), (-40.5, 12.25, -80.0), (0.8, 0.6, 3.0), direction)


def overlapping(geometry: Geometry) -> Segmentation:
    liver = np.zeros(geometry.shape, bool)
    liver[2:8, 3:12, 4:15] = True
    lesion = np.zeros(geometry.shape, bool)
    lesion[4:6, 5:8, 6:9] = True
    aorta = np.zeros(geometry.shape, bool)
    aorta[1:9, 15, 20] = True
    return Segmentation.from_masks([liver, lesion, aorta], geometry, [LIVER, LESION, AORTA])


def read_with_slicer(path: Path):
    """Load a .seg.nrrd with slicer-core's storage node, as desktop Slicer does."""
    ensure_segmentations_logic()
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return scene, node


def header_of(path: Path) -> dict[str, str]:
    """The NRRD header fields (the header is text before the first blank line)."""
    raw = path.read_bytes()
    text = raw[: raw.index(b"\n\n")].decode("utf-8")
    fields = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition(":=")
        if not sep:
            key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def test_slicer_reads_names_colours_terminology_and_voxels(tmp_path: Path) -> None:
    geometry = oblique()
    segmentation = overlapping(geometry)
    path = write_seg_nrrd(segmentation, tmp_path / "case_jdoe.seg.nrrd")
    _scene, node = read_with_slicer(path)
    vtk_segmentation = node.GetSegmentation()
    ids = vtk_segmentation.GetSegmentIDs()
    assert [vtk_segmentation.GetSegment(i).GetName() for i in ids] == ["Liver", "Lesion", "Aorta"]
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    for segment_id, expected, index in zip(ids, (LIVER, LESION, AORTA), range(3), strict=True):
        segment = vtk_segmentation.GetSegment(segment_id)
        np.testing.assert_allclose(segment.GetColor(), np.array(expected.color) / 255, atol=1e-3)
        entry = vtk.reference("")
        assert segment.GetTag("TerminologyEntry", entry)
        category, type_, region = parse_terminology_entry(str(entry))
        assert (category, type_, region) == (expected.category, expected.type, expected.region)
        # Voxels: the labelmap Slicer loaded, placed by its own image-to-world matrix.
        image = segment.GetRepresentation(BINARY_LABELMAP)
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        extent = image.GetExtent()
        to_grid = np.linalg.inv(geometry.ijk_to_ras()) @ world
        start = np.round(to_grid @ [extent[0], extent[2], extent[4], 1])[:3].astype(int)
        np.testing.assert_allclose(to_grid[:3, :3], np.eye(3), atol=1e-6)
        shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        block = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
        full = np.zeros(geometry.shape, bool)
        i, j, k = start
        full[k : k + shape[0], j : j + shape[1], i : i + shape[2]] = (
            block == segment.GetLabelValue()
        )
        assert np.array_equal(full, segmentation.mask(index)), expected.name
    assert vtk_segmentation.GetNumberOfLayers() == 2


def test_header_holds_the_fields_slicer_needs(tmp_path: Path) -> None:
    path = write_seg_nrrd(overlapping(oblique()), tmp_path / "case_jdoe.seg.nrrd")
    header = header_of(path)
    assert header["dimension"] == "4" and header["kinds"] == "list domain domain domain"
    assert header["space"] == "left-posterior-superior"
    assert header["Segment0_Name"] == "Liver"
    assert header["Segment1_Name"] == "Lesion"
    assert header["Segment0_NameAutoGenerated"] == "0"
    assert header["Segment0_ColorAutoGenerated"] == "0"
    assert [float(v) for v in header["Segment2_Color"].split()] == pytest.approx(
        [12 / 255, 200 / 255, 34 / 255], abs=1e-5
    )
    assert {header[f"Segment{i}_Layer"] for i in range(3)} == {"0", "1"}
    assert header["Segment0_LabelValue"] == "1"
    assert "CaseIterator.AlgorithmType:SEMIAUTOMATIC|" in header["Segment1_Tags"]
    assert "CaseIterator.AlgorithmName:Threshold|" in header["Segment1_Tags"]
    assert (
        "TerminologyEntry:Segmentation category and type - DICOM master list~"
        "SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~"
        "Anatomic codes - DICOM master list~SCT^818987002^Abdomen~^^|"
    ) in header["Segment0_Tags"]
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert "Reference image geometry" in header["Segmentation_ConversionParameters"]
    # On the whole image grid, as Slicer saves by default (plain NRRD readers line it up).
    assert header["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    assert header["sizes"] == "2 24 18 10"
    assert header["Segment1_Extent"] == "6 8 5 7 4 5"  # the lesion's painted box


def test_round_trip_through_our_reader(tmp_path: Path) -> None:
    geometry = oblique()
    segmentation = overlapping(geometry)
    path = write_seg_nrrd(segmentation, tmp_path / "r.seg.nrrd")
    back = read_seg_nrrd(path, geometry)
    assert back.segments == segmentation.segments
    for index in range(3):
        assert np.array_equal(back.mask(index), segmentation.mask(index))


def test_reads_a_file_slicer_saved_cropped_without_our_tags(tmp_path: Path) -> None:
    """A mask saved by desktop Slicer (minimum extent, Slicer's own tags) is placed exactly."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    geometry = oblique()
    ensure_segmentations_logic()
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    image = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, geometry.ijk_to_ras()[r, c])
    image.SetImageToWorldMatrix(matrix)
    image.SetExtent(0, 23, 0, 17, 0, 9)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[3:5, 10:12, 7:9] = 1
    image.GetPointData().SetScalars(numpy_to_vtk(labels.ravel(), deep=True))
    segment = slicer.vtkSegment()
    segment.SetName("Liver")
    segment.SetLabelValue(1)
    segment.AddRepresentation(BINARY_LABELMAP, image)
    node.GetSegmentation().AddSegment(segment, "Segment_1")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetCropToMinimumExtent(True)
    storage.SetFileName(str(tmp_path / "slicer.seg.nrrd"))
    assert storage.WriteData(node)
    assert header_of(tmp_path / "slicer.seg.nrrd")["sizes"] == "2 2 2"
    template = SegmentTemplate("Liver", ANATOMY, LIVER.type, LIVER.color)
    back = read_seg_nrrd(tmp_path / "slicer.seg.nrrd", geometry, templates=[template])
    assert np.array_equal(back.mask(0), labels == 1)
    # Slicer tagged it "Tissue"; the batch's template of that name gives the codes.
    assert back.segments[0].type == LIVER.type


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_plain_labelmap_values_are_the_templates(tmp_path: Path, suffix: str) -> None:
    geometry = Geometry((12, 10, 6), (-20.0, 30.0, 5.0), (0.75, 0.75, 2.5), np.eye(3))
    labels = np.zeros(geometry.shape, np.uint8)
    labels[1:3, 2:5, 2:6] = 1
    labels[4, 5:7, 7:9] = 4
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    sitk.WriteImage(image, str(tmp_path / f"mask{suffix}"))
    templates = [SegmentTemplate(s.name, s.category, s.type, s.color) for s in (LIVER, AORTA)]
    back = read_seg_nrrd(tmp_path / f"mask{suffix}", geometry, templates=templates)
    assert [s.name for s in back.segments] == ["Liver", "Aorta", "Segment 3", "Segment 4"]
    assert back.segments[1].color == AORTA.color
    assert np.array_equal(back.labelmap(), labels)


def test_labelmap_on_another_grid_fractional_or_negative_is_refused(tmp_path: Path) -> None:
    geometry = Geometry((12, 10, 6), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))

    def write(array: np.ndarray, name: str, spacing=(1.0, 1.0, 2.0)) -> Path:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(tmp_path / name))
        return tmp_path / name

    other = write(np.ones((6, 10, 12), np.uint8), "other.nrrd", spacing=(1.0, 1.0, 3.0))
    with pytest.raises(SegmentationFileError, match=r"other.nrrd: is not on the image grid: "
                       r"spacing \(1, 1, 3\) mm instead of \(1, 1, 2\) mm"):  # fmt: skip
        read_seg_nrrd(other, geometry)
    fractional = write(np.full((6, 10, 12), 0.5, np.float32), "fractional.nrrd")
    with pytest.raises(SegmentationFileError, match="fractional values"):
        read_seg_nrrd(fractional, geometry)
    negative = write(np.full((6, 10, 12), -1, np.int16), "negative.nrrd")
    with pytest.raises(SegmentationFileError, match="negative label values"):
        read_seg_nrrd(negative, geometry)
    with pytest.raises(SegmentationFileError, match="no such file"):
        read_seg_nrrd(tmp_path / "missing.nrrd", geometry)


def test_result_names_are_slicercaseiterator_names_and_distinct_per_reader() -> None:
    assert result_file_name("case001", "jdoe") == "case001_jdoe.seg.nrrd"
    assert result_file_name("case001", "j.doe-2") == "case001_j.doe-2.seg.nrrd"
    spaced, underscored = safe_reader_name("J Doe"), safe_reader_name("J_Doe")
    assert spaced != underscored and spaced.startswith("J_Doe-")
    assert "/" not in safe_reader_name("../../etc") and safe_reader_name("../../etc") != ".."
    assert safe_reader_name("") == "reader-da39a3"


def test_second_save_keeps_the_first_and_readers_never_share_a_file(tmp_path: Path) -> None:
    geometry = oblique()
    first = overlapping(geometry)
    second = Segmentation.empty(geometry, [LIVER])
    mine = unique_result_path(tmp_path, "case001", "jdoe")
    theirs = unique_result_path(tmp_path, "case001", "asmith")
    assert mine != theirs
    write_seg_nrrd(first, mine)
    write_seg_nrrd(first, theirs)
    past = time.time() - 3600
    os.utime(mine, (past, past))
    write_seg_nrrd(second, unique_result_path(tmp_path, "case001", "jdoe"))
    names = sorted(p.name for p in tmp_path.iterdir())
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(past))
    assert names == [
        "case001_asmith.seg.nrrd",
        f"case001_jdoe.{stamp}.seg.nrrd",
        "case001_jdoe.seg.nrrd",
    ]
    assert read_seg_nrrd(mine, geometry).voxel_counts() == (0,)  # the newest under the name
    kept = read_seg_nrrd(tmp_path / f"case001_jdoe.{stamp}.seg.nrrd", geometry)
    assert kept.voxel_counts() == first.voxel_counts()
    assert read_seg_nrrd(theirs, geometry).voxel_counts() == first.voxel_counts()


def test_empty_segmentation_round_trips(tmp_path: Path) -> None:
    geometry = oblique()
    path = write_seg_nrrd(Segmentation.empty(geometry, [LIVER, AORTA]), tmp_path / "e.seg.nrrd")
    back = read_seg_nrrd(path, geometry)
    assert [s.name for s in back.segments] == ["Liver", "Aorta"]
    assert back.voxel_counts() == (0, 0)


def test_provenance_fields_are_in_the_header_and_slicer_still_reads_it(tmp_path: Path) -> None:
    from datetime import datetime

    from CaseIteratorCoreLib.cases import Case, ImageFileRef, ResultTarget
    from CaseIteratorCoreLib.result_store import (
        NRRD_CASE_KEY,
        NRRD_READER_KEY,
        nrrd_fields,
        provenance_fields,
        with_nrrd_fields,
    )

    geometry = oblique()
    segmentation = overlapping(geometry)
    case = Case(
        id="case001",
        name="case001",
        index=0,
        images=(ImageFileRef(role="image", path=tmp_path / "case001.nrrd"),),
        result=ResultTarget(stem="case001", folder=tmp_path, origin="cases.csv"),
    )
    fields = provenance_fields(
        case,
        derived_from="Started from AI\nsecond line",
        saved_at=datetime(2026, 11, 25, 18, 0, tzinfo=UTC),
    )
    fields.update({NRRD_READER_KEY: "jdoe", NRRD_CASE_KEY: case.id})  # the store's own two
    path = write_seg_nrrd(segmentation, tmp_path / "r.seg.nrrd")
    path.write_bytes(with_nrrd_fields(path.read_bytes(), fields))
    ours = {k: v for k, v in nrrd_fields(path).items() if k.startswith("CaseIterator_")}
    assert ours == {
        "CaseIterator_Reader": "jdoe",
        "CaseIterator_SavedAt": "2026-11-25T18:00:00+00:00",
        "CaseIterator_Case": "case001",
        "CaseIterator_SourceImage": str(tmp_path / "case001.nrrd"),
        "CaseIterator_Software": fields["CaseIterator_Software"],
        "CaseIterator_DerivedFrom": "Started from AI second line",  # one header line
    }
    assert header_of(path)["Segment0_Name"] == "Liver"  # Slicer's own fields untouched
    back = read_seg_nrrd(path, geometry)  # slicer-core reads the file with them
    for index in range(3):
        assert np.array_equal(back.mask(index), segmentation.mask(index))
    with pytest.raises(ValueError, match="letters, digits"):
        with_nrrd_fields(path.read_bytes(), {"bad key": "x"})
