"""The view layer: trame-slicer slice views rendered offscreen and blitted into Qt widgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.loading import load_case
from CaseIteratorCoreLib.mrml_volume import volume_to_node
from CaseIteratorCoreLib.sources import open_source
from CaseReaderLib.orientation_labels import direction_letters, edge_labels
from CaseReaderLib.reading_scene import SLICE_VIEWS, ReadingScene
from CaseReaderLib.slice_view_widget import SliceViewWidget

pytestmark = [pytest.mark.gui, pytest.mark.slicer]


class Views:
    """Three slice view widgets on one scene, in a plain window."""

    def __init__(self, qtbot, batch: Path) -> None:
        source = open_source(load_batch(batch))
        self.cases = [load_case(source, case) for case in source.iter_cases()]
        self.scene = ReadingScene()
        self.window = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(self.window)
        self.widgets = {}
        for name, color in SLICE_VIEWS:
            widget = SliceViewWidget(
                name, self.scene.views[name], self.scene.slice_logic(name), color
            )
            layout.addWidget(widget)
            self.widgets[name] = widget
        qtbot.addWidget(self.window)
        self.window.resize(900, 320)
        self.window.show()
        qtbot.waitExposed(self.window)

    def show_case(self, index: int):
        loaded = self.cases[index]
        node = volume_to_node(
            self.scene.scene, loaded.image.volume, loaded.case.name, window=loaded.image.window
        )
        self.scene.show_volume(node)
        for widget in self.widgets.values():
            widget.render_now()
        return node

    def close(self) -> None:
        self.window.close()
        self.scene.close()


@pytest.fixture
def views(qtbot, demo_batch: Path):
    harness = Views(qtbot, demo_batch)
    yield harness
    harness.close()


def _wheel(widget: QtWidgets.QWidget, steps: int, modifiers=QtCore.Qt.KeyboardModifier.NoModifier):
    position = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    event = QtGui.QWheelEvent(
        position,
        widget.mapToGlobal(position),
        QtCore.QPoint(),
        QtCore.QPoint(0, 120 * steps),
        QtCore.Qt.MouseButton.NoButton,
        modifiers,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(widget, event)


def test_views_show_the_volume_with_patient_directions(views: Views) -> None:
    views.show_case(0)
    axial = views.widgets["Axial"]
    frame = axial.frame_array()
    assert frame.shape[:2] == (axial.height(), axial.width())
    assert frame.mean() > 10  # an image, not a black window
    # Radiological convention: the patient's right on the image's left in axial.
    labels = axial.edge_labels()
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("R", "L", "A", "P")
    sagittal = views.widgets["Sagittal"].edge_labels()
    assert (sagittal.top, sagittal.bottom) == ("S", "I")
    number, count = axial.slice_position()
    assert count == 16 and 7 <= number <= 10  # the middle slice


def test_mouse_wheel_scrolls_slices_and_renders_only_that_view(qtbot, views: Views) -> None:
    views.show_case(0)
    axial, sagittal = views.widgets["Axial"], views.widgets["Sagittal"]
    before = axial.frame_array().copy()
    number_before = axial.slice_position()[0]
    sagittal_renders = sagittal.render_count
    _wheel(axial, 3)
    qtbot.waitUntil(lambda: axial.slice_position()[0] == number_before + 3)
    qtbot.waitUntil(lambda: not np.array_equal(axial.frame_array(), before))
    assert sagittal.render_count == sagittal_renders


def test_left_drag_adjusts_window_level(qtbot, views: Views) -> None:
    node = views.show_case(0)
    display = node.GetDisplayNode()
    window_before = display.GetWindow()
    axial = views.widgets["Axial"]
    start = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    qtbot.mouseMove(axial, start)
    qtbot.mousePress(axial, QtCore.Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 6):
        qtbot.mouseMove(axial, start + QtCore.QPoint(12 * step, 0))
    qtbot.mouseRelease(axial, QtCore.Qt.MouseButton.LeftButton, pos=start + QtCore.QPoint(60, 0))
    assert display.GetWindow() > window_before


def test_resize_renders_at_the_new_size(qtbot, views: Views) -> None:
    views.show_case(0)
    views.window.resize(1200, 500)
    axial = views.widgets["Axial"]
    qtbot.waitUntil(lambda: axial.frame_array().shape[:2] == (axial.height(), axial.width()))


def test_switching_cases_changes_the_image(views: Views) -> None:
    views.show_case(0)
    first = views.widgets["Axial"].frame_array().copy()
    views.show_case(1)
    assert not np.array_equal(views.widgets["Axial"].frame_array(), first)
    # The first case's volume left the scene: a case switch does not pile up volumes.
    assert views.scene.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1


def test_edge_letters_follow_the_slice_matrix() -> None:
    assert direction_letters(np.array([1.0, 0, 0])) == "R"
    assert direction_letters(np.array([0, -1.0, 0])) == "P"
    assert direction_letters(np.array([0, 0.8, 0.6])) == "AS"
    axial = np.diag([-1.0, 1.0, 1.0, 1.0])
    labels = edge_labels(axial)
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("R", "L", "A", "P")
