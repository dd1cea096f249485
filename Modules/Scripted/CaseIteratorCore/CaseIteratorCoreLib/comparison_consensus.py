"""Starting points for adjudication: a majority vote of a case's compared segmentations.

The reading app's comparison mode lets the reader start their result from one of the compared
segmentations or from their majority vote (:func:`majority_vote`), then edit it. Segments are
paired across segmentations as the metrics pair them (:func:`.comparison_metrics.match_segments`:
terminology code, else name), with the reference's segments first. Plain numpy, no Qt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .comparison_inputs import LoadedSegmentation
from .comparison_metrics import match_segments
from .segmentation import Segment, Segmentation


@dataclass(frozen=True)
class MajorityRule:
    """How many of ``total`` segmentations must hold a voxel: more than half."""

    total: int

    @property
    def needed(self) -> int:
        """Votes a voxel needs (2 of 2, 2 of 3, 3 of 4...)."""
        return self.total // 2 + 1

    def describe(self) -> str:
        """``"majority vote (2 of 3)"``."""
        return f"majority vote ({self.needed} of {self.total})"


def majority_vote(loaded: Sequence[LoadedSegmentation]) -> Segmentation:
    """The voxels more than half of ``loaded`` agree on, segment by segment.

    Parameters
    ----------
    loaded
        The case's segmentations on one image grid, the reference first. Its segments (names,
        codes, colours) are the result's; a segment only others have is added after them.

    Returns
    -------
    Segmentation
        One mask per paired segment: voxels in at least :attr:`MajorityRule.needed`
        segmentations (with two, where both agree).

    Raises
    ------
    ValueError
        When ``loaded`` is empty or the segmentations are not on one grid.
    """
    if not loaded:
        raise ValueError("majority_vote: no segmentation given; pass the case's segmentations")
    reference = loaded[0].segmentation
    geometry = reference.geometry
    for item in loaded[1:]:
        if item.segmentation.geometry.shape != geometry.shape:
            raise ValueError(
                f"majority_vote: {item.name!r} is on grid {item.segmentation.geometry.describe()}, "
                f"not on the reference's {geometry.describe()}"
            )
    segments: list[Segment] = list(reference.segments)
    votes: list[np.ndarray] = [reference.mask(i).astype(np.uint8) for i in range(len(segments))]
    for item in loaded[1:]:
        other = item.segmentation
        for pair in match_segments(segments, other.segments):
            if pair.other_index is None:
                continue
            mask = other.mask(pair.other_index)
            if pair.reference_index is None:  # a segment the reference does not have
                segments.append(other.segments[pair.other_index])
                votes.append(mask.astype(np.uint8))
            else:
                votes[pair.reference_index] += mask
    needed = MajorityRule(len(loaded)).needed
    return Segmentation.from_masks([v >= needed for v in votes], geometry, segments)


__all__ = ["MajorityRule", "majority_vote"]
