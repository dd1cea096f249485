"""Patient-direction letters at the edges of a slice view (R/L, A/P, S/I).

The letters come from the slice node's SliceToRAS matrix, so they are right whatever the
orientation preset: with Slicer's radiological convention the axial view shows the patient's
right on the screen's left, hence "R" on the left edge and "L" on the right edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Letters of the positive RAS directions (right, anterior, superior) and of their opposites.
_POSITIVE = ("R", "A", "S")
_NEGATIVE = ("L", "P", "I")
#: Components smaller than this (of a unit vector) are not named (oblique views get two letters).
_MIN_COMPONENT = 0.3


def direction_letters(ras: np.ndarray) -> str:
    """Letters naming where the RAS direction ``ras`` points in the patient, strongest first.

    Examples
    --------
    >>> direction_letters(np.array([-1.0, 0.0, 0.0]))
    'L'
    >>> direction_letters(np.array([0.0, 0.8, 0.6]))
    'AS'
    """
    vector = np.asarray(ras, dtype=float)[:3]
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return ""
    vector = vector / norm
    letters = []
    for axis in np.argsort(-np.abs(vector), kind="stable"):
        value = vector[axis]
        if abs(value) < _MIN_COMPONENT:
            break
        letters.append(_POSITIVE[axis] if value > 0 else _NEGATIVE[axis])
    return "".join(letters)


@dataclass(frozen=True)
class EdgeLabels:
    """The letters to draw at each edge of a view."""

    left: str
    right: str
    top: str
    bottom: str


def edge_labels(slice_to_ras: np.ndarray) -> EdgeLabels:
    """Edge letters of a slice view from its 4x4 SliceToRAS matrix.

    Column 0 is the RAS direction of the screen's +x (towards the right edge), column 1 that of
    the screen's +y (towards the top edge).
    """
    matrix = np.asarray(slice_to_ras, dtype=float)
    right = matrix[:3, 0]
    up = matrix[:3, 1]
    return EdgeLabels(
        left=direction_letters(-right),
        right=direction_letters(right),
        top=direction_letters(up),
        bottom=direction_letters(-up),
    )
