"""Majority vote of compared segmentations (the adjudication starting point)."""

from __future__ import annotations

import numpy as np
import pytest

from CaseIteratorCoreLib.comparison_consensus import MajorityRule, majority_vote
from CaseIteratorCoreLib.comparison_inputs import LoadedSegmentation
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code

#: Size (i, j, k) = (12, 10, 8): masks are (k, j, i) = (8, 10, 12) arrays.
GRID = Geometry((12, 10, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))
ANATOMY = Code("SCT", "123037004", "Anatomical Structure")
LIVER = Segment("Liver", ANATOMY, Code("SCT", "10200004", "Liver"), (200, 120, 90))
LESION = Segment("Lesion", ANATOMY, Code("SCT", "4147007", "Mass"), (220, 60, 60))


def box(k: slice, j: slice, i: slice) -> np.ndarray:
    mask = np.zeros(GRID.shape, bool)
    mask[k, j, i] = True
    return mask


def loaded(name: str, masks: list[np.ndarray], segments: list[Segment]) -> LoadedSegmentation:
    return LoadedSegmentation(name, f"{name}.nrrd", Segmentation.from_masks(masks, GRID, segments))


def test_two_readers_keep_where_both_agree() -> None:
    a = box(slice(1, 5), slice(2, 6), slice(2, 8))  # 4*4*6 = 96 voxels
    b = box(slice(3, 7), slice(2, 6), slice(2, 8))  # overlaps a on slices 3-4
    result = majority_vote([loaded("mask", [a], [LIVER]), loaded("AI", [b], [LIVER])])
    assert result.voxel_counts() == (48,)  # slices 3 and 4: 2 * 4 * 6
    assert np.array_equal(result.mask(0), a & b)
    assert MajorityRule(2).describe() == "majority vote (2 of 2)"


def test_three_readers_two_of_three_and_segments_paired_by_code() -> None:
    a = box(slice(0, 4), slice(0, 5), slice(0, 4))
    b = box(slice(2, 6), slice(0, 5), slice(0, 4))
    c = box(slice(3, 7), slice(0, 5), slice(0, 4))
    renamed = Segment("Hepar", LIVER.category, LIVER.type, (0, 0, 0))  # same code, other name
    lesion = box(slice(7, 8), slice(1, 2), slice(1, 2))
    result = majority_vote(
        [
            loaded("r1", [a], [LIVER]),
            loaded("r2", [b, lesion], [renamed, LESION]),
            loaded("r3", [c, lesion], [LIVER, LESION]),
        ]
    )
    votes = a.astype(int) + b + c
    assert [s.name for s in result.segments] == ["Liver", "Lesion"]  # the reference's names first
    assert np.array_equal(result.mask(0), votes >= 2)
    assert result.voxel_counts()[1] == 1  # the lesion two readers drew is kept
    assert MajorityRule(3).needed == 2 and MajorityRule(4).needed == 3


def test_nothing_or_mixed_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="no segmentation given"):
        majority_vote([])
    other = Geometry((6, 10, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))
    small = LoadedSegmentation(
        "AI", "ai.nrrd", Segmentation.from_masks([np.zeros(other.shape, bool)], other, [LIVER])
    )
    with pytest.raises(ValueError, match="'AI' is on grid"):
        majority_vote(
            [loaded("mask", [box(slice(0, 1), slice(0, 1), slice(0, 1))], [LIVER]), small]
        )
