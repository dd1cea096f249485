"""Segment locks and algorithm tags, enforced where trame-slicer's effects change voxels (no Qt).

Neither slicer-core 5.11 nor trame-slicer 2.0 has a segment lock, and their effects do not say
how a segment was made. Every effect ends in its ``SegmentModifier``'s ``apply_labelmap``
(Paint, Erase, Draw, Scissors, Threshold, Islands, Smoothing, logical operators), so one guard
on that modifier covers all of them:

- an edit aimed at a locked segment is refused before anything is pushed on the undo stack
  (no empty undo step, the case does not become "modified");
- the voxels of locked segments are cut out of every other edit's modifier labelmap, so
  painting a neighbour in "overwrite all" mode cannot take voxels from a locked segment
  (what Slicer's editable-area mask does for one segment, here for any number);
- a semi-automatic tool tags the segment it changed (``CaseIterator.AlgorithmType`` /
  ``CaseIterator.AlgorithmName``, read by ``mrml_segmentation`` into the saved SEG). The tags
  are set inside trame-slicer's undo snapshot, so undoing the edit restores the old tags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from CaseIteratorCoreLib.mrml_segmentation import (
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    BINARY_LABELMAP,
)
from CaseIteratorCoreLib.segmentation import AlgorithmType

log = logging.getLogger(__name__)

#: Tools whose result is computed from the image (DICOM: SEMIAUTOMATIC), with the algorithm
#: names seg_dicom maps to a CID 7162 algorithm family.
SEMIAUTOMATIC_TOOLS: dict[str, str] = {
    "threshold": "Threshold",
    "islands": "Islands",
    "smoothing": "Smoothing",
}

#: Longest AlgorithmName kept (DICOM LO is 64 characters).
_NAME_LIMIT = 64


def segment_tag(vtk_segment: Any, key: str) -> str:
    """The value of tag ``key`` of a ``vtkSegment`` ('' when absent)."""
    import vtk

    value = vtk.reference("")
    return str(value) if vtk_segment.GetTag(key, value) else ""


def tag_algorithm(vtk_segment: Any, name: str) -> None:
    """Mark ``vtk_segment`` as SEMIAUTOMATIC, made (also) with algorithm ``name``.

    A segment thresholded and then cleaned with Islands is named "Threshold, Islands"; painting
    afterwards keeps SEMIAUTOMATIC (a computed segment that the reader corrected).
    """
    names = [n for n in segment_tag(vtk_segment, ALGORITHM_NAME_TAG).split(", ") if n]
    if name not in names:
        names.append(name)
    vtk_segment.SetTag(ALGORITHM_TYPE_TAG, AlgorithmType.SEMIAUTOMATIC.value)
    vtk_segment.SetTag(ALGORITHM_NAME_TAG, ", ".join(names)[:_NAME_LIMIT])


class SegmentGuard:
    """Wraps one ``SegmentModifier`` (one case) with segment locks and algorithm tags.

    Parameters
    ----------
    modifier
        trame-slicer's ``SegmentModifier`` of the case's segmentation.
    is_locked
        ``is_locked(segment_id)``: whether a segment may not change.
    current_tool
        ``current_tool()``: key of the active tool (see ``segment_editing.EFFECTS``).
    on_refused
        Called with the segment id when an edit of a locked segment was refused.
    """

    def __init__(
        self,
        modifier: Any,
        is_locked: Callable[[str], bool],
        current_tool: Callable[[], str],
        on_refused: Callable[[str], None],
    ) -> None:
        self._modifier = modifier
        self._is_locked = is_locked
        self._current_tool = current_tool
        self._on_refused = on_refused
        self._locked_ids: Callable[[], list[str]] = lambda: [
            i for i in modifier.segmentation.get_segment_ids() if is_locked(i)
        ]
        # Instance attributes shadow the class's methods: only this modifier is guarded, and
        # trame-slicer's own code paths (apply_glyph, set_segment_labelmap, ...) call these.
        self._apply = modifier.apply_labelmap
        self._modify = modifier._modify_active_segment_by_labelmap
        modifier.apply_labelmap = self.apply_labelmap
        modifier._modify_active_segment_by_labelmap = self.modify

    def apply_labelmap(self, modifier_labelmap: Any, **options: Any) -> None:
        """trame-slicer's ``apply_labelmap``, refused for a locked target segment."""
        target = options.get("segment_id") or self._modifier.active_segment_id
        if target and self._is_locked(target):
            log.info("edit of locked segment %s refused", target)
            self._on_refused(target)
            return
        self._apply(modifier_labelmap, **options)

    def modify(self, modifier_labelmap: Any, **options: Any) -> None:
        """Inside the undo snapshot: mask locked voxels, modify, tag the algorithm."""
        from trame_slicer.segmentation.segment_modifier import ModificationMode

        target = options.get("segment_id") or self._modifier.active_segment_id
        mode = options.get("modification_mode") or self._modifier.modification_mode
        if mode != ModificationMode.Remove:
            # Remove only touches the target; Add, Set and RemoveAll may touch the others.
            for segment_id in self._locked_ids():
                if segment_id != target:
                    self._cut_out(modifier_labelmap, segment_id)
        self._modify(modifier_labelmap, **options)
        name = SEMIAUTOMATIC_TOOLS.get(self._current_tool())
        segment = self._modifier.segmentation.get_segment(target) if target else None
        if name is not None and segment is not None:
            tag_algorithm(segment, name)

    def _cut_out(self, modifier_labelmap: Any, segment_id: str) -> None:
        """Zero ``modifier_labelmap`` where segment ``segment_id`` has voxels."""
        from vtk.util.numpy_support import vtk_to_numpy

        segment = self._modifier.segmentation.get_segment(segment_id)
        layer = segment.GetRepresentation(BINARY_LABELMAP) if segment is not None else None
        scalars = modifier_labelmap.GetPointData().GetScalars()
        if layer is None or layer.GetPointData().GetScalars() is None or scalars is None:
            return
        if not _same_grid(layer, modifier_labelmap):
            log.warning("locked segment %s is not on the edit grid; not protected", segment_id)
            return
        target_extent = modifier_labelmap.GetExtent()
        layer_extent = layer.GetExtent()
        box = [
            (
                max(target_extent[2 * a], layer_extent[2 * a]),
                min(target_extent[2 * a + 1], layer_extent[2 * a + 1]),
            )
            for a in range(3)
        ]
        if any(high < low for low, high in box):
            return
        edit = _as_zyx(vtk_to_numpy(scalars), target_extent)
        locked = _as_zyx(vtk_to_numpy(layer.GetPointData().GetScalars()), layer_extent)
        in_edit = _crop(edit, target_extent, box)
        in_locked = _crop(locked, layer_extent, box)
        in_edit[in_locked == segment.GetLabelValue()] = 0
        scalars.Modified()


def _same_grid(a: Any, b: Any) -> bool:
    import vtk

    matrices = []
    for image in (a, b):
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        matrices.append([matrix.GetElement(r, c) for r in range(4) for c in range(4)])
    return bool(np.allclose(matrices[0], matrices[1], atol=1e-4))


def _as_zyx(values: np.ndarray, extent: tuple[int, ...]) -> np.ndarray:
    """A view of flat VTK scalars as ``[k, j, i]`` over ``extent``."""
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return values.reshape(shape)


def _crop(array: np.ndarray, extent: tuple[int, ...], box: list[tuple[int, int]]) -> np.ndarray:
    """The part of ``array`` (over ``extent``) inside ``box`` (``[(i0, i1), (j0, j1), ...]``)."""
    (i0, i1), (j0, j1), (k0, k1) = box
    return array[
        k0 - extent[4] : k1 - extent[4] + 1,
        j0 - extent[2] : j1 - extent[2] + 1,
        i0 - extent[0] : i1 - extent[0] + 1,
    ]
