"""The reading window on a real demo batch: navigation, shortcuts, skip, paint, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.progress_store import CaseStatus
from CaseReaderLib.skip_dialog import SkipDialog

pytestmark = [pytest.mark.gui, pytest.mark.slicer]

SHOW_TIMEOUT_MS = 30_000


def test_window_opens_on_case_1_of_2(reading) -> None:
    window = reading.window
    assert window.header.counter.text() == "Case 1 of 2"
    assert window.windowTitle().startswith("CaseIterator")
    assert reading.axial.frame_array().mean() > 10
    assert (
        reading.store.for_batch(reading.batch.key, "dr.test").get(reading.cases[0].id).status
        is CaseStatus.IN_PROGRESS
    )
    assert window.case_list.status_of(0) is CaseStatus.IN_PROGRESS
    # The batch's segment templates are the segments of the case.
    assert [s.name for s in window.editing.segments] == [t.name for t in reading.batch.segments]
    assert window.last_switch_seconds < 5.0


def test_next_loads_case_2_and_the_image_changes(reading) -> None:
    before = reading.axial.frame_array().copy()
    reading.window.navigation.next_button.click()
    reading.wait_shown(1)
    assert reading.window.header.counter.text() == "Case 2 of 2"
    after = reading.axial.frame_array()
    assert after.shape == before.shape
    assert not np.array_equal(after, before)
    assert not reading.window.actions["next"].isEnabled()
    assert reading.window.actions["previous"].isEnabled()


def test_ctrl_n_and_ctrl_p_move_between_cases(qtbot, reading) -> None:
    qtbot.keyClick(reading.window, QtCore.Qt.Key.Key_N, QtCore.Qt.KeyboardModifier.ControlModifier)
    reading.wait_shown(1)
    qtbot.keyClick(reading.window, QtCore.Qt.Key.Key_P, QtCore.Qt.KeyboardModifier.ControlModifier)
    reading.wait_shown(0)
    assert reading.window.header.counter.text() == "Case 1 of 2"
    assert "Ctrl+N" in reading.window.navigation.next_button.toolTip()
    assert "Ctrl+P" in reading.window.navigation.previous_button.toolTip()


def test_skip_asks_a_reason_and_records_it(qtbot, reading) -> None:
    answered = []

    def answer() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, SkipDialog)
        assert not dialog.skip_button.isEnabled()  # no reason yet
        dialog.choose("motion artefacts in the upper abdomen")
        answered.append(dialog.reason())
        dialog.skip_button.click()

    QtCore.QTimer.singleShot(0, answer)
    reading.window.navigation.skip_button.click()
    assert answered == ["motion artefacts in the upper abdomen"]
    progress = reading.store.for_batch(reading.batch.key, "dr.test").get(reading.cases[0].id)
    assert progress.status is CaseStatus.SKIPPED
    assert progress.reason == "motion artefacts in the upper abdomen"
    assert reading.window.case_list.status_of(0) is CaseStatus.SKIPPED
    reading.wait_shown(1)  # and the next case opens


def test_painting_with_the_mouse_changes_the_segmentation(qtbot, reading, drag) -> None:
    window = reading.window
    qtbot.mouseClick(window.tools.buttons["paint"], QtCore.Qt.MouseButton.LeftButton)
    assert window.editing.effect == "paint"
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-40, 41, 8)])
    # Voxels of the segmentation node, read two ways: in place and through trame-slicer.
    painted = window.editing.painted_voxels(0)
    assert painted > 0
    segment_id = window.editing.segment_ids[0]
    resampled = window.editing.editor.get_segment_labelmap(segment_id, as_numpy_array=True)
    assert int(np.count_nonzero(resampled)) == painted
    assert window.editing.modified and window.actions["undo"].isEnabled()
    # Erase part of it, undo the erase.
    qtbot.mouseClick(window.tools.buttons["erase"], QtCore.Qt.MouseButton.LeftButton)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-8, 9, 8)])
    assert 0 < window.editing.painted_voxels(0) < painted
    window.actions["undo"].trigger()
    assert window.editing.painted_voxels(0) == painted
    # Saving marks the case done and the edits clean.
    assert window.save_case()
    window.wait_for_saves()  # the result is written in the background
    assert not window.editing.modified
    progress = reading.store.for_batch(reading.batch.key, "dr.test").get(reading.cases[0].id)
    assert progress.status is CaseStatus.DONE


def test_brush_slider_sets_the_brush_in_millimetres(qtbot, reading) -> None:
    window = reading.window
    window.tools.choose("paint")
    window.tools.brush_slider.setValue(20)
    assert window.editing.active_effect().get_brush_diameter() == 20.0
    assert window.tools.brush_label.text() == "20 mm"


def test_window_presets_change_the_display(qtbot, reading) -> None:
    display = reading.window.scene.volume_node.GetDisplayNode()
    reading.window.presets.buttons["lung"].click()
    assert (display.GetWindow(), display.GetLevel()) == (1500.0, -600.0)
    qtbot.keyClick(reading.window, QtCore.Qt.Key.Key_4)  # bone
    assert (display.GetWindow(), display.GetLevel()) == (1800.0, 400.0)


def test_reading_time_is_recorded_when_leaving_a_case(qtbot, reading) -> None:
    qtbot.wait(1500)  # the reader reads
    reading.window.next_case()
    reading.wait_shown(1)
    progress = reading.store.for_batch(reading.batch.key, "dr.test").get(reading.cases[0].id)
    assert 1.0 <= progress.seconds < 30.0


def test_a_case_that_cannot_be_opened_is_shown_calmly_and_can_be_left(
    qtbot, demo_batch: Path, reading_factory, no_leaks
) -> None:
    # Break case 2: remove a slice from the middle of its series.
    series = sorted((demo_batch.parent / "dicom" / "DEMO-002" / "CT_abdomen").glob("IM*.dcm"))
    series[len(series) // 2].unlink()
    harness = reading_factory(demo_batch)
    try:
        harness.start()
        window = harness.window
        window.next_case()
        qtbot.waitUntil(window.banner.isVisible, timeout=SHOW_TIMEOUT_MS)
        assert "could not be opened" in window.banner.title.text()
        assert "missing" in window.banner.text.text()
        assert "Traceback" not in window.banner.text.text()
        progress = harness.store.for_batch(harness.batch.key, "dr.test").get(harness.cases[1].id)
        assert progress.status is CaseStatus.FAILED and "missing" in progress.reason
        assert window.case_list.status_of(1) is CaseStatus.FAILED
        assert not window.actions["save"].isEnabled()
        # The reader can still skip it with a reason, or go back.
        assert window.skip_case("series incomplete")
        progress = harness.store.for_batch(harness.batch.key, "dr.test").get(harness.cases[1].id)
        assert progress.status is CaseStatus.SKIPPED
        window.previous_case()
        harness.wait_shown(0)
    finally:
        harness.close()


def test_case_counter_is_centred_in_the_header(qtbot, reading) -> None:
    """ "Case N of M" sits in the middle of the window whatever the two sides hold."""
    header = reading.window.header
    qtbot.waitUntil(lambda: header.counter.text().startswith("Case 1 of"), timeout=5000)

    def centre_offset() -> float:
        counter = header.counter
        middle = counter.mapTo(header, QtCore.QPoint(counter.width() // 2, 0)).x()
        return abs(middle - header.width() / 2)

    qtbot.waitUntil(lambda: centre_offset() <= 3, timeout=5000)
    header.set_reading_time(75, paused=True)  # a wider timer chip: still centred
    qtbot.waitUntil(lambda: centre_offset() <= 3, timeout=5000)
