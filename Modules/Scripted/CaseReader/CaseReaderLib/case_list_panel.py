"""The case list: every case of the batch with its status icon; click to open one.

Rows are in batch order unless an order is set (:meth:`CaseListPanel.set_order`, e.g. "worst
agreement first" in comparison mode); each row keeps its case's batch number and index, so
choosing a row always names the case by its batch index. A row may carry a small badge (a
metric) at its right.
"""

from __future__ import annotations

from collections.abc import Sequence

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.progress_store import CaseProgress, CaseStatus

from .status_icons import STATUS_LABELS, status_icon

_PRIMARY = QtCore.Qt.ItemDataRole.UserRole + 2
_SECONDARY = QtCore.Qt.ItemDataRole.UserRole + 3
_PREFETCH = QtCore.Qt.ItemDataRole.UserRole + 4
_BADGE = QtCore.Qt.ItemDataRole.UserRole + 5
_BADGE_ALERT = QtCore.Qt.ItemDataRole.UserRole + 6

#: Colour of the small dot that shows a case's prefetch state (none when idle).
PREFETCH_COLOURS = {
    "queued": "#5b6570",
    "fetching": "#d6a33a",
    "decoding": "#d6a33a",
    "ready": "#4caf7a",
    "failed": "#d9534f",
}
#: What the dot means, for the tooltip.
PREFETCH_LABELS = {
    "queued": "Waiting to be loaded",
    "fetching": "Loading…",
    "decoding": "Loading…",
    "ready": "Loaded: opens at once",
    "failed": "Could not be loaded",
}


def case_lines(case: Case) -> tuple[str, str]:
    """Two lines for the case list: who and when, then which series."""
    details = case.details
    date = details.get("study_date", "")
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    primary = " · ".join(p for p in (details.get("patient_id", ""), date) if p)
    secondary = details.get("series_description") or details.get("modality", "")
    if not primary:
        parts = case.name.split(" · ")
        primary, secondary = parts[0], " · ".join(parts[1:]) or secondary
    return primary, secondary


