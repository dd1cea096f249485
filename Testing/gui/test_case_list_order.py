"""The case list in another order (comparison mode's "worst agreement first"), and its badges."""

from __future__ import annotations

import pytest
from Qt import QtCore

from CaseIteratorCoreLib.cases import Case, ResultTarget
from CaseIteratorCoreLib.progress_store import CaseProgress, CaseStatus
from CaseReaderLib.case_list_panel import CaseListPanel
from CaseReaderLib.comparison_mode import order_by_disagreement

pytestmark = pytest.mark.gui

LEFT = QtCore.Qt.MouseButton.LeftButton


def cases(count: int) -> list[Case]:
    return [Case(f"c{n}", f"Case {n + 1}", n, (), ResultTarget(f"c{n}")) for n in range(count)]


@pytest.fixture
def panel(qtbot, no_leaks):
    widget = CaseListPanel()
    qtbot.addWidget(widget)
    widget.set_cases(cases(5))
    widget.resize(300, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_order_keeps_batch_indices_for_clicks_statuses_and_selection(qtbot, panel) -> None:
    assert panel.order_box.isHidden()  # batch order only until someone offers another
    panel.set_current(3)
    panel.set_order([3, 1])
    assert panel.order() == [3, 1, 0, 2, 4]  # the rest follows in batch order
    assert panel.list.currentItem() is panel.list.item(0)  # still case 4, now on top
    with qtbot.waitSignal(panel.case_chosen) as chosen:
        rect = panel.list.visualItemRect(panel.list.item(1))
        qtbot.mouseClick(panel.list.viewport(), LEFT, pos=rect.center())
    assert chosen.args == [1]  # the batch index of the row clicked, not its row
    panel.set_progress(1, cases(5)[1], CaseProgress("c1", CaseStatus.DONE))
    assert panel.status_of(1) == CaseStatus.DONE
    assert panel.list.item(1).data(QtCore.Qt.ItemDataRole.UserRole + 1) == "done"
    panel.set_order(None)
    assert panel.order() == [0, 1, 2, 3, 4]


def test_order_box_and_badges(qtbot, panel) -> None:
    panel.set_order_choices([("batch", "Batch order"), ("worst", "Worst first")])
    assert not panel.order_box.isHidden()
    with qtbot.waitSignal(panel.order_chosen) as chosen:
        panel.order_box.setCurrentIndex(1)
        panel.order_box.activated.emit(1)
    assert chosen.args == ["worst"]
    panel.set_badge(2, "Dice 0.41", "lowest Dice 0.412", alert=True)
    assert panel.badge_of(2) == "Dice 0.41"
    assert "Agreement: lowest Dice 0.412" in panel.list.item(2).toolTip()
    panel.set_badge(2, "")
    assert panel.badge_of(2) == "" and "Agreement" not in panel.list.item(2).toolTip()
    panel.grab()  # the delegate paints badges and batch numbers without error


def test_order_by_disagreement() -> None:
    worst = {0: 0.9, 1: None, 3: 0.2, 4: 0.9}
    # Lowest Dice first (ties in batch order), then not comparable, then not compared yet.
    assert order_by_disagreement(worst, 6) == [3, 0, 4, 1, 2, 5]
