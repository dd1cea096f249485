"""Core segmentation <-> slicer-core segmentation node: shared layers, cropped extents, tags."""

from __future__ import annotations

import numpy as np
import pytest

from CaseIteratorCoreLib.geometry import Geometry, Volume
from CaseIteratorCoreLib.mrml_segmentation import (
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    BINARY_LABELMAP,
    ensure_segmentations_logic,
    node_to_segmentation,
    parse_terminology_entry,
    segmentation_to_node,
    terminology_entry,
)
from CaseIteratorCoreLib.mrml_volume import volume_to_node
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


def oblique_geometry() -> Geometry:
    a = np.radians(20)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Geometry((20, 16, 9), (-12.0, 30.0, 7.5), (0.7, 0.9, 2.5), direction)


def overlapping(geometry: Geometry) -> Segmentation:
    liver = np.zeros(geometry.shape, bool)
    liver[2:7, 3:12, 4:15] = True
    lesion = np.zeros(geometry.shape, bool)
    lesion[4:6, 5:8, 6:9] = True  # inside the liver: a second layer
    aorta = np.zeros(geometry.shape, bool)
    aorta[:, 14, 1] = True
    return Segmentation.from_masks([liver, lesion, aorta], geometry, [LIVER, LESION, AORTA])


def test_round_trip_keeps_voxels_layers_names_colours_and_tags() -> None:
    geometry = oblique_geometry()
    segmentation = overlapping(geometry)
    assert len(segmentation.layers) == 2
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(scene, Volume(np.zeros(geometry.shape, np.int16), geometry), "CT")
    node = segmentation_to_node(scene, segmentation, volume, "Segmentation")
    vtk_segmentation = node.GetSegmentation()
    assert vtk_segmentation.GetNumberOfSegments() == 3
    assert vtk_segmentation.GetNumberOfLayers() == 2  # liver and aorta share a labelmap
    ids = vtk_segmentation.GetSegmentIDs()
    assert vtk_segmentation.GetLayerIndex(ids[0]) == vtk_segmentation.GetLayerIndex(ids[2])
    lesion = vtk_segmentation.GetSegment(ids[1])
    assert lesion.GetName() == "Lesion"
    np.testing.assert_allclose(lesion.GetColor(), np.array(LESION.color) / 255)
    # Cropped to the painted voxels, as Slicer keeps its layers.
    assert lesion.GetRepresentation(BINARY_LABELMAP).GetExtent() == (6, 8, 5, 7, 4, 5)
    assert terminology_entry(LESION) in _tag(lesion, "TerminologyEntry")
    assert _tag(lesion, ALGORITHM_TYPE_TAG) == "SEMIAUTOMATIC"
    assert _tag(lesion, ALGORITHM_NAME_TAG) == "Threshold"

    back = node_to_segmentation(node, geometry)
    assert back.segments == segmentation.segments
    for index in range(3):
        assert np.array_equal(back.mask(index), segmentation.mask(index))
    assert back.overlapping


def _tag(segment, name: str) -> str:
    import vtk

    value = vtk.reference("")
    assert segment.GetTag(name, value), name
    return str(value)


def test_terminology_tag_is_what_slicer_reads() -> None:
    entry = slicer.vtkSlicerTerminologyEntry()
    text = terminology_entry(LIVER)
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(text, entry)
    assert entry.GetCategoryObject().GetCodeValue() == "123037004"
    assert entry.GetTypeObject().GetCodeMeaning() == "Liver"
    assert entry.GetRegionObject().GetCodeValue() == "818987002"
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry) == text
    assert parse_terminology_entry(text) == (LIVER.category, LIVER.type, LIVER.region)
    assert parse_terminology_entry("") == (None, None, None)


