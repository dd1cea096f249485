"""A core :class:`~.segmentation.Segmentation` as a slicer-core segmentation node, and back.

GUI thread only (VTK is not thread-safe); no Qt. Both directions copy arrays, nothing more:
segments that share a label layer in the core share one "Binary labelmap" image in the node
(as Slicer stores them, each with its label value), and reading a node back takes each shared
layer's scalars (``vtk_to_numpy``, no conversion pipeline) and pads its cropped extent onto the
image grid. Names, colours and terminology are stored as Slicer does (the ``TerminologyEntry``
tag); how a segment was made is the :data:`ALGORITHM_TYPE_TAG` tag that the editing effects set.

The terminology helpers at the top are plain Python, usable off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .batch_file import DEFAULT_SEGMENT
from .draft_store import LabelBlock
from .geometry import Geometry
from .segmentation import AlgorithmType, Segment, Segmentation, painted_box
from .terminology import Code

#: Name of the representation segments are painted in.
BINARY_LABELMAP = "Binary labelmap"
#: Segment tag holding the DICOM SegmentAlgorithmType (MANUAL, SEMIAUTOMATIC, AUTOMATIC).
ALGORITHM_TYPE_TAG = "CaseIterator.AlgorithmType"
#: Segment tag holding the name of the (semi-)automatic tool, e.g. "Threshold".
ALGORITHM_NAME_TAG = "CaseIterator.AlgorithmName"
#: Slicer's terminology tag name (``vtkSegment.GetTerminologyEntryTagName()``).
TERMINOLOGY_TAG = "TerminologyEntry"
#: Terminology contexts named in the tag (the DICOM master lists hold any SNOMED CT code).
TYPE_CONTEXT = "Segmentation category and type - DICOM master list"
REGION_CONTEXT = "Anatomic codes - DICOM master list"
#: The terminology Slicer gives a segment nobody described ("Tissue").
SLICER_DEFAULT_CODE = Code("SCT", "85756007", "Tissue")


# --------------------------------------------------------------------------------------------
# Terminology tag (plain Python)
# --------------------------------------------------------------------------------------------


def _code_text(code: Code | None) -> str:
    if code is None:
        return "^^"
    parts = (code.scheme, code.value, code.meaning)
    return "^".join(p.replace("^", " ").replace("~", " ").replace("|", " ") for p in parts)


def terminology_entry(segment: Segment) -> str:
    """The ``TerminologyEntry`` tag of ``segment`` as 3D Slicer writes it.

    ``context~category~type~typeModifier~regionContext~region~regionModifier``, each code
    ``scheme^value^meaning`` (Slicer 5's ``SerializeTerminologyEntry`` format).
    """
    region_context = REGION_CONTEXT if segment.region is not None else ""
    return "~".join(
        [
            TYPE_CONTEXT,
            _code_text(segment.category),
            _code_text(segment.type),
            "^^",
            region_context,
            _code_text(segment.region),
            "^^",
        ]
    )


def parse_terminology_entry(text: str) -> tuple[Code | None, Code | None, Code | None]:
    """Category, type and anatomic region of a Slicer ``TerminologyEntry`` tag (None if absent)."""
    fields = text.split("~")

    def code(index: int) -> Code | None:
        if index >= len(fields):
            return None
        parts = fields[index].split("^")
        if len(parts) < 3 or not parts[0] or not parts[1]:
            return None
        return Code(parts[0], parts[1], "^".join(parts[2:]))

    return code(1), code(2), code(5)


def segment_from_slicer(
    name: str,
    color: Sequence[float],
    tags: dict[str, str],
    meta: Segment | None = None,
) -> Segment:
    """A core segment from what Slicer stores: name, colour (0-1 floats) and segment tags.

    ``meta`` (the batch's segment of that name) fills codes the tags do not carry, or carry
    only as Slicer's default "Tissue".
    """
    category, type_, region = parse_terminology_entry(tags.get(TERMINOLOGY_TAG, ""))
    if meta is not None and (category, type_) == (SLICER_DEFAULT_CODE, SLICER_DEFAULT_CODE):
        # Slicer tags every new segment "Tissue"; the batch's codes say more.
        category = type_ = region = None
    base = meta or Segment(name, DEFAULT_SEGMENT.category, DEFAULT_SEGMENT.type, (0, 0, 0))
    algorithm_text = tags.get(ALGORITHM_TYPE_TAG, "").upper()
    algorithm = (
        AlgorithmType(algorithm_text) if algorithm_text in AlgorithmType.__members__ else None
    )
    return Segment(
        name=name,
        category=category or base.category,
        type=type_ or base.type,
        color=tuple(round(min(max(float(c), 0.0), 1.0) * 255) for c in color[:3]),  # type: ignore[arg-type]
        region=region if category is not None else base.region,
        algorithm=algorithm or base.algorithm,
        algorithm_name=tags.get(ALGORITHM_NAME_TAG, base.algorithm_name if meta else ""),
    )


# --------------------------------------------------------------------------------------------
# MRML (GUI thread)
# --------------------------------------------------------------------------------------------

_LOGIC_KEEPALIVE: list[Any] = []


def ensure_segmentations_logic() -> None:
    """Register slicer-core's segmentation converters once (the Segmentations module logic).

    Without them a segment cannot hold a "Binary labelmap" (see DESIGN: "Unable to construct
    empty representation type"). An application that already made the logic keeps its own.
    """
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation(BINARY_LABELMAP) is not None:
        return
    # The converter rules are registered when the logic gets a scene.
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    _LOGIC_KEEPALIVE.extend([scene, logic])


def _matrix4(values: np.ndarray) -> Any:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            matrix.SetElement(row, col, float(values[row, col]))
    return matrix


def _numpy4(matrix: Any) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _oriented_image(geometry: Geometry, block: np.ndarray | None, start: tuple[int, int, int]):
    """A vtkOrientedImageData on ``geometry`` holding ``block`` (k, j, i) from voxel ``start``."""
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(_matrix4(geometry.ijk_to_ras()))
    if block is None:
        image.SetExtent(0, -1, 0, -1, 0, -1)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        return image
    i0, j0, k0 = start
    nk, nj, ni = block.shape
    image.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    block = np.ascontiguousarray(block)
    scalars = numpy_to_vtk(block.reshape(-1), deep=False)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    image._caseiterator_array = block  # keeps the wrapped buffer alive with the image
    return image


def segmentation_to_node(
    scene: Any, segmentation: Segmentation, volume_node: Any, name: str
) -> Any:
    """Add ``segmentation`` to ``scene`` as a ``vtkMRMLSegmentationNode`` and return the node.

    Parameters
    ----------
    scene
        A ``vtkMRMLScene``.
    segmentation
        Segments and their label layers; each layer becomes one shared "Binary labelmap" image
        cropped to its painted voxels (a copy: editing the node never changes ``segmentation``).
    volume_node
        The image the segmentation belongs to: the node's reference geometry, and the parent
        of its subject hierarchy item when the volume has one. None uses
        ``segmentation.geometry`` alone.
    name
        Node name shown to the reader.

    Raises
    ------
    ValueError
        When ``volume_node`` is not on ``segmentation.geometry``.
    """
    import slicer

    ensure_segmentations_logic()
    geometry = segmentation.geometry
    if volume_node is not None:
        from .mrml_volume import node_ijk_to_ras

        if not np.allclose(node_ijk_to_ras(volume_node), geometry.ijk_to_ras(), atol=1e-4):
            raise ValueError(
                f"volume node {volume_node.GetName()!r} is not on the segmentation's grid "
                f"({geometry.describe()})"
            )
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    reference = _oriented_image(geometry, None, (0, 0, 0))
    size = geometry.size
    reference.SetExtent(0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1)
    if volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    else:
        node.GetSegmentation().SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            slicer.vtkSegmentationConverter.SerializeImageGeometry(reference),
        )

    images = []
    for layer in segmentation.layers:
        box = painted_box(layer)
        if box is None:
            images.append(_oriented_image(geometry, None, (0, 0, 0)))
            continue
        block = layer[box]
        if block.dtype != np.uint8 and int(block.max()) < 256:
            block = block.astype(np.uint8)
        else:
            block = block.copy()
        images.append(_oriented_image(geometry, block, (box[2].start, box[1].start, box[0].start)))

    vtk_segmentation = node.GetSegmentation()
    for segment, (layer, value) in zip(segmentation.segments, segmentation.placement, strict=True):
        vtk_segment = slicer.vtkSegment()
        vtk_segment.SetName(segment.name)
        vtk_segment.SetNameAutoGenerated(False)
        vtk_segment.SetColor(*(c / 255.0 for c in segment.color))
        vtk_segment.SetColorAutoGenerated(False)
        vtk_segment.SetLabelValue(int(value))
        vtk_segment.SetTag(TERMINOLOGY_TAG, terminology_entry(segment))
        vtk_segment.SetTag(ALGORITHM_TYPE_TAG, segment.algorithm.value)
        if segment.algorithm_name:
            vtk_segment.SetTag(ALGORITHM_NAME_TAG, segment.algorithm_name)
        vtk_segment.AddRepresentation(BINARY_LABELMAP, images[layer])
        vtk_segmentation.AddSegment(vtk_segment, "")
    _add_to_subject_hierarchy(scene, node, volume_node)
    return node


def _add_to_subject_hierarchy(scene: Any, node: Any, volume_node: Any) -> None:
    """Put the segmentation under the volume's parent when the volume is in the hierarchy."""
    import slicer

    if volume_node is None:
        return
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    if not volume_item:
        return
    parent = hierarchy.GetItemParent(volume_item)
    hierarchy.CreateItem(parent, node)


def segment_tags(vtk_segment: Any) -> dict[str, str]:
    """The CaseIterator tags of a vtkSegment (terminology, algorithm type and name)."""
    import vtk

    tags: dict[str, str] = {}
    for key in (TERMINOLOGY_TAG, ALGORITHM_TYPE_TAG, ALGORITHM_NAME_TAG):
        value = vtk.reference("")
        if vtk_segment.GetTag(key, value):
            tags[key] = str(value)
    return tags


def layer_block(
    image: Any, geometry: Geometry, label: str, *, copy: bool = True
) -> LabelBlock | None:
    """The painted box of one labelmap layer on ``geometry`` (None when nothing of it is there).

    Parameters
    ----------
    image
        The layer (a segment's binary-labelmap ``vtkOrientedImageData``), or None.
    geometry
        The image grid; the layer must lie on it (same axes, whole-voxel offset).
    label
        What the layer is called in the error.
    copy
        Own the values: the editor changes its scalars in place while a worker reads them.
        False gives a view of the scalars when they are unsigned already.

    Raises
    ------
    ValueError
        When the layer is not on the image grid (its voxels would have to be resampled).
    """
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    x0, x1, y0, y1, z0, z1 = image.GetExtent()
    if x1 < x0 or y1 < y0 or z1 < z0:
        return None
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    image_to_grid = np.linalg.inv(geometry.ijk_to_ras()) @ _numpy4(matrix)
    offset = image_to_grid[:3, 3]
    if not np.allclose(image_to_grid[:3, :3], np.eye(3), atol=1e-4) or not np.allclose(
        offset, np.round(offset), atol=1e-3
    ):
        raise ValueError(
            f"segment layer of {label} is not on the image grid ({geometry.describe()}); "
            "its voxels would have to be resampled"
        )
    shift = np.round(offset).astype(int)
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
        z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1
    )
    start = np.array([z0 + shift[2], y0 + shift[1], x0 + shift[0]])  # (k, j, i) on the grid
    stop = start + np.array(values.shape)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, np.array(geometry.shape))
    if np.any(hi <= lo):
        return None  # painted entirely outside the image
    part = values[
        lo[0] - start[0] : hi[0] - start[0],
        lo[1] - start[1] : hi[1] - start[1],
        lo[2] - start[2] : hi[2] - start[2],
    ]
    if part.dtype.kind != "u":
        part = part.astype(np.uint16 if part.max(initial=0) > 255 else np.uint8)
    elif copy:
        part = part.copy()
    return LabelBlock((int(lo[0]), int(lo[1]), int(lo[2])), part)


def _layer_on_grid(image: Any, geometry: Geometry, label: str) -> np.ndarray | None:
    """One labelmap layer padded onto ``geometry`` (None when nothing of it is there)."""
    block = layer_block(image, geometry, label, copy=False)
    if block is None:
        return None
    one_byte = image.GetPointData().GetScalars().GetDataTypeSize() == 1
    full = np.zeros(geometry.shape, dtype=np.uint8 if one_byte else np.uint16)
    k, j, i = block.start
    nk, nj, ni = block.values.shape
    full[k : k + nk, j : j + nj, i : i + ni] = block.values
    return full


def node_to_segmentation(
    node: Any, geometry: Geometry, segments_meta: Sequence[Segment] | None = None
) -> Segmentation:
    """Read a segmentation node's segments onto ``geometry`` (the image grid).

    Parameters
    ----------
    node
        A ``vtkMRMLSegmentationNode`` whose source representation is "Binary labelmap".
    geometry
        The image grid; each shared labelmap layer (often cropped to the painted region) is
        padded onto it. Voxels painted outside the image are dropped.
    segments_meta
        The batch's segments: a node segment with the same name takes its codes when the node
        carries no terminology tag (and its algorithm type when the node has no tag).

    Returns
    -------
    Segmentation
        Segments in the node's order, with the node's names and colours, one layer per shared
        labelmap, label values as in the node.

    Raises
    ------
    ValueError
        When a layer is not on ``geometry`` (it would need resampling), or the node holds
        segments in another representation only.
    """
    vtk_segmentation = node.GetSegmentation()
    label = f"segmentation {node.GetName()!r}"
    source_name = vtk_segmentation.GetSourceRepresentationName()
    if source_name != BINARY_LABELMAP:
        raise ValueError(
            f"{label} holds {source_name!r} segments, not {BINARY_LABELMAP!r}; convert it first"
        )
    by_name = {segment.name: segment for segment in segments_meta or ()}
    layer_index: dict[str, int] = {}
    layers: list[np.ndarray] = []
    segments: list[Segment] = []
    placement: list[tuple[int, int]] = []
    empty_layer: int | None = None
    for segment_id in vtk_segmentation.GetSegmentIDs():
        vtk_segment = vtk_segmentation.GetSegment(segment_id)
        image = vtk_segment.GetRepresentation(BINARY_LABELMAP)
        key = image.GetAddressAsString("vtkOrientedImageData") if image is not None else ""
        if key not in layer_index:
            full = _layer_on_grid(image, geometry, label) if image is not None else None
            if full is None:
                # Empty layers share one zero layer (Slicer keeps empty segments apart).
                if empty_layer is None:
                    layers.append(np.zeros(geometry.shape, dtype=np.uint8))
                    empty_layer = len(layers) - 1
                layer_index[key] = empty_layer
            else:
                layers.append(full)
                layer_index[key] = len(layers) - 1
        layer = layer_index[key]
        value = int(vtk_segment.GetLabelValue())
        if layer == empty_layer and any(p == (layer, value) for p in placement):
            value = max(v for lay, v in placement if lay == layer) + 1
        name = vtk_segment.GetName()
        segments.append(
            segment_from_slicer(
                name, vtk_segment.GetColor(), segment_tags(vtk_segment), by_name.get(name)
            )
        )
        placement.append((layer, value))
    if not layers:
        layers.append(np.zeros(geometry.shape, dtype=np.uint8))
    return Segmentation(geometry, tuple(segments), tuple(layers), tuple(placement))


__all__ = [
    "ALGORITHM_NAME_TAG",
    "ALGORITHM_TYPE_TAG",
    "BINARY_LABELMAP",
    "TERMINOLOGY_TAG",
    "ensure_segmentations_logic",
    "node_to_segmentation",
    "parse_terminology_entry",
    "segment_from_slicer",
    "segmentation_to_node",
    "terminology_entry",
]


def fill_segments(node: Any, segment_ids: Sequence[str], segmentation: Segmentation) -> None:
    """Put the voxels of ``segmentation``'s segment ``i`` into ``node``'s ``segment_ids[i]``.

    For an existing node (the editor's): the segments keep their ids, names and colours, and
    the segmentation's shared layers are kept (Slicer's own ``SetBinaryLabelmapToSegment``).
    Segments beyond ``segment_ids`` are ignored. GUI thread only.
    """
    import slicer

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    geometry = segmentation.geometry
    for index, segment_id in enumerate(segment_ids[: len(segmentation.segments)]):
        mask = segmentation.mask(index)
        box = painted_box(mask.astype(np.uint8))
        if box is None:
            continue
        block = mask[box].astype(np.uint8)
        start = (box[2].start, box[1].start, box[0].start)
        image = _oriented_image(geometry, block, start)
        logic.SetBinaryLabelmapToSegment(
            image, node, segment_id, logic.MODE_REPLACE, image.GetExtent()
        )
