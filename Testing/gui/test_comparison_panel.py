"""The comparison panel: display toggles as signals, the metrics of a real case comparison."""

from __future__ import annotations

import numpy as np
import pytest
from Qt import QtCore, QtGui

from CaseIteratorCoreLib.cases import Case, ResultTarget
from CaseIteratorCoreLib.comparison import CaseComparison, compare_loaded
from CaseIteratorCoreLib.comparison_inputs import LoadedSegmentation
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.problems import Problem, ProblemCode, Severity
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code
from CaseReaderLib.comparison_panel import ComparisonPanel, SegmentationDisplay

pytestmark = pytest.mark.gui

LEFT = QtCore.Qt.MouseButton.LeftButton
GRID = Geometry((30, 30, 20), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))


def segment(name: str, code: str) -> Segment:
    return Segment(
        name, Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", code, name), (9, 9, 9)
    )


def comparison() -> CaseComparison:
    """A real comparison: the liver shifted by 8 columns, the lesion missed by the model."""
    liver = np.zeros(GRID.shape, dtype=bool)
    liver[4:14, 5:25, 5:15] = True
    lesion = np.zeros(GRID.shape, dtype=bool)
    lesion[2:4, 2:4, 2:4] = True
    segments = [segment("Liver", "10200004"), segment("Lesion", "4147007")]
    truth = Segmentation.from_masks([liver, lesion], GRID, segments)
    model = Segmentation.from_masks([np.roll(liver, 8, axis=2), lesion & False], GRID, segments)
    rows = compare_loaded(
        LoadedSegmentation("mask", "mask.nrrd", truth),
        LoadedSegmentation("AI", "ai.nrrd", model),
    )
    case = Case("c1", "c1", 0, (), ResultTarget("c1"))
    warning = Problem(ProblemCode.MULTIPLE_SERIES, "AI: 2 SEG series match", Severity.WARNING)
    return CaseComparison(case, {"mask": "mask.nrrd", "AI": "ai.nrrd"}, tuple(rows), (warning,))


@pytest.fixture
def panel(qtbot, no_leaks):
    widget = ComparisonPanel()
    qtbot.addWidget(widget)
    widget.set_segmentations(["AI", "mask"], reference="mask")
    widget.resize(520, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_segmentations_listed_reference_first_with_distinct_colours(panel) -> None:
    assert panel.names == ("mask", "AI")
    assert panel.row("mask").name.text() == "mask  (reference)"
    assert panel.row("AI").name.text() == "AI"
    assert panel.display("mask").color != panel.display("AI").color
    assert not panel.display("AI").outline and panel.display("AI").visible
    assert panel.row("AI").outline.text() == "Fill"


def test_outline_and_eye_toggles_emit_signals(qtbot, panel) -> None:
    row = panel.row("AI")
    with qtbot.waitSignal(panel.outline_changed) as outline:
        qtbot.mouseClick(row.outline, LEFT)
    assert outline.args == ["AI", True]
    assert row.outline.text() == "Outline" and panel.display("AI").outline
    with qtbot.waitSignal(panel.visibility_changed) as shown:
        qtbot.mouseClick(panel.row("mask").eye, LEFT)
    assert shown.args == ["mask", False]
    assert panel.display("mask") == SegmentationDisplay(panel.display("mask").color, False, False)
    # Setting what is already shown says nothing.
    with qtbot.assertNotEmitted(panel.outline_changed):
        panel.set_outline("AI", True)


def test_colour_dialog_changes_the_colour(qtbot, panel) -> None:
    qtbot.mouseClick(panel.row("mask").swatch, LEFT)
    dialog = panel.color_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.setCurrentColor(QtGui.QColor(10, 120, 240))
    with qtbot.waitSignal(panel.color_changed) as changed:
        dialog.accept()
    assert changed.args == ["mask", (10, 120, 240)]
    assert panel.display("mask").color == (10, 120, 240)
    qtbot.waitUntil(lambda: panel.color_dialog is None)


def test_metrics_of_the_case_undefined_and_problems(qtbot, panel) -> None:
    panel.show_comparison(comparison())
    assert panel.table.rowCount() == 2
    liver = [panel.cell_text(0, c) for c in range(7)]
    assert liver == ["Liver", "AI", "0.200", "8.0", "8.0", liver[5], "+0.00"]
    assert float(liver[5]) > 0
    assert panel.table.item(0, 2).foreground().color() == QtGui.QColor(235, 90, 80)  # low Dice
    lesion = [panel.cell_text(1, c) for c in range(7)]
    assert lesion[:5] == ["Lesion", "AI", "0.000", "—", "—"]
    assert panel.table.item(1, 3).toolTip() == "Undefined: AI has no voxels of Lesion"
    assert panel.problems.isVisible() and "2 SEG series match" in panel.problems.text()

    with qtbot.waitSignal(panel.segment_activated) as activated:
        rect = panel.table.visualItemRect(panel.table.item(1, 0))
        # Qt's item views take a double click as a press, release, then the double click.
        qtbot.mouseClick(panel.table.viewport(), LEFT, pos=rect.center())
        qtbot.mouseDClick(panel.table.viewport(), LEFT, pos=rect.center())
    assert activated.args == ["Lesion"]

    panel.show_comparison(None)
    assert panel.table.rowCount() == 0 and not panel.problems.isVisible()
