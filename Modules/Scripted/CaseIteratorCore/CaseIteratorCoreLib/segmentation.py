"""Segmentations in the core: segments with their terminology, voxels as shared label layers.

The layout is the one 3D Slicer uses: segments that do not overlap share one label layer
(each with its own label value); overlapping segments live in further layers. That makes the
round trip to a slicer-core segmentation node a copy of arrays, a LABELMAP DICOM SEG a single
layer, and a BINARY SEG one comparison per segment. No Qt, no MRML here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from .batch_file import SegmentTemplate
from .geometry import Geometry
from .terminology import Code


class AlgorithmType(StrEnum):
    """How a segment was made (DICOM SegmentAlgorithmType)."""

    MANUAL = "MANUAL"
    SEMIAUTOMATIC = "SEMIAUTOMATIC"
    AUTOMATIC = "AUTOMATIC"


@dataclass(frozen=True)
class Segment:
    """One segment: what it is (coded), how it looks, how it was made."""

    name: str
    category: Code
    type: Code
    color: tuple[int, int, int]
    region: Code | None = None
    algorithm: AlgorithmType = AlgorithmType.MANUAL
    #: Name of the algorithm for SEMIAUTOMATIC/AUTOMATIC segments (e.g. "Threshold").
    algorithm_name: str = ""

    @classmethod
    def from_template(cls, template: SegmentTemplate) -> Segment:
        """A manual segment from a batch's ``[[segments]]`` template."""
        return cls(template.name, template.category, template.type, template.color, template.region)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Segments on an image grid, their voxels in shared label layers.

    Parameters
    ----------
    geometry
        The grid of the image the segmentation belongs to.
    segments
        The segments, in display order.
    layers
        Unsigned integer label arrays shaped ``geometry.shape``.
    placement
        For each segment, ``(layer index, label value)``; label values are > 0 and unique in
        their layer.
    """

    geometry: Geometry
    segments: tuple[Segment, ...]
    layers: tuple[np.ndarray, ...]
    placement: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.placement) != len(self.segments):
            raise ValueError(
                f"placement has {len(self.placement)} entries for {len(self.segments)} segments"
            )
        seen = set()
        for index, (layer, value) in enumerate(self.placement):
            if not 0 <= layer < len(self.layers):
                raise ValueError(f"segment {index} is placed in layer {layer}, which is missing")
            if value <= 0 or (layer, value) in seen:
                raise ValueError(
                    f"segment {index} has label value {value} in layer {layer}, "
                    "which is not positive or is used twice"
                )
            seen.add((layer, value))
        for layer in self.layers:
            if layer.shape != self.geometry.shape or not np.issubdtype(
                layer.dtype, np.unsignedinteger
            ):
                raise ValueError(
                    f"a layer must be unsigned integers shaped {self.geometry.shape}, got "
                    f"{layer.dtype} {layer.shape}"
                )

    @classmethod
    def empty(cls, geometry: Geometry, segments: Sequence[Segment]) -> Segmentation:
        """No voxel painted yet: one layer, segment ``i`` has label value ``i + 1``."""
        dtype = np.uint8 if len(segments) < 256 else np.uint16
        layer = np.zeros(geometry.shape, dtype=dtype)
        return cls(
            geometry, tuple(segments), (layer,), tuple((0, i + 1) for i in range(len(segments)))
        )

    @classmethod
    def from_labelmap(
        cls, labels: np.ndarray, geometry: Geometry, segments: Sequence[Segment]
    ) -> Segmentation:
        """One label array where value ``i + 1`` is segment ``i`` (0 is background).

        Raises
        ------
        ValueError
            When the array holds values with no segment, or is not on the grid.
        """
        labels = np.asarray(labels)
        if labels.shape != geometry.shape:
            raise ValueError(f"labelmap shape {labels.shape} is not the grid's {geometry.shape}")
        values = np.unique(labels)
        unknown = [int(v) for v in values if v < 0 or v > len(segments)]
        if unknown:
            raise ValueError(
                f"label values {unknown[:10]} have no segment ({len(segments)} segments: values "
                f"1 to {len(segments)})"
            )
        dtype = np.uint8 if len(segments) < 256 else np.uint16
        return cls(
            geometry,
            tuple(segments),
            (labels.astype(dtype, copy=False),),
            tuple((0, i + 1) for i in range(len(segments))),
        )

    @classmethod
    def from_masks(
        cls, masks: Sequence[np.ndarray], geometry: Geometry, segments: Sequence[Segment]
    ) -> Segmentation:
        """One boolean mask per segment; overlapping segments go to further layers."""
        if len(masks) != len(segments):
            raise ValueError(f"{len(masks)} masks for {len(segments)} segments")
        layers: list[np.ndarray] = []
        used: list[int] = []  # label values given per layer (an empty mask still takes one)
        placement = []
        for mask in masks:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != geometry.shape:
                raise ValueError(f"mask shape {mask.shape} is not the grid's {geometry.shape}")
            for number, layer in enumerate(layers):
                if used[number] < 255 and not np.any(layer[mask]):
                    used[number] += 1
                    layer[mask] = used[number]
                    placement.append((number, used[number]))
                    break
            else:
                layer = np.zeros(geometry.shape, dtype=np.uint8)
                layer[mask] = 1
                layers.append(layer)
                used.append(1)
                placement.append((len(layers) - 1, 1))
        if not layers:
            layers.append(np.zeros(geometry.shape, dtype=np.uint8))
        return cls(geometry, tuple(segments), tuple(layers), tuple(placement))

    def mask(self, index: int) -> np.ndarray:
        """Boolean voxels of segment ``index``."""
        layer, value = self.placement[index]
        return self.layers[layer] == value

    @property
    def overlapping(self) -> bool:
        """Whether some segments overlap (they need more than one layer)."""
        used = {layer for layer, _ in self.placement}
        return len(used) > 1

    def labelmap(self) -> np.ndarray:
        """A single label array, value ``i + 1`` for segment ``i``.

        Raises
        ------
        ValueError
            When segments overlap (a voxel can hold only one label).
        """
        if self.overlapping:
            names = ", ".join(s.name for s in self.segments)
            raise ValueError(f"segments overlap ({names}); they cannot share one labelmap")
        dtype = np.uint8 if len(self.segments) < 256 else np.uint16
        out = np.zeros(self.geometry.shape, dtype=dtype)
        for index in range(len(self.segments)):
            out[self.mask(index)] = index + 1
        return out

    def voxel_counts(self) -> tuple[int, ...]:
        """Painted voxels per segment."""
        return tuple(int(np.count_nonzero(self.mask(i))) for i in range(len(self.segments)))

    def with_segments(self, segments: Sequence[Segment]) -> Segmentation:
        """The same voxels with other segment descriptions (names, codes, colours)."""
        return replace(self, segments=tuple(segments))


def painted_box(layer: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest ``(k, j, i)`` box holding every non-zero voxel of ``layer``, or None."""
    planes = np.flatnonzero(layer.reshape(layer.shape[0], -1).any(axis=1))
    if planes.size == 0:
        return None
    k0, k1 = int(planes[0]), int(planes[-1]) + 1
    part = layer[k0:k1]
    rows = np.flatnonzero(part.any(axis=(0, 2)))
    columns = np.flatnonzero(part.any(axis=(0, 1)))
    return (
        slice(k0, k1),
        slice(int(rows[0]), int(rows[-1]) + 1),
        slice(int(columns[0]), int(columns[-1]) + 1),
    )
