"""Segment editing of the current case through trame-slicer's segment editor (no Qt here).

One segmentation node per case, its segments made from the batch's ``[[segments]]`` templates;
the reader may add, rename, recolour, lock and remove segments. The node is the source of
truth: :attr:`SegmentEditing.segments` reads names, colours, terminology and algorithm tags
from it, so whatever the reader changed is what gets saved. Segment changes go through
trame-slicer's undo stack like voxel edits (Undo brings back a removed segment), and its
"clean" mark tells whether there are unsaved edits.

The effects are trame-slicer's (Slicer's segment editor effects ported to its core); their
pipelines receive the mouse events the Qt views forward to the VTK interactors. Locks and the
algorithm tags of semi-automatic tools are enforced in :mod:`.segment_guard`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from CaseIteratorCoreLib.batch_file import DEFAULT_SEGMENT
from CaseIteratorCoreLib.mrml_segmentation import (
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    TERMINOLOGY_TAG,
    fill_segments,
    segment_from_slicer,
    terminology_entry,
)
from CaseIteratorCoreLib.segmentation import AlgorithmType, Segment, Segmentation

from .otsu import otsu_threshold
from .reading_scene import ReadingScene
from .segment_guard import SegmentGuard, segment_tag

#: How many edits can be undone per case.
UNDO_LIMIT = 50

#: Colours offered to new segments: muted, distinct on grey CT/MR, none of them alarm-red.
CALM_PALETTE: tuple[tuple[int, int, int], ...] = (
    (111, 184, 210),  # sky
    (230, 188, 106),  # sand
    (144, 190, 140),  # sage
    (203, 132, 170),  # heather
    (122, 150, 214),  # periwinkle
    (219, 139, 110),  # terracotta
    (120, 196, 180),  # teal
    (190, 176, 140),  # stone
)

#: Brush diameters that can be chosen, in millimetres (slider, wheel and keys).
BRUSH_RANGE_MM = (1.0, 60.0)


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


class _SteadyPreview:
    """Stands in for trame-slicer's threshold "blinker", which needs a running asyncio loop.

    The threshold preview is then a steady overlay; the Qt tools panel installs a pulsing one
    driven by a QTimer (:mod:`.threshold_preview`).
    """

    def set_active(self, is_active: bool) -> None:
        """Nothing to start or stop."""

    def set_opacity_range(self, low: float, high: float) -> None:
        """Ignored: the overlay keeps its opacity."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


