"""The case list: every case of the batch with its status icon; click to open one."""

from __future__ import annotations

from collections.abc import Sequence

from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.progress_store import CaseProgress, CaseStatus

from .status_icons import STATUS_LABELS, status_icon


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class CaseListPanel(QtWidgets.QFrame):
    """Side panel listing the cases.

    Signals
    -------
    case_chosen(int)
        The reader picked case ``index`` (click or Enter).
    """

    case_chosen = QtCore.Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidePanel")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("CASES")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("caseList")
        self.list.setUniformItemSizes(True)
        self.list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        self.list.setIconSize(QtCore.QSize(16, 16))
        self.list.itemActivated.connect(self._on_activated)
        self.list.itemClicked.connect(self._on_activated)
        layout.addWidget(self.list, 1)
        self.summary = QtWidgets.QLabel()
        self.summary.setProperty("role", "muted")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)

    def set_cases(self, cases: Sequence[Case]) -> None:
        """Fill the list (all cases to do until statuses are set)."""
        self.list.clear()
        for number, case in enumerate(cases, start=1):
            item = QtWidgets.QListWidgetItem(
                status_icon(CaseStatus.TODO), f"{number}.  {case.name}"
            )
            item.setData(QtCore.Qt.ItemDataRole.UserRole, number - 1)
            item.setToolTip(case.name)
            self.list.addItem(item)

    def set_progress(self, index: int, case: Case, progress: CaseProgress) -> None:
        """Show the status (icon, tooltip) of case ``index``."""
        item = self.list.item(index)
        if item is None:
            return
        item.setIcon(status_icon(progress.status))
        lines = [case.name, STATUS_LABELS[progress.status]]
        if progress.reason:
            lines.append(f"Reason: {progress.reason}")
        if progress.seconds:
            lines.append(f"Reading time: {_duration(progress.seconds)}")
        item.setToolTip("\n".join(lines))
        item.setData(QtCore.Qt.ItemDataRole.UserRole + 1, progress.status.value)

    def status_of(self, index: int) -> CaseStatus:
        """The status the list shows for case ``index`` (tests)."""
        value = self.list.item(index).data(QtCore.Qt.ItemDataRole.UserRole + 1)
        return CaseStatus(value) if value else CaseStatus.TODO

    def set_summary(self, counts: dict[CaseStatus, int]) -> None:
        """One line of counts under the list."""
        parts = [
            f"{counts[status]} {STATUS_LABELS[status].lower()}"
            for status in (CaseStatus.DONE, CaseStatus.SKIPPED, CaseStatus.FAILED)
            if counts.get(status)
        ]
        self.summary.setText(" · ".join(parts) if parts else "No case finished yet")

    def set_current(self, index: int) -> None:
        """Select and reveal case ``index``."""
        blocked = self.list.blockSignals(True)
        self.list.setCurrentRow(index)
        self.list.blockSignals(blocked)
        item = self.list.item(index)
        if item is not None:
            self.list.scrollToItem(item, QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible)

    def _on_activated(self, item: QtWidgets.QListWidgetItem) -> None:
        self.case_chosen.emit(int(item.data(QtCore.Qt.ItemDataRole.UserRole)))