def _node_with_layer(
    scene, geometry: Geometry, block: np.ndarray, start: tuple[int, int, int], matrix=None
):
    """A segmentation node painted by hand, as an editor effect leaves it: one cropped layer."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    ensure_segmentations_logic()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    image = slicer.vtkOrientedImageData()
    m = vtk.vtkMatrix4x4()
    values = geometry.ijk_to_ras() if matrix is None else matrix
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, values[r, c])
    image.SetImageToWorldMatrix(m)
    i0, j0, k0 = start
    nk, nj, ni = block.shape
    image.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(block).ravel(), deep=True))
    for value, name in ((1, "Liver"), (2, "Painted")):
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(0.5, 0.25, 1.0)
        segment.SetLabelValue(value)
        segment.AddRepresentation(BINARY_LABELMAP, image)
        node.GetSegmentation().AddSegment(segment, name)
    return node


def test_cropped_layer_is_padded_onto_the_grid_and_outside_voxels_dropped() -> None:
    geometry = Geometry((10, 8, 6), (5.0, -3.0, 2.0), (1.0, 1.0, 2.0), np.eye(3))
    block = np.zeros((3, 4, 5), np.uint8)
    block[0, 0, 0] = 1
    block[1, 2, 3] = 2  # at i = 11: outside the 10 columns
    block[2, 3, 4] = 2  # at i = 12: outside too
    scene = slicer.vtkMRMLScene()
    node = _node_with_layer(scene, geometry, block, start=(8, 4, 3))
    back = node_to_segmentation(node, geometry)
    assert len(back.layers) == 1
    expected = np.zeros(geometry.shape, np.uint8)
    expected[3, 4, 8] = 1
    assert np.array_equal(back.layers[0], expected)
    assert back.voxel_counts() == (1, 0)
    # Slicer's 0-1 colour comes back as 0-255; without tags the default codes stand in.
    assert back.segments[1].color == (128, 64, 255)
    assert back.segments[1].algorithm == AlgorithmType.MANUAL


def test_layer_with_shifted_origin_on_the_same_grid_is_placed() -> None:
    geometry = Geometry((10, 8, 6), (5.0, -3.0, 2.0), (1.0, 1.0, 2.0), np.eye(3))
    # The layer's own origin is 2 slices up: its index 0 is the grid's slice 2.
    shifted = geometry.ijk_to_ras().copy()
    shifted[2, 3] += 4.0
    block = np.zeros((1, 1, 1), np.uint8) + 1
    node = _node_with_layer(slicer.vtkMRMLScene(), geometry, block, (1, 1, 0), matrix=shifted)
    back = node_to_segmentation(node, geometry)
    assert np.argwhere(back.layers[0]).tolist() == [[2, 1, 1]]


def test_segments_meta_fills_codes_and_effect_tags_set_the_algorithm() -> None:
    geometry = Geometry((10, 8, 6), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    scene = slicer.vtkMRMLScene()
    node = _node_with_layer(scene, geometry, np.ones((1, 1, 1), np.uint8), (0, 0, 0))
    painted = node.GetSegmentation().GetSegment("Painted")
    painted.SetTag(ALGORITHM_TYPE_TAG, "SEMIAUTOMATIC")
    painted.SetTag(ALGORITHM_NAME_TAG, "Islands")
    back = node_to_segmentation(node, geometry, segments_meta=[LIVER])
    liver, other = back.segments
    assert (liver.category, liver.type, liver.region) == (LIVER.category, LIVER.type, LIVER.region)
    assert liver.color == (128, 64, 255)  # the reader's colour in the node wins
    assert other.algorithm == AlgorithmType.SEMIAUTOMATIC and other.algorithm_name == "Islands"


def test_layer_on_another_grid_is_refused() -> None:
    geometry = Geometry((10, 8, 6), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    finer = Geometry((20, 16, 12), (0.0, 0.0, 0.0), (0.5, 0.5, 0.5), np.eye(3))
    node = _node_with_layer(
        slicer.vtkMRMLScene(), geometry, np.ones((1, 1, 1), np.uint8), (0, 0, 0),
        matrix=finer.ijk_to_ras(),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not on the image grid"):
        node_to_segmentation(node, geometry)


def test_volume_node_on_another_grid_is_refused() -> None:
    geometry = oblique_geometry()
    other = Geometry(geometry.size, (0.0, 0.0, 0.0), geometry.spacing, np.eye(3))
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(scene, Volume(np.zeros(other.shape, np.int16), other), "CT")
    with pytest.raises(ValueError, match="not on the segmentation's grid"):
        segmentation_to_node(scene, overlapping(geometry), volume, "Segmentation")


def test_empty_segmentation_round_trips() -> None:
    geometry = oblique_geometry()
    empty = Segmentation.empty(geometry, [LIVER, AORTA])
    node = segmentation_to_node(slicer.vtkMRMLScene(), empty, None, "Empty")
    back = node_to_segmentation(node, geometry)
    assert [s.name for s in back.segments] == ["Liver", "Aorta"]
    assert back.voxel_counts() == (0, 0)
