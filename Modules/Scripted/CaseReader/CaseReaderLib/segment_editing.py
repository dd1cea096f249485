"""Segment editing of the current case through trame-slicer's segment editor (no Qt here).

One segmentation node per case, its segments made from the batch's ``[[segments]]`` templates.
The effects are trame-slicer's (Slicer's segment editor effects ported to its core); their
pipelines receive the mouse events the Qt views forward to the VTK interactors. Undo/redo is
trame-slicer's undo stack; its "clean" mark tells whether there are unsaved edits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from CaseIteratorCoreLib.segmentation import Segment

from .reading_scene import ReadingScene

#: How many edits can be undone per case.
UNDO_LIMIT = 50


@dataclass(frozen=True)
class EffectInfo:
    """An editing tool as the toolbar shows it."""

    key: str
    label: str
    icon: str
    shortcut: str
    tooltip: str
    #: Whether the brush size applies.
    brush: bool = False


#: The tools, in toolbar order (``None`` effect = navigate: window/level with the left button).
EFFECTS: tuple[EffectInfo, ...] = (
    EffectInfo("navigate", "Adjust", "tool-navigate", "Esc", "Window/level with the left button"),
    EffectInfo("paint", "Paint", "tool-paint", "P", "Paint the segment with a round brush", True),
    EffectInfo("erase", "Erase", "tool-erase", "E", "Erase the segment with a round brush", True),
    EffectInfo("draw", "Draw", "tool-draw", "D", "Draw an outline; the inside is filled"),
    EffectInfo("scissors", "Scissors", "tool-scissors", "S", "Cut away what you encircle"),
    EffectInfo(
        "threshold", "Threshold", "tool-threshold", "T", "Fill voxels in an intensity range"
    ),
    EffectInfo("islands", "Islands", "tool-islands", "I", "Keep the largest piece"),
    EffectInfo("smoothing", "Smooth", "tool-smoothing", "M", "Smooth the segment's surface"),
)


def _effect_types() -> dict[str, type]:
    from trame_slicer.segmentation import (
        SegmentationEffectDraw,
        SegmentationEffectErase,
        SegmentationEffectIslands,
        SegmentationEffectPaint,
        SegmentationEffectScissors,
        SegmentationEffectSmoothing,
        SegmentationEffectThreshold,
    )

    return {
        "paint": SegmentationEffectPaint,
        "erase": SegmentationEffectErase,
        "draw": SegmentationEffectDraw,
        "scissors": SegmentationEffectScissors,
        "threshold": SegmentationEffectThreshold,
        "islands": SegmentationEffectIslands,
        "smoothing": SegmentationEffectSmoothing,
    }


class SegmentEditing:
    """The current case's segmentation and the active editing tool.

    Parameters
    ----------
    scene
        The reading scene (its trame-slicer ``SegmentationEditor`` is used).
    """

    def __init__(self, scene: ReadingScene) -> None:
        from undo_stack import UndoStack

        self._scene = scene
        self.editor = scene.app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=UNDO_LIMIT)
        self.editor.set_undo_stack(self.undo_stack)
        self._types = _effect_types()
        self.node: Any | None = None
        self.segments: tuple[Segment, ...] = ()
        self._segment_ids: list[str] = []
        self._effect = "navigate"
        self._brush_mm = 8.0
        self._sphere_brush = False
        self._listeners: list[Callable[[], None]] = []
        self.undo_stack.index_changed.connect(self._on_undo_changed)
        self.undo_stack.clean_changed.connect(self._on_undo_changed)

    # -- case ------------------------------------------------------------------------------

    def start_case(self, volume_node: Any, segments: Sequence[Segment]) -> Any:
        """A new, empty segmentation on ``volume_node`` with ``segments``; returns the node.

        The previous case's segmentation node leaves the scene.
        """
        self.set_effect("navigate")
        self.close_case()
        node = self.editor.create_empty_segmentation_node()
        node.SetName("Segmentation")
        display = node.GetDisplayNode()
        display.SetOpacity2DFill(0.45)
        display.SetOpacity2DOutline(1.0)
        display.SetSliceIntersectionThickness(2)
        self.editor.set_active_segmentation(node, volume_node)
        self.segments = tuple(segments)
        self._segment_ids = []
        for number, segment in enumerate(self.segments, start=1):
            segment_id = self.editor.add_empty_segment(
                segment_id=f"segment_{number}",
                segment_name=segment.name,
                segment_color=[c / 255.0 for c in segment.color],
                segment_value=number,
            )
            self._segment_ids.append(segment_id)
        # Only the reader's own edits can be undone; the empty segments are the clean state.
        self.undo_stack.clear()
        self.undo_stack.set_clean()
        if self._segment_ids:
            self.editor.set_active_segment_id(self._segment_ids[0])
        self.node = node
        self._notify()
        return node

    def close_case(self) -> None:
        """Remove the current segmentation node (the editor forgets it)."""
        if self.node is not None:
            self.set_effect("navigate")
            self._scene.remove_node(self.node)
            self.node = None
            self.undo_stack.clear()
        self._segment_ids = []

    # -- segments --------------------------------------------------------------------------

    @property
    def segment_ids(self) -> list[str]:
        """The segment ids, in template order."""
        return list(self._segment_ids)

    @property
    def active_index(self) -> int:
        """Index of the segment the tools edit (-1 when none)."""
        active = self.editor.get_active_segment_id()
        return self._segment_ids.index(active) if active in self._segment_ids else -1

    def set_active_index(self, index: int) -> None:
        """Edit segment ``index`` from now on."""
        if 0 <= index < len(self._segment_ids):
            self.editor.set_active_segment_id(self._segment_ids[index])
            self._notify()

    def set_visible(self, index: int, visible: bool) -> None:
        """Show or hide segment ``index`` in the views."""
        self.editor.set_segment_visibility(self._segment_ids[index], visible)
        self._notify()

    def is_visible(self, index: int) -> bool:
        """Whether segment ``index`` is shown."""
        return bool(self.editor.get_segment_visibility(self._segment_ids[index]))

    def labels(self) -> np.ndarray:
        """Painted voxels as one label array on the image grid (``[k, j, i]``; 0 = none).

        Segment ``i`` has value ``i + 1``; where segments overlap the later one wins.
        """
        volume = self._scene.volume_node
        if volume is None or self.node is None:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        i, j, k = volume.GetImageData().GetDimensions()
        out = np.zeros((k, j, i), dtype=np.uint8 if len(self._segment_ids) < 255 else np.uint16)
        for number, segment_id in enumerate(self._segment_ids, start=1):
            out[self.mask(segment_id, out.shape)] = number
        return out

    def mask(self, segment_id: str, shape: tuple[int, int, int] | None = None) -> np.ndarray:
        """Boolean voxels of one segment on the image grid.

        Reads the segment's "Binary labelmap" representation in place (segments share a label
        layer, cropped to the painted extent): a few ms, where trame-slicer's
        ``get_segment_labelmap`` resamples for ~0.3 s on a full CT.
        """
        from vtk.util.numpy_support import vtk_to_numpy

        volume = self._scene.volume_node
        if shape is None:
            i, j, k = volume.GetImageData().GetDimensions()
            shape = (k, j, i)
        out = np.zeros(shape, dtype=bool)
        segment = self.node.GetSegmentation().GetSegment(segment_id) if self.node else None
        layer = segment.GetRepresentation("Binary labelmap") if segment is not None else None
        if layer is None or layer.GetPointData().GetScalars() is None:
            return out
        if not np.allclose(layer.GetSpacing(), volume.GetSpacing()) or not np.allclose(
            layer.GetOrigin(), volume.GetOrigin()
        ):
            # Not on the image grid (should not happen here): let trame-slicer resample.
            array = self.editor.get_segment_labelmap(segment_id, as_numpy_array=True)
            return np.asarray(array).reshape(shape) > 0
        x0, x1, y0, y1, z0, z1 = layer.GetExtent()
        if x1 < x0 or y1 < y0 or z1 < z0:
            return out
        values = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(
            z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1
        )
        # Clip the painted extent to the image (a brush may reach past the border).
        kz, ky, kx = shape
        sz, sy, sx = (
            slice(max(z0, 0), min(z1 + 1, kz)),
            slice(max(y0, 0), min(y1 + 1, ky)),
            slice(max(x0, 0), min(x1 + 1, kx)),
        )
        part = values[
            sz.start - z0 : sz.stop - z0, sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0
        ]
        out[sz, sy, sx] = part == segment.GetLabelValue()
        return out

    def painted_voxels(self, index: int) -> int:
        """Number of voxels in segment ``index``."""
        return int(np.count_nonzero(self.mask(self._segment_ids[index])))

    # -- tools -----------------------------------------------------------------------------

    @property
    def effect(self) -> str:
        """Key of the active tool (``"navigate"`` when none)."""
        return self._effect

    def set_effect(self, key: str) -> Any | None:
        """Activate tool ``key`` (see :data:`EFFECTS`); returns trame-slicer's effect."""
        if key == "navigate" or key not in self._types or self.node is None:
            self.editor.deactivate_effect()
            self._effect = "navigate"
            self._scene.set_navigation_mode()
            self._notify()
            return None
        effect = self.editor.set_active_effect_type(self._types[key])
        self._effect = key
        if key == "scissors":
            from trame_slicer.segmentation import ScissorsEffectRangeMode

            # Cut in the slice on screen only: trame-slicer's default cuts through the whole
            # volume, which a reader does not expect from a 2D gesture.
            effect.set_range_mode(ScissorsEffectRangeMode.SYMMETRIC)
            effect.set_symmetric_distance(0.0)
        if hasattr(effect, "set_brush_diameter"):
            self._apply_brush(effect)
        self._notify()
        return effect

    def active_effect(self) -> Any | None:
        """trame-slicer's active effect object (None when navigating)."""
        return self.editor.active_effect if self._effect != "navigate" else None

    @property
    def brush_mm(self) -> float:
        """Brush diameter in millimetres."""
        return self._brush_mm

    def set_brush_mm(self, diameter: float) -> None:
        """Set the Paint/Erase brush diameter in millimetres."""
        self._brush_mm = float(diameter)
        effect = self.active_effect()
        if effect is not None and hasattr(effect, "set_brush_diameter"):
            self._apply_brush(effect)

    @property
    def sphere_brush(self) -> bool:
        """Whether the brush is a sphere (paints neighbouring slices too) or a disc."""
        return self._sphere_brush

    def set_sphere_brush(self, sphere: bool) -> None:
        """Paint with a sphere (3D) or a disc in the slice (2D, the default)."""
        self._sphere_brush = bool(sphere)
        effect = self.active_effect()
        if effect is not None and hasattr(effect, "set_brush_diameter"):
            self._apply_brush(effect)

    def _apply_brush(self, effect: Any) -> None:
        from trame_slicer.segmentation import BrushDiameterMode

        effect.set_brush_diameter(self._brush_mm, BrushDiameterMode.Absolute)
        effect.set_use_sphere_brush(self._sphere_brush)

    # -- undo ------------------------------------------------------------------------------

    def can_undo(self) -> bool:
        """Whether an edit can be undone."""
        return bool(self.undo_stack.can_undo())

    def can_redo(self) -> bool:
        """Whether an undone edit can be redone."""
        return bool(self.undo_stack.can_redo())

    def undo(self) -> None:
        """Undo the last edit."""
        if self.can_undo():
            self.undo_stack.undo()

    def redo(self) -> None:
        """Redo the last undone edit."""
        if self.can_redo():
            self.undo_stack.redo()

    @property
    def modified(self) -> bool:
        """Whether there are edits since the case opened or was last saved."""
        return self.node is not None and not self.undo_stack.is_clean()

    def mark_saved(self) -> None:
        """The current state is saved (``modified`` becomes False)."""
        self.undo_stack.set_clean()
        self._notify()

    # -- change notification ---------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after any change of segments, tool or undo state."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    def _on_undo_changed(self, *_: object) -> None:
        self._notify()

    def shutdown(self) -> None:
        """Forget the case and the listeners; unregister the editor's pipeline creator."""
        self._listeners.clear()
        self.close_case()
        from slicer import vtkMRMLLayerDMPipelineFactory

        creator = getattr(self.editor, "_pipeline_creator", None)
        factory = vtkMRMLLayerDMPipelineFactory.GetInstance()
        if creator is not None and factory.ContainsPipelineCreator(creator):
            # The factory is process-wide: a closed window's editor must not stay registered.
            factory.RemovePipelineCreator(creator)
