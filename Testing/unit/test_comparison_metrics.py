"""Comparison metrics: analytic shapes, physical space on anisotropic and oblique grids, the
empty cases, and agreement with SimpleITK's own overlap and Hausdorff filters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from CaseIteratorCoreLib.comparison_metrics import (
    EmptySide,
    MatchedBy,
    match_segments,
    segment_metrics,
)
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.segmentation import Segment
from CaseIteratorCoreLib.terminology import Code


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    axis_v = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = math.radians(degrees)
    cross = np.array(
        [[0, -axis_v[2], axis_v[1]], [axis_v[2], 0, -axis_v[0]], [-axis_v[1], axis_v[0], 0]]
    )
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def lps_of_voxels(geometry: Geometry) -> np.ndarray:
    """LPS millimetres of every voxel centre, shaped ``geometry.shape + (3,)``."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in geometry.shape), indexing="ij")
    ijk = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk @ geometry.ijk_to_lps().T)[..., :3]


def sphere(points: np.ndarray, centre, radius: float) -> np.ndarray:
    return np.sum((points - np.asarray(centre)) ** 2, axis=-1) <= radius**2


def sphere_overlap_dice(radius: float, offset: float) -> float:
    """Dice of two spheres of equal radius whose centres are ``offset`` apart (lens volume)."""
    lens = math.pi * (4 * radius + offset) * (2 * radius - offset) ** 2 / 12
    return lens / (4 / 3 * math.pi * radius**3)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour outside the mask (outside the image is outside)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def brute_force_distances(a: np.ndarray, b: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Pooled surface distances by measuring every pair of surface voxels in LPS mm."""
    points = lps_of_voxels(geometry)
    pa, pb = points[surface(a)], points[surface(b)]
    pairwise = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)
    return np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)])


def sitk_image(mask: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(geometry.direction.ravel()))
    return image


def test_offset_spheres_give_analytic_dice_and_hausdorff() -> None:
    geometry = Geometry((64, 64, 64), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    points = lps_of_voxels(geometry)
    radius, offset = 16.0, 5.0
    a = sphere(points, (31.5, 31.5, 31.5), radius)
    b = sphere(points, (31.5 + offset, 31.5, 31.5), radius)
    metrics = segment_metrics(a, b, geometry)
    assert metrics.dice == pytest.approx(sphere_overlap_dice(radius, offset), abs=0.01)
    # The farthest surface points are on the axis of the offset: exactly the offset apart.
    assert metrics.hd_max_mm == pytest.approx(offset, abs=1.0)
    assert 0 < metrics.msd_mm < metrics.hd95_mm <= metrics.hd_max_mm
    volume_ml = 4 / 3 * math.pi * radius**3 / 1000
    assert metrics.volume_reference_ml == pytest.approx(volume_ml, rel=0.02)
    assert metrics.volume_diff_ml == pytest.approx(0.0, abs=0.05)


def test_offset_boxes_on_anisotropic_grid_measure_millimetres() -> None:
    spacing = (0.6, 0.9, 2.5)  # (i, j, k)
    geometry = Geometry((40, 40, 30), (10.0, -20.0, 5.0), spacing, np.eye(3))
    a = np.zeros(geometry.shape, dtype=bool)
    b = np.zeros(geometry.shape, dtype=bool)
    a[5:15, 10:30, 10:30] = True  # [k, j, i]: 10 slices, 20 rows, 20 columns
    b[8:18, 10:30, 10:30] = True  # 3 slices further: 7.5 mm along k
    metrics = segment_metrics(a, b, geometry)
    assert metrics.dice == pytest.approx(2 * 7 / 20)
    assert metrics.jaccard == pytest.approx(7 / 13)
    assert metrics.hd_max_mm == pytest.approx(3 * 2.5, abs=1e-5)
    voxel_ml = 0.6 * 0.9 * 2.5 / 1000
    assert metrics.volume_reference_ml == pytest.approx(10 * 20 * 20 * voxel_ml)
    assert metrics.voxels_other == 10 * 20 * 20
    # The same shift along i (0.6 mm voxels) is a much smaller distance.
    c = np.zeros(geometry.shape, dtype=bool)
    c[5:15, 10:30, 13:33] = True
    assert segment_metrics(a, c, geometry).hd_max_mm == pytest.approx(3 * 0.6, abs=1e-5)


def test_oblique_anisotropic_grid_measures_in_patient_space() -> None:
    direction = rotation((1.0, 2.0, 0.5), 35.0)
    geometry = Geometry((56, 60, 40), (-30.0, -20.0, 12.0), (0.9, 0.8, 1.5), direction)
    points = lps_of_voxels(geometry)
    centre = points[20, 30, 28]
    radius, offset = 14.0, 4.0
    shift = offset * np.array([0.6, -0.8, 0.0])  # a direction that is none of the grid axes
    a = sphere(points, centre, radius)
    b = sphere(points, centre + shift, radius)
    metrics = segment_metrics(a, b, geometry)
    assert metrics.dice == pytest.approx(sphere_overlap_dice(radius, offset), abs=0.015)
    assert metrics.hd_max_mm == pytest.approx(offset, abs=1.5)
    assert metrics.volume_reference_ml == pytest.approx(
        4 / 3 * math.pi * radius**3 / 1000, rel=0.02
    )


def test_hd95_is_the_95th_percentile_of_pooled_surface_distances() -> None:
    """Checked against every pair of surface voxels measured in LPS mm (oblique grid)."""
    geometry = Geometry((18, 16, 12), (3.0, -7.0, 1.0), (0.7, 1.1, 2.0), rotation((0, 1, 1), 20))
    rng = np.random.default_rng(8)
    a = np.zeros(geometry.shape, dtype=bool)
    a[3:9, 4:12, 3:14] = True
    b = np.zeros(geometry.shape, dtype=bool)
    b[4:10, 2:11, 5:16] = True
    b[1:3, 12:15, 1:4] = True  # a stray island far away: the tail HD95 must see
    b &= rng.random(geometry.shape) > 0.05  # holes make the surfaces irregular
    expected = brute_force_distances(a, b, geometry)
    metrics = segment_metrics(a, b, geometry)
    assert metrics.hd95_mm == pytest.approx(np.percentile(expected, 95), rel=1e-5)
    assert metrics.hd_max_mm == pytest.approx(expected.max(), rel=1e-5)
    assert metrics.msd_mm == pytest.approx(expected.mean(), rel=1e-5)
    # The pooled definition differs from averaging the two directed 95th percentiles.
    half = len(surface(a)[surface(a)])
    directed = (np.percentile(expected[:half], 95) + np.percentile(expected[half:], 95)) / 2
    assert metrics.hd95_mm != pytest.approx(directed, rel=1e-3)


def test_overlap_and_hausdorff_equal_simpleitk_filters() -> None:
    geometry = Geometry((48, 40, 30), (1.0, 2.0, 3.0), (0.8, 0.7, 2.0), rotation((0, 0, 1), 30))
    rng = np.random.default_rng(3)
    noise = sitk.GetImageFromArray(rng.random(geometry.shape).astype(np.float32))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, 2.0))
    a = smooth > np.percentile(smooth, 70)
    b = np.roll(smooth, 2, axis=2) > np.percentile(smooth, 72)
    metrics = segment_metrics(a, b, geometry)

    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk_image(a, geometry), sitk_image(b, geometry))
    assert metrics.dice == pytest.approx(overlap.GetDiceCoefficient(), rel=1e-9)
    assert metrics.jaccard == pytest.approx(overlap.GetJaccardCoefficient(), rel=1e-9)

    # Surfaces as defined (outside the image is background): pad, then LabelContour.
    padded = Geometry(
        tuple(n + 2 for n in geometry.size), geometry.origin, geometry.spacing, geometry.direction
    )
    contour_a = sitk.LabelContour(sitk_image(np.pad(a, 1), padded), fullyConnected=False)
    contour_b = sitk.LabelContour(sitk_image(np.pad(b, 1), padded), fullyConnected=False)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(contour_a, contour_b)
    assert metrics.hd_max_mm == pytest.approx(hausdorff.GetHausdorffDistance(), rel=1e-5)


def test_identical_masks_agree_perfectly() -> None:
    geometry = Geometry((20, 20, 20), (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), np.eye(3))
    a = np.zeros(geometry.shape, dtype=bool)
    a[2:8, 3:17, 0:20] = True  # touches the image edge: that face is surface too
    metrics = segment_metrics(a, a.copy(), geometry)
    assert (metrics.dice, metrics.jaccard) == (1.0, 1.0)
    assert (metrics.hd95_mm, metrics.hd_max_mm, metrics.msd_mm) == (0.0, 0.0, 0.0)
    assert metrics.empty is None


def test_both_empty_agree_and_one_empty_has_undefined_distances() -> None:
    geometry = Geometry((10, 10, 10), (0.0, 0.0, 0.0), (2.0, 2.0, 2.0), np.eye(3))
    empty = np.zeros(geometry.shape, dtype=bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True

    both = segment_metrics(empty, empty, geometry)
    assert (both.dice, both.jaccard, both.hd95_mm, both.hd_max_mm, both.msd_mm) == (1, 1, 0, 0, 0)
    assert both.empty is EmptySide.BOTH and both.volume_diff_ml == 0.0

    missed = segment_metrics(full, empty, geometry)
    assert (missed.dice, missed.jaccard) == (0.0, 0.0)
    assert (missed.hd95_mm, missed.hd_max_mm, missed.msd_mm) == (None, None, None)
    assert missed.empty is EmptySide.OTHER
    assert missed.volume_diff_ml == pytest.approx(-27 * 8 / 1000)
    extra = segment_metrics(empty, full, geometry)
    assert extra.empty is EmptySide.REFERENCE and extra.volume_other_ml == pytest.approx(0.216)
    # Valid JSON: undefined values are null, never NaN or Infinity.
    text = json.dumps([missed.as_dict(), extra.as_dict()], allow_nan=False)
    assert json.loads(text)[0]["hd95_mm"] is None and json.loads(text)[0]["empty"] == "other"


def test_sheared_grid_and_wrong_shape_are_refused() -> None:
    sheared = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    geometry = Geometry((8, 8, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), sheared)
    mask = np.ones(geometry.shape, dtype=bool)
    with pytest.raises(ValueError, match="not orthonormal"):
        segment_metrics(mask, mask, geometry)
    square = Geometry((8, 8, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    with pytest.raises(ValueError, match=r"other mask shape \(4, 8, 8\)"):
        segment_metrics(mask, mask[:4], square)


def segment(name: str, type_code: str, scheme: str = "SCT") -> Segment:
    category = Code(scheme, "123037004", "Anatomical Structure")
    return Segment(name, category, Code(scheme, type_code, name), (1, 2, 3))


def test_segments_pair_by_code_then_by_name() -> None:
    reference = [segment("Liver", "10200004"), segment("Spleen", "78961009"), segment("A", "1")]
    other = [
        segment("Spleen (AI)", "78961009", scheme="SRT"),  # old SNOMED designator: same code
        segment("liver", "10200004"),
        segment("Tumour", "4147007"),
    ]
    pairs = match_segments(reference, other)
    assert [(p.name, p.reference_index, p.other_index, p.matched_by) for p in pairs] == [
        ("Liver", 0, 1, MatchedBy.CODE),
        ("Spleen", 1, 0, MatchedBy.CODE),
        ("A", 2, None, MatchedBy.REFERENCE_ONLY),
        ("Tumour", None, 2, MatchedBy.OTHER_ONLY),
    ]


def test_generic_codes_used_twice_pair_by_name() -> None:
    """Labelmaps without templates give every segment the same generic code."""
    reference = [segment("Segment 1", "85756007"), segment("Segment 2", "85756007")]
    other = [segment("segment 2", "85756007"), segment("Segment 1", "85756007")]
    pairs = match_segments(reference, other)
    assert [(p.reference_index, p.other_index, p.matched_by) for p in pairs] == [
        (0, 1, MatchedBy.NAME),
        (1, 0, MatchedBy.NAME),
    ]
