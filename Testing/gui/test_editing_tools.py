"""The editing tools work through the real views: Draw, Scissors, Threshold, Islands, Smooth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from Qt import QtCore

pytestmark = [pytest.mark.gui, pytest.mark.slicer]


def _square(centre: QtCore.QPoint, half: int) -> list[QtCore.QPoint]:
    corners = [(-half, -half), (half, -half), (half, half), (-half, half), (-half, -half)]
    points = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        for step in range(6):
            points.append(
                centre + QtCore.QPoint(x0 + (x1 - x0) * step // 6, y0 + (y1 - y0) * step // 6)
            )
    points.append(centre + QtCore.QPoint(-half, -half))
    return points


def test_draw_fills_an_outline_and_scissors_cut_it(reading, drag) -> None:
    window, axial = reading.window, reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    window.tools.choose("draw")
    drag(axial, _square(centre, 40))
    drawn = window.editing.painted_voxels(0)
    assert drawn > 0
    labels = window.editing.labels()
    assert np.count_nonzero(labels.reshape(labels.shape[0], -1).any(axis=1)) == 1  # one slice
    window.tools.choose("scissors")
    drag(axial, _square(centre, 15))
    assert 0 < window.editing.painted_voxels(0) < drawn


def test_threshold_islands_and_smoothing(qtbot, reading) -> None:
    window, tools = reading.window, reading.window.tools
    tools.choose("threshold")
    tools.threshold_min.setValue(200)  # bone and contrast
    tools.threshold_max.setValue(3000)
    qtbot.mouseClick(tools.threshold_apply_button, QtCore.Qt.MouseButton.LeftButton)
    thresholded = window.editing.painted_voxels(0)
    assert thresholded > 0
    volume = window.loaded.image.volume.array
    mask = window.editing.mask(window.editing.segment_ids[0])
    assert volume[mask].min() >= 200  # Hounsfield units: only bone and contrast
    tools.choose("islands")
    qtbot.mouseClick(tools.keep_largest_button, QtCore.Qt.MouseButton.LeftButton)
    kept = window.editing.painted_voxels(0)
    assert 0 < kept < thresholded  # bones and vessels are several pieces; one is kept
    tools.choose("smoothing")
    tools.smoothing_mode.setCurrentIndex(2)  # opening removes thin extrusions
    qtbot.mouseClick(tools.smoothing_apply_button, QtCore.Qt.MouseButton.LeftButton)
    assert window.editing.painted_voxels(0) <= kept
    window.actions["undo"].trigger()
    assert window.editing.painted_voxels(0) == kept
