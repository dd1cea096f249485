"""Agreement of two segmentations of one segment: overlap, surface distances, volumes.

Everything is measured in physical space on the image grid: voxel volumes and distances use the
grid's spacing (anisotropic grids are right), and an oblique grid needs nothing more, because
its direction cosines rotate the grid without stretching it (a sheared grid is refused).

Definitions (``A`` the reference mask, ``B`` the other one, ``|.|`` a voxel count):

Dice
    ``2 |A ∩ B| / (|A| + |B|)``; equal to SimpleITK's ``LabelOverlapMeasuresImageFilter``
    ``GetDiceCoefficient`` (a test checks it).
Jaccard
    ``|A ∩ B| / |A ∪ B|`` (``GetJaccardCoefficient``).
Surface
    The voxels of a mask that have a face neighbour (6-connectivity) outside it; outside the
    image counts as outside (SimpleITK ``LabelContour(fullyConnected=False)`` on the image
    padded with one voxel of background).
Surface distances
    For each surface voxel of ``A``, the distance from its centre to the nearest surface-voxel
    centre of ``B`` (SimpleITK ``SignedMaurerDistanceMap`` of ``B``'s surface, in mm), and the
    same from ``B`` to ``A``. Both sets are **pooled** (symmetric).
HD max (``hd_max_mm``)
    The largest pooled distance: the symmetric Hausdorff distance between the two surfaces,
    equal to SimpleITK's ``HausdorffDistanceImageFilter`` on the surface images.
HD95 (``hd95_mm``)
    The 95th percentile of the pooled distances (numpy's default linear interpolation).
Mean surface distance (``msd_mm``)
    The mean of the pooled distances (average symmetric surface distance, ASSD).
Volumes
    Voxel count times the voxel volume, in mL; ``volume_diff_ml`` is other minus reference.

Empty segments:

* both empty: Dice 1, Jaccard 1, all distances 0 (the two agree exactly);
* one empty: Dice 0, Jaccard 0, distances **undefined**: ``None`` here, ``null`` in JSON, an
  empty cell in CSV (never NaN or infinity, so JSON stays valid); summaries leave them out and
  count them. ``empty`` says which one is empty.

Segments of the two segmentations are paired by :func:`match_segments`: by terminology code
(category, type and region, SRT counted as SCT) where that code is unique in both, else by name
(ignoring case).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry
from .segmentation import Segment
from .terminology import Code

#: Percentile of the pooled surface distances reported as HD95.
HD_PERCENTILE = 95.0


class EmptySide(StrEnum):
    """Which of the two masks is empty (``None`` when neither is)."""

    BOTH = "both"
    REFERENCE = "reference"
    OTHER = "other"


@dataclass(frozen=True)
class SegmentMetrics:
    """Agreement of one segment between a reference mask and another mask.

    Distances are ``None`` when exactly one mask is empty (see the module docstring).
    """

    dice: float
    jaccard: float
    hd95_mm: float | None
    hd_max_mm: float | None
    msd_mm: float | None
    volume_reference_ml: float
    volume_other_ml: float
    volume_diff_ml: float
    voxels_reference: int
    voxels_other: int
    empty: EmptySide | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain values for JSON and CSV (``empty`` as its string, or None)."""
        values = asdict(self)
        values["empty"] = str(self.empty) if self.empty else None
        return values


def check_grid(geometry: Geometry) -> None:
    """Refuse a grid whose axes are not orthonormal (distances would be wrong).

    Raises
    ------
    ValueError
        When the direction matrix is not a rotation (a sheared or scaled grid).
    """
    direction = geometry.direction
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError(
            f"the image grid's axes are not orthonormal (direction {direction.round(4).tolist()})"
            "; surface distances need a grid without shear"
        )


