"""The editing tools work through the real views: Draw, Scissors, Threshold, Islands, Smooth."""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from Qt import QtCore

from CaseIteratorCoreLib.segmentation import AlgorithmType

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


def test_threshold_starts_at_otsu_pulses_and_is_saved_as_semiautomatic(qtbot, reading) -> None:
    window, tools, editing = reading.window, reading.window.tools, reading.window.editing
    tools.choose("threshold")
    effect = editing.threshold_effect()
    otsu, top = effect.get_threshold_min_max_values()
    low, high = editing.image_range()
    assert low < otsu < high and top == high  # Otsu's threshold up to the brightest voxel
    effect.auto_threshold()  # ITK's Otsu over every voxel agrees (within a histogram bin)
    assert effect.get_threshold_min_max_values()[0] == pytest.approx(otsu, abs=(high - low) / 100)
    effect.set_threshold_min_max_values((otsu, top))
    assert (tools.threshold_min.value(), tools.threshold_max.value()) == (round(otsu), high)
    assert tools.threshold_low_slider.value() == round(otsu)

    # The preview pulses under Qt (trame-slicer's asyncio timer would never run here).
    seen = set()
    qtbot.waitUntil(
        lambda: seen.add(round(effect.get_param_proxy().preview_opacity, 2)) or len(seen) >= 3,
        timeout=5000,
    )
    assert tools.threshold_pulse.pulsing

    tools.threshold_low_slider.setValue(200)  # the slider pair sets the range
    assert tools.threshold_min.value() == 200
    qtbot.mouseClick(tools.threshold_apply_button, QtCore.Qt.MouseButton.LeftButton)
    assert editing.painted_voxels(0) > 0
    tools.choose("paint")  # painting afterwards keeps the segment semi-automatic
    tools.choose("navigate")
    assert not tools.threshold_pulse.pulsing
    assert window.save_case()
    window.wait_for_saves()  # the result is written in the background

    files = sorted(reading.batch.output.folder.rglob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    items = {str(item.SegmentLabel): item for item in ds.SegmentSequence}
    assert items["Liver"].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert items["Liver"].SegmentAlgorithmName == "Threshold"
    assert items["Aorta"].SegmentAlgorithmType == "MANUAL"


def test_threshold_undo_restores_manual(qtbot, reading) -> None:
    tools, editing = reading.window.tools, reading.window.editing
    tools.choose("threshold")
    qtbot.mouseClick(tools.threshold_apply_button, QtCore.Qt.MouseButton.LeftButton)
    assert editing.segments[0].algorithm == AlgorithmType.SEMIAUTOMATIC
    editing.undo()
    assert editing.painted_voxels(0) == 0
    assert editing.segments[0].algorithm == AlgorithmType.MANUAL


def _wheel(widget, steps: int, modifiers) -> None:
    from Qt import QtGui, QtWidgets

    centre = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    event = QtGui.QWheelEvent(
        centre,
        widget.mapToGlobal(centre),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * steps),
        QtCore.Qt.MouseButton.NoButton,
        modifiers,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(widget, event)


def test_brush_size_by_slider_shift_wheel_and_keys(qtbot, reading) -> None:
    window, tools, editing = reading.window, reading.window.tools, reading.window.editing
    tools.choose("paint")
    tools.brush_slider.setValue(10)
    assert editing.brush_mm == 10 and editing.active_effect().get_brush_diameter() == 10
    axial = reading.axial
    slice_before = axial.slice_position()
    _wheel(axial, 3, QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert editing.brush_mm > 10  # larger brush, same slice
    assert tools.brush_slider.value() == round(editing.brush_mm)
    assert tools.brush_label.text() == f"{round(editing.brush_mm)} mm"
    assert axial.slice_position() == slice_before
    larger = editing.brush_mm
    qtbot.keyClick(window, QtCore.Qt.Key.Key_BracketLeft)
    assert editing.brush_mm < larger
    for _ in range(40):
        qtbot.keyClick(window, QtCore.Qt.Key.Key_BracketRight)
    assert editing.brush_mm == 60 and tools.brush_slider.value() == 60  # capped
    assert "Shift+wheel" in tools.brush_slider.toolTip()


def test_3d_view_is_off_by_default_and_shows_segment_surfaces(qtbot, reading, drag) -> None:
    window, editing, views = reading.window, reading.window.editing, reading.window.views
    assert not views.is_3d_visible and reading.window.scene.three_d is None  # not even made
    window.tools.choose("paint")
    window.tools.sphere_brush.setChecked(True)  # a solid blob: a closed surface
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-30, 31, 6)])
    assert editing.painted_voxels(0) > 0

    views.set_3d_visible(True)
    assert views.is_3d_visible and views.three_d.isVisible()
    empty = views.three_d.render_now()
    background = np.asarray(views.three_d.frame_array(), dtype=int)
    editing.set_surfaces_visible(True)
    views.three_d.view.fit_view_to_content()
    views.three_d.render_now()
    shown = np.asarray(views.three_d.frame_array(), dtype=int)
    assert empty is not None and shown.shape == background.shape
    changed = np.abs(shown - background).sum(axis=-1) > 30
    assert changed.mean() > 0.001  # the liver's colour appears where its surface is

    views.set_3d_visible(False)
    editing.set_surfaces_visible(False)
    assert not views.is_3d_visible and not views.three_d.isVisible()
    assert axial.isVisible()


def test_ctrl_3_and_the_3d_button_toggle_the_3d_view(qtbot, reading) -> None:
    window, views = reading.window, reading.window.views
    action = window.actions["view_3d"]
    assert action.isCheckable() and not action.isChecked() and "Ctrl+3" in action.toolTip()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_3, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert action.isChecked() and views.is_3d_visible and views.three_d.isVisible()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_3, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert not action.isChecked() and not views.is_3d_visible
    assert reading.axial.isVisible()