class _CaseItemDelegate(QtWidgets.QStyledItemDelegate):
    """Status icon, number and two lines of text per case."""

    def sizeHint(self, option, index) -> QtCore.QSize:
        return QtCore.QSize(option.rect.width(), 46)

    def paint(self, painter: QtGui.QPainter, option, index) -> None:
        opt = QtWidgets.QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        widget = opt.widget
        style = widget.style() if widget is not None else QtWidgets.QApplication.style()
        opt.text = ""
        opt.icon = QtGui.QIcon()
        style.drawControl(QtWidgets.QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        painter.save()
        rect = option.rect.adjusted(10, 6, -8, -6)
        icon = index.data(QtCore.Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QtGui.QIcon):
            icon.paint(painter, QtCore.QRect(rect.left(), rect.top() + 2, 16, 16))
        selected = bool(option.state & QtWidgets.QStyle.StateFlag.State_Selected)
        text_left = rect.left() + 26
        number = str(int(index.data(QtCore.Qt.ItemDataRole.UserRole)) + 1)
        font = QtGui.QFont(option.font)
        painter.setFont(font)
        metrics = QtGui.QFontMetrics(font)
        line = metrics.height()
        state = index.data(_PREFETCH)
        colour = PREFETCH_COLOURS.get(state or "")
        if colour is not None:
            painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
            painter.setPen(QtCore.Qt.PenStyle.NoPen)
            painter.setBrush(QtGui.QColor(colour))
            painter.drawEllipse(QtCore.QRectF(rect.right() - 7, rect.top() + 5, 7, 7))
        painter.setPen(QtGui.QColor("#ffffff" if selected else "#e3e6ea"))
        first = QtCore.QRect(text_left, rect.top(), rect.right() - text_left - 12, line)
        primary = index.data(_PRIMARY) or ""
        painter.drawText(
            first,
            int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter),
            metrics.elidedText(
                f"{number}.  {primary}", QtCore.Qt.TextElideMode.ElideRight, first.width()
            ),
        )
        small = QtGui.QFont(font)
        small.setPointSizeF(max(7.5, font.pointSizeF() - 1))
        painter.setFont(small)
        small_metrics = QtGui.QFontMetrics(small)
        badge = index.data(_BADGE) or ""
        badge_width = small_metrics.horizontalAdvance(badge) + 6 if badge else 0
        second = QtCore.QRect(
            text_left, rect.top() + line + 2, first.width() - badge_width, small_metrics.height()
        )
        if badge:
            alert = bool(index.data(_BADGE_ALERT))
            painter.setPen(QtGui.QColor("#eb8a80" if alert else "#9fb3c4"))
            painter.drawText(
                QtCore.QRect(second.right() + 6, second.top(), badge_width, second.height()),
                int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter),
                badge,
            )
        painter.setPen(QtGui.QColor("#c9d6e2" if selected else "#8f98a2"))
        painter.drawText(
            second,
            int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter),
            small_metrics.elidedText(
                index.data(_SECONDARY) or "", QtCore.Qt.TextElideMode.ElideRight, second.width()
            ),
        )
        painter.restore()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class CaseListPanel(QtWidgets.QFrame):
    """Side panel listing the cases.

    Signals
    -------
    case_chosen(int)
        The reader picked case ``index`` (click or Enter); always the batch index.
    order_chosen(str)
        The reader chose the order with key ``key`` in the order box (see
        :meth:`set_order_choices`); whoever offered it calls :meth:`set_order`.
    """

    case_chosen = QtCore.Signal(int)
    order_chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidePanel")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(6)
        heading = QtWidgets.QHBoxLayout()
        heading.setContentsMargins(0, 0, 0, 0)
        title = QtWidgets.QLabel("CASES")
        title.setProperty("role", "sectionTitle")
        heading.addWidget(title)
        heading.addStretch(1)
        #: How the rows are ordered; hidden until someone offers an order other than the batch's.
        self.order_box = QtWidgets.QComboBox()
        self.order_box.setObjectName("caseOrder")
        self.order_box.setToolTip("Order of the cases in this list")
        self.order_box.hide()
        self.order_box.activated.connect(self._on_order_activated)
        heading.addWidget(self.order_box)
        layout.addLayout(heading)
        self._items: list[QtWidgets.QListWidgetItem] = []
        self._order: list[int] | None = None
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("caseList")
        self.list.setUniformItemSizes(True)
        self.list.setSpacing(1)
        self.list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
        self.list.setIconSize(QtCore.QSize(16, 16))
        self.list.setItemDelegate(_CaseItemDelegate(self.list))
        self.list.itemActivated.connect(self._on_activated)
        self.list.itemClicked.connect(self._on_activated)
        layout.addWidget(self.list, 1)
        self.summary = QtWidgets.QLabel()
        self.summary.setProperty("role", "muted")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)

    def set_cases(self, cases: Sequence[Case]) -> None:
        """Fill the list (all cases to do until statuses are set), in batch order."""
        self.list.clear()
        self._items = []
        self._order = None
        for number, case in enumerate(cases, start=1):
            primary, secondary = case_lines(case)
            item = QtWidgets.QListWidgetItem(status_icon(CaseStatus.TODO), f"{number}. {case.name}")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, number - 1)
            item.setData(_PRIMARY, primary)
            item.setData(_SECONDARY, secondary)
            item.setToolTip(case.name)
            self.list.addItem(item)
            self._items.append(item)

    def _item(self, index: int) -> QtWidgets.QListWidgetItem | None:
        """The row of case ``index`` (batch index), wherever it is in the list."""
        return self._items[index] if 0 <= index < len(self._items) else None

    # -- order -----------------------------------------------------------------------------

    def set_order_choices(self, choices: Sequence[tuple[str, str]]) -> None:
        """Offer orders in the box above the list: ``(key, label)`` pairs, the first current.

        Empty hides the box (batch order only). Choosing one emits :attr:`order_chosen`.
        """
        blocked = self.order_box.blockSignals(True)
        self.order_box.clear()
        for key, label in choices:
            self.order_box.addItem(label, key)
        self.order_box.blockSignals(blocked)
        self.order_box.setVisible(bool(choices))

    def _on_order_activated(self, row: int) -> None:
        self.order_chosen.emit(str(self.order_box.itemData(row)))

    def set_order(self, indices: Sequence[int] | None) -> None:
        """Show the cases in the order of ``indices`` (batch indices); None: batch order.

        Cases ``indices`` leaves out follow in batch order. The selection stays on its case.
        """
        if indices is None:
            order = list(range(len(self._items)))
        else:
            seen = {i for i in indices if 0 <= i < len(self._items)}
            order = list(dict.fromkeys(i for i in indices if i in seen))
            order += [i for i in range(len(self._items)) if i not in seen]
        if order == self.order():
            self._order = None if indices is None else order
            return
        current = self.list.currentItem()
        current_index = (
            int(current.data(QtCore.Qt.ItemDataRole.UserRole)) if current is not None else -1
        )
        blocked = self.list.blockSignals(True)
        while self.list.count():
            self.list.takeItem(0)
        for index in order:
            self.list.addItem(self._items[index])
        self.list.blockSignals(blocked)
        self._order = None if indices is None else order
        if current_index >= 0:
            self.set_current(current_index)

    def order(self) -> list[int]:
        """The batch indices of the rows, top to bottom."""
        return [
            int(self.list.item(row).data(QtCore.Qt.ItemDataRole.UserRole))
            for row in range(self.list.count())
        ]

    def set_badge(self, index: int, text: str, tooltip: str = "", *, alert: bool = False) -> None:
        """A short text at the right of case ``index``'s row (``""`` removes it).

        ``alert`` draws it in the warning colour; ``tooltip`` becomes a line of the row's tooltip.
        """
        item = self._item(index)
        if item is None:
            return
        item.setData(_BADGE, text or None)
        item.setData(_BADGE_ALERT, bool(alert))
        lines = [line for line in item.toolTip().split("\n") if not line.startswith("Agreement: ")]
        if tooltip:
            lines.append(f"Agreement: {tooltip}")
        item.setToolTip("\n".join(lines))

    def badge_of(self, index: int) -> str:
        """The badge of case ``index`` (tests)."""
        item = self._item(index)
        return (item.data(_BADGE) or "") if item is not None else ""

    def set_progress(self, index: int, case: Case, progress: CaseProgress) -> None:
        """Show the status (icon, tooltip) of case ``index``."""
        item = self._item(index)
        if item is None:
            return
        item.setIcon(status_icon(progress.status))
        lines = [case.name, STATUS_LABELS[progress.status]]
        state = item.data(_PREFETCH)
        if state in PREFETCH_LABELS:
            lines.append(f"Prefetch: {PREFETCH_LABELS[state]}")
        if progress.reason:
            lines.append(f"Reason: {progress.reason}")
        if progress.seconds:
            lines.append(f"Reading time: {_duration(progress.seconds)}")
        item.setToolTip("\n".join(lines))
        item.setData(QtCore.Qt.ItemDataRole.UserRole + 1, progress.status.value)

    def set_prefetch_state(self, index: int, state: str, detail: str | None = None) -> None:
        """Show whether case ``index`` is loaded ahead (a small dot: see PREFETCH_COLOURS).

        ``state`` is a :class:`~CaseIteratorCoreLib.prefetch.LoadState` value (``"idle"``
        hides the dot); ``detail`` (a failure reason) goes into the tooltip.
        """
        item = self._item(index)
        if item is None:
            return
        item.setData(_PREFETCH, state if state in PREFETCH_COLOURS else None)
        lines = [line for line in item.toolTip().split("\n") if not line.startswith("Prefetch: ")]
        if state in PREFETCH_LABELS:
            text = PREFETCH_LABELS[state] + (f" ({detail})" if detail and state == "failed" else "")
            lines.append(f"Prefetch: {text}")
        item.setToolTip("\n".join(lines))

    def prefetch_state_of(self, index: int) -> str:
        """The prefetch state the list shows for case ``index`` (``"idle"`` when none)."""
        return self._items[index].data(_PREFETCH) or "idle"

    def status_of(self, index: int) -> CaseStatus:
        """The status the list shows for case ``index`` (tests)."""
        value = self._items[index].data(QtCore.Qt.ItemDataRole.UserRole + 1)
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
        """Select and reveal case ``index`` (batch index)."""
        item = self._item(index)
        blocked = self.list.blockSignals(True)
        if item is not None:
            self.list.setCurrentItem(item)
        else:
            self.list.setCurrentRow(index)
        self.list.blockSignals(blocked)
        if item is not None:
            self.list.scrollToItem(item, QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible)

    def _on_activated(self, item: QtWidgets.QListWidgetItem) -> None:
        self.case_chosen.emit(int(item.data(QtCore.Qt.ItemDataRole.UserRole)))