class SegmentEditing:
    """The current case's segmentation, its segments and the active editing tool.

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
        #: What each segment is (codes), by segment id; names and colours live in the node.
        self._meta: dict[str, Segment] = {}
        self._template_ids: set[str] = set()
        self._locked: set[str] = set()
        self._id_counter = 0
        self._guard: SegmentGuard | None = None
        #: Name of the locked segment whose edit was refused last ('' when none).
        self.last_refused = ""
        self._effect = "navigate"
        self._brush_mm = 8.0
        self._sphere_brush = False
        self._listeners: list[Callable[[], None]] = []
        self.undo_stack.index_changed.connect(self._on_undo_changed)
        self.undo_stack.clean_changed.connect(self._on_undo_changed)
        self.threshold_effect()._opacity_blinker = _SteadyPreview()  # see _SteadyPreview
        for key in ("paint", "erase"):
            self.editor.get_effect(self._types[key]).parameters_changed.connect(
                self._on_brush_parameters
            )

    def threshold_effect(self) -> Any:
        """trame-slicer's Threshold effect of this editor (active or not)."""
        return self.editor.get_effect(self._types["threshold"])

    # -- case ------------------------------------------------------------------------------

    def start_case(self, volume_node: Any, segments: Sequence[Segment]) -> Any:
        """A new, empty segmentation on ``volume_node`` with ``segments``; returns the node.

        ``segments`` are the batch's templates: they cannot be removed (they can be emptied,
        renamed and recoloured). The previous case's segmentation node leaves the scene.
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
        self.node = node
        self._guard = SegmentGuard(
            self.editor.active_segment_modifier,
            is_locked=lambda segment_id: segment_id in self._locked,
            current_tool=lambda: self._effect,
            on_refused=self._on_refused,
        )
        for segment in segments:
            self._template_ids.add(self._add(segment))
        # Only the reader's own edits can be undone; the empty segments are the clean state.
        self.undo_stack.clear()
        self.undo_stack.set_clean()
        if self.segment_ids:
            self.editor.set_active_segment_id(self.segment_ids[0])
        self._notify()
        return node

    def load_result(self, segmentation: Segmentation) -> None:
        """Start from a saved result (or a pre-segmentation) instead of empty segments.

        The result's segments take the place of the template segments they match (same name,
        else same terminology: a renamed template segment keeps its codes); the others are
        added. Names, colours, algorithm tags and voxels come from the result; the undo history
        is cleared (call :meth:`mark_saved` when this is the clean state).
        """
        if self.node is None:
            raise RuntimeError("no case is open: call start_case first")
        free = [i for i in self.segment_ids if i in self._template_ids]
        targets: list[str | None] = [None] * len(segmentation.segments)
        matchers = (
            lambda seg, i: self._vtk_segment(i).GetName() == seg.name,
            lambda seg, i: (self._meta[i].category, self._meta[i].type) == (seg.category, seg.type),
        )
        for matches in matchers:
            for number, segment in enumerate(segmentation.segments):
                if targets[number] is None:
                    found = next((i for i in free if matches(segment, i)), None)
                    if found is not None:
                        free.remove(found)
                        targets[number] = found
        ids: list[str] = []
        for number, segment in enumerate(segmentation.segments):
            segment_id = targets[number]
            if segment_id is None:
                segment_id = self._add(segment)
            else:
                vtk_segment = self._vtk_segment(segment_id)
                vtk_segment.SetName(segment.name)
                vtk_segment.SetColor(*(c / 255.0 for c in segment.color))
                vtk_segment.SetTag(TERMINOLOGY_TAG, terminology_entry(segment))
                _set_algorithm_tags(vtk_segment, segment)
                self._meta[segment_id] = segment
            ids.append(segment_id)
        fill_segments(self.node, ids, segmentation)
        self.undo_stack.clear()
        self._notify()

    def close_case(self) -> None:
        """Remove the current segmentation node (the editor forgets it)."""
        if self.node is not None:
            self.set_effect("navigate")
            self._scene.remove_node(self.node)
            self.node = None
            self.undo_stack.clear()
        self._guard = None
        self._meta.clear()
        self._template_ids.clear()
        self._locked.clear()
        self.last_refused = ""

    # -- segments --------------------------------------------------------------------------

    @property
    def segment_ids(self) -> list[str]:
        """The segment ids, in list order (templates first, then added segments)."""
        if self.node is None:
            return []
        return list(self.node.GetSegmentation().GetSegmentIDs())

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segments as they are now: name, colour, terminology, how they were made."""
        out = []
        for segment_id in self.segment_ids:
            vtk_segment = self._vtk_segment(segment_id)
            tags = {
                key: value
                for key in (TERMINOLOGY_TAG, ALGORITHM_TYPE_TAG, ALGORITHM_NAME_TAG)
                if (value := segment_tag(vtk_segment, key))
            }
            out.append(
                segment_from_slicer(
                    vtk_segment.GetName(),
                    vtk_segment.GetColor(),
                    tags,
                    self._meta.get(segment_id),
                )
            )
        return tuple(out)

    def _vtk_segment(self, segment_id: str) -> Any:
        return self.node.GetSegmentation().GetSegment(segment_id)

    def _id(self, index: int) -> str:
        ids = self.segment_ids
        if not 0 <= index < len(ids):
            raise IndexError(f"no segment {index}: the case has {len(ids)} segments")
        return ids[index]

    def _add(self, segment: Segment) -> str:
        """Add ``segment`` to the node (through the editor: undoable); returns its id."""
        existing = set(self.segment_ids)
        self._id_counter += 1
        while f"segment_{self._id_counter}" in existing:
            self._id_counter += 1
        values = [self._vtk_segment(i).GetLabelValue() for i in existing]
        segment_id = self.editor.add_empty_segment(
            segment_id=f"segment_{self._id_counter}",
            segment_name=segment.name,
            segment_color=[c / 255.0 for c in segment.color],
            segment_value=max(values, default=0) + 1,
        )
        # Through the undo stack too, or a redo of the addition would lose the codes.
        properties = self.editor.get_segment_properties(segment_id)
        properties.terminology_tag = terminology_entry(segment)
        self.editor.active_segmentation.set_segment_properties(segment_id, properties)
        _set_algorithm_tags(self._vtk_segment(segment_id), segment)
        self._meta[segment_id] = segment
        return segment_id

    def next_color(self) -> tuple[int, int, int]:
        """The first colour of :data:`CALM_PALETTE` no segment has yet."""
        used = {segment.color for segment in self.segments}
        for color in CALM_PALETTE:
            if color not in used:
                return color
        return CALM_PALETTE[len(used) % len(CALM_PALETTE)]

    def free_name(self) -> str:
        """A name for a new segment that no segment has ("Segment 4")."""
        names = {segment.name for segment in self.segments}
        number = len(names) + 1
        while f"Segment {number}" in names:
            number += 1
        return f"Segment {number}"

    def _check_name(self, name: str, ignore: str | None = None) -> str:
        name = name.strip()
        if not name:
            raise ValueError("a segment needs a name")
        for segment_id in self.segment_ids:
            if segment_id != ignore and self._vtk_segment(segment_id).GetName() == name:
                raise ValueError(f"a segment named {name!r} already exists: choose another name")
        return name

    def add_segment(self, template: Segment | None = None, name: str | None = None) -> int:
        """Add a segment and make it the one the tools edit; returns its index.

        Parameters
        ----------
        template
            A batch template to add (again): its codes and colour; ``name`` may rename it.
        name
            The new segment's name (default: :meth:`free_name`); without a template it is
            coded as generic tissue and gets :meth:`next_color`.

        Raises
        ------
        ValueError
            When the name is empty or another segment has it.
        RuntimeError
            When no case is open.
        """
        if self.node is None:
            raise RuntimeError("no case is open: a segment belongs to a case")
        if template is None:
            template = Segment(
                self.free_name(), DEFAULT_SEGMENT.category, DEFAULT_SEGMENT.type, self.next_color()
            )
        if name is not None or template.name in {s.name for s in self.segments}:
            template = replace(template, name=name if name is not None else self.free_name())
        template = replace(template, name=self._check_name(template.name))
        with self.undo_stack.group_undo_commands(f"Add {template.name}"):
            segment_id = self._add(template)
        self.editor.set_active_segment_id(segment_id)
        self._notify()
        return self.segment_ids.index(segment_id)

    def rename(self, index: int, name: str) -> None:
        """Rename segment ``index`` (undoable).

        Raises
        ------
        ValueError
            When the name is empty or another segment has it.
        """
        segment_id = self._id(index)
        name = self._check_name(name, ignore=segment_id)
        if name == self._vtk_segment(segment_id).GetName():
            return
        properties = self.editor.get_segment_properties(segment_id)
        properties.name = name
        self.editor.set_segment_properties(segment_id, properties)
        self._notify()

    def set_color(self, index: int, rgb: tuple[int, int, int]) -> None:
        """Give segment ``index`` the colour ``rgb`` (0-255; undoable)."""
        segment_id = self._id(index)
        if any(not 0 <= c <= 255 for c in rgb) or len(rgb) != 3:
            raise ValueError(f"colour {rgb!r} is not three values from 0 to 255")
        properties = self.editor.get_segment_properties(segment_id)
        properties.color = [c / 255.0 for c in rgb]
        self.editor.set_segment_properties(segment_id, properties)
        self._notify()

    def is_template(self, index: int) -> bool:
        """Whether segment ``index`` is one of the batch's segments (those stay)."""
        return self._id(index) in self._template_ids

    def remove_segment(self, index: int) -> None:
        """Remove segment ``index`` with its voxels (undoable).

        Raises
        ------
        ValueError
            For a batch segment: the batch asks for it; its voxels can be erased instead.
        """
        segment_id = self._id(index)
        if segment_id in self._template_ids:
            name = self._vtk_segment(segment_id).GetName()
            raise ValueError(
                f"{name!r} is one of the batch's segments and stays; erase its voxels instead"
            )
        self.editor.remove_segment(segment_id)
        self._ensure_active()
        self._notify()

    def set_locked(self, index: int, locked: bool) -> None:
        """Lock segment ``index`` (no tool changes its voxels) or unlock it."""
        segment_id = self._id(index)
        if locked:
            self._locked.add(segment_id)
        else:
            self._locked.discard(segment_id)
        self._notify()

    def is_locked(self, index: int) -> bool:
        """Whether segment ``index`` is locked."""
        return self._id(index) in self._locked

    def _on_refused(self, segment_id: str) -> None:
        self.last_refused = self._vtk_segment(segment_id).GetName()
        self._notify()

    @property
    def active_index(self) -> int:
        """Index of the segment the tools edit (-1 when none)."""
        active = self.editor.get_active_segment_id()
        ids = self.segment_ids
        return ids.index(active) if active in ids else -1

    def set_active_index(self, index: int) -> None:
        """Edit segment ``index`` from now on."""
        ids = self.segment_ids
        if 0 <= index < len(ids) and ids[index] != self.editor.get_active_segment_id():
            self.editor.set_active_segment_id(ids[index])
            self._notify()

    def _ensure_active(self) -> None:
        """After a segment left (removal, undo of an addition): edit a segment that exists."""
        ids = self.segment_ids
        if ids and self.editor.get_active_segment_id() not in ids:
            self.editor.set_active_segment_id(ids[-1])

    def set_visible(self, index: int, visible: bool) -> None:
        """Show or hide segment ``index`` in the views."""
        self.editor.set_segment_visibility(self._id(index), visible)
        self._notify()

    def is_visible(self, index: int) -> bool:
        """Whether segment ``index`` is shown."""
        return bool(self.editor.get_segment_visibility(self._id(index)))

    def _image_values(self) -> np.ndarray | None:
        """The shown image's voxels as a flat numpy view (None when no image is shown)."""
        from vtk.util.numpy_support import vtk_to_numpy

        volume = self._scene.volume_node
        image = volume.GetImageData() if volume is not None else None
        scalars = image.GetPointData().GetScalars() if image is not None else None
        return vtk_to_numpy(scalars) if scalars is not None else None

    def image_range(self) -> tuple[float, float]:
        """Lowest and highest value of the case's image ((0, 0) when none is shown).

        numpy's min/max (~20 ms on a 512x512x64 CT); VTK's ``GetScalarRange`` takes ~0.3 s.
        """
        values = self._image_values()
        if values is None or values.size == 0:
            return (0.0, 0.0)
        return (float(values.min()), float(values.max()))

    def otsu_range(self) -> tuple[float, float]:
        """The Threshold tool's default range: Otsu's threshold of the image up to its maximum.

        From a sample of the voxels (:mod:`.otsu`, ~10 ms), not trame-slicer's full-volume ITK
        calculator (about a second on a CT: a freeze when the tool is picked).
        """
        values = self._image_values()
        if values is None or values.size == 0:
            return (0.0, 0.0)
        return (otsu_threshold(values), float(values.max()))

    def set_surfaces_visible(self, visible: bool) -> None:
        """Build segment surfaces for the 3D view (each edit then updates them) or stop."""
        self.editor.set_surface_representation_enabled(bool(visible))

    def labels(self) -> np.ndarray:
        """Painted voxels as one label array on the image grid (``[k, j, i]``; 0 = none).

        Segment ``i`` has value ``i + 1``; where segments overlap the later one wins.
        """
        volume = self._scene.volume_node
        if volume is None or self.node is None:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        i, j, k = volume.GetImageData().GetDimensions()
        ids = self.segment_ids
        out = np.zeros((k, j, i), dtype=np.uint8 if len(ids) < 255 else np.uint16)
        for number, segment_id in enumerate(ids, start=1):
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
        return int(np.count_nonzero(self.mask(self._id(index))))

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
        """Set the Paint/Erase brush diameter in millimetres (kept in :data:`BRUSH_RANGE_MM`)."""
        diameter = min(max(float(diameter), BRUSH_RANGE_MM[0]), BRUSH_RANGE_MM[1])
        if diameter == self._brush_mm:
            return
        self._brush_mm = diameter
        effect = self.active_effect()
        if effect is not None and hasattr(effect, "set_brush_diameter"):
            self._apply_brush(effect)
        self._notify()

    def _on_brush_parameters(self) -> None:
        """Follow brush changes made in a view (Shift+wheel is handled by trame-slicer)."""
        effect = self.active_effect()
        if effect is None or not hasattr(effect, "get_brush_diameter"):
            return
        diameter = float(effect.get_brush_diameter())
        if abs(diameter - self._brush_mm) > 1e-6:
            self._brush_mm = -1.0  # set_brush_mm clamps and writes the effect back if needed
            self.set_brush_mm(diameter)

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
        self._ensure_active()  # undoing an addition removes the segment being edited
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


def _set_algorithm_tags(vtk_segment: Any, segment: Segment) -> None:
    """Store how ``segment`` was made in its ``vtkSegment`` (no tags: MANUAL)."""
    if segment.algorithm == AlgorithmType.MANUAL:
        vtk_segment.RemoveTag(ALGORITHM_TYPE_TAG)
        vtk_segment.RemoveTag(ALGORITHM_NAME_TAG)
        return
    vtk_segment.SetTag(ALGORITHM_TYPE_TAG, segment.algorithm.value)
    if segment.algorithm_name:
        vtk_segment.SetTag(ALGORITHM_NAME_TAG, segment.algorithm_name)