def _image(array: np.ndarray, spacing: Sequence[float]) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8, copy=False))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def _crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box, padded with one voxel of background.

    Distances between voxels inside the box do not depend on voxels outside it (there are
    none of either mask), so this gives the full-image answer at a fraction of the cost.
    """
    union = a | b
    box = []
    for axis in range(3):
        others = tuple(n for n in range(3) if n != axis)
        hit = np.flatnonzero(union.any(axis=others))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    cut = tuple(box)
    return np.pad(a[cut], 1), np.pad(b[cut], 1)


def _surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to ``b``'s surface, and back."""
    surface_a = sitk.LabelContour(_image(a, spacing), fullyConnected=False)
    surface_b = sitk.LabelContour(_image(b, spacing), fullyConnected=False)

    def directed(source: sitk.Image, target: sitk.Image) -> np.ndarray:
        distance = sitk.SignedMaurerDistanceMap(
            target, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        values = sitk.GetArrayViewFromImage(distance)[sitk.GetArrayViewFromImage(source) > 0]
        # Voxels inside the (thin) target surface are at distance 0, not negative.
        return np.maximum(values, 0.0).astype(np.float64)

    return directed(surface_a, surface_b), directed(surface_b, surface_a)


def segment_metrics(reference: np.ndarray, other: np.ndarray, geometry: Geometry) -> SegmentMetrics:
    """Compare two boolean masks of one segment on ``geometry``.

    Parameters
    ----------
    reference, other
        Masks shaped ``geometry.shape`` (``[k, j, i]``); non-zero is inside.
    geometry
        The image grid (spacing in mm; its direction must be orthonormal).

    Returns
    -------
    SegmentMetrics
        See the module docstring for the definitions and the empty cases.

    Raises
    ------
    ValueError
        When a mask is not on the grid, or the grid is sheared.
    """
    a = np.asarray(reference) != 0
    b = np.asarray(other) != 0
    for label, mask in (("reference", a), ("other", b)):
        if mask.shape != geometry.shape:
            raise ValueError(f"{label} mask shape {mask.shape} is not the grid's {geometry.shape}")
    check_grid(geometry)
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    count_a, count_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    volume_a, volume_b = count_a * voxel_ml, count_b * voxel_ml
    volumes = {
        "volume_reference_ml": volume_a,
        "volume_other_ml": volume_b,
        "volume_diff_ml": volume_b - volume_a,
        "voxels_reference": count_a,
        "voxels_other": count_b,
    }
    if count_a == 0 and count_b == 0:
        return SegmentMetrics(1.0, 1.0, 0.0, 0.0, 0.0, **volumes, empty=EmptySide.BOTH)
    if count_a == 0 or count_b == 0:
        side = EmptySide.REFERENCE if count_a == 0 else EmptySide.OTHER
        return SegmentMetrics(0.0, 0.0, None, None, None, **volumes, empty=side)
    a, b = _crop(a, b)
    both = int(np.count_nonzero(a & b))
    dice = 2.0 * both / (count_a + count_b)
    jaccard = both / (count_a + count_b - both)
    # Spacing in (i, j, k) order, as the masks' [k, j, i] arrays give SimpleITK images.
    to_b, to_a = _surface_distances(a, b, geometry.spacing)
    pooled = np.concatenate([to_b, to_a])
    return SegmentMetrics(
        dice=dice,
        jaccard=jaccard,
        hd95_mm=float(np.percentile(pooled, HD_PERCENTILE)),
        hd_max_mm=float(pooled.max()),
        msd_mm=float(pooled.mean()),
        **volumes,
    )


# --------------------------------------------------------------------------------------------
# Pairing the segments of two segmentations
# --------------------------------------------------------------------------------------------


class MatchedBy(StrEnum):
    """How two segments were paired, or which side has a segment the other lacks."""

    CODE = "code"
    NAME = "name"
    REFERENCE_ONLY = "reference only"
    OTHER_ONLY = "other only"


@dataclass(frozen=True)
class SegmentPair:
    """One segment of the reference and its counterpart in the other segmentation.

    ``reference_index`` or ``other_index`` is None when that side has no such segment; the
    comparison then treats the missing side as empty.
    """

    name: str
    reference_index: int | None
    other_index: int | None
    matched_by: MatchedBy
    code: str | None = None


def _code_key(code: Code | None) -> tuple[str, str] | None:
    if code is None:
        return None
    scheme = "SCT" if code.scheme == "SRT" else code.scheme  # SRT is SNOMED's old designator
    return (scheme, code.value)


def segment_code_key(segment: Segment) -> tuple:
    """What identifies a segment's meaning: its category, type and region codes."""
    return (_code_key(segment.category), _code_key(segment.type), _code_key(segment.region))


def match_segments(reference: Sequence[Segment], other: Sequence[Segment]) -> list[SegmentPair]:
    """Pair the segments of two segmentations.

    A reference segment pairs with the other segment of the same terminology code (category,
    type, region) when that code is used by exactly one segment on each side; the rest pair
    by name, ignoring case. Unpaired segments come last, as ``REFERENCE_ONLY`` (in reference
    order) then ``OTHER_ONLY``.
    """
    ref_keys = [segment_code_key(s) for s in reference]
    other_keys = [segment_code_key(s) for s in other]
    ref_count, other_count = Counter(ref_keys), Counter(other_keys)
    partner: dict[int, tuple[int, MatchedBy]] = {}
    used: set[int] = set()
    for index, key in enumerate(ref_keys):
        if ref_count[key] == 1 and other_count[key] == 1:
            found = other_keys.index(key)
            partner[index] = (found, MatchedBy.CODE)
            used.add(found)
    for index, segment in enumerate(reference):
        if index in partner:
            continue
        name = segment.name.casefold()
        found = next(
            (
                n
                for n, candidate in enumerate(other)
                if n not in used and candidate.name.casefold() == name
            ),
            None,
        )
        if found is not None:
            partner[index] = (found, MatchedBy.NAME)
            used.add(found)
    pairs = []
    for index, segment in enumerate(reference):
        code = str(segment.type)
        if index in partner:
            found, how = partner[index]
            pairs.append(SegmentPair(segment.name, index, found, how, code))
        else:
            pairs.append(SegmentPair(segment.name, index, None, MatchedBy.REFERENCE_ONLY, code))
    pairs += [
        SegmentPair(segment.name, None, n, MatchedBy.OTHER_ONLY, str(segment.type))
        for n, segment in enumerate(other)
        if n not in used
    ]
    return pairs


def finite_or_none(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None (for JSON that must stay valid)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


__all__ = [
    "HD_PERCENTILE",
    "EmptySide",
    "MatchedBy",
    "SegmentMetrics",
    "SegmentPair",
    "check_grid",
    "finite_or_none",
    "match_segments",
    "segment_code_key",
    "segment_metrics",
]
