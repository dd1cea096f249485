"""The DICOM browser's tables: patients, studies and series (with thumbnails), and its look.

Each row keeps its record (:class:`~CaseIteratorCoreLib.dicom_search.StudyRow`, ...) in the
first cell, so sorting by a column never loses which study a row is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.dicom_search import PatientRow, SeriesRow, StudyRow

_RECORD = QtCore.Qt.ItemDataRole.UserRole + 1
#: Shown size of series thumbnails (the core makes them up to 96 px).
THUMB_PX = 64

#: Styles of the browser's own widgets (tables, tabs, dates), on top of the application's.
BROWSER_QSS = """
QTableWidget {
    background-color: #1f2327;
    alternate-background-color: #22262b;
    border: 1px solid #2c3137;
    border-radius: 6px;
    gridline-color: transparent;
}
QTableWidget::item {
    padding: 3px 8px;
    border: none;
}
QTableWidget::item:selected {
    background-color: #2c4a63;
    color: #ffffff;
}
QHeaderView {
    background-color: transparent;
}
QHeaderView::section {
    background-color: #23272c;
    color: #9aa3ad;
    border: none;
    border-bottom: 1px solid #2c3137;
    padding: 6px 8px;
    font-size: 9pt;
    font-weight: 600;
}
QTableCornerButton::section {
    background-color: #23272c;
    border: none;
}
QTabWidget::pane {
    border: none;
    border-top: 1px solid #2c3137;
    top: -1px;
}
QTabBar::tab {
    background: transparent;
    color: #9aa3ad;
    padding: 8px 18px;
    border: none;
    border-bottom: 2px solid transparent;
    font-weight: 600;
}
QTabBar::tab:selected {
    color: #ffffff;
    border-bottom: 2px solid #3f8fcf;
}
QTabBar::tab:hover {
    color: #e3e6ea;
}
QSplitter::handle {
    background: transparent;
}
QScrollBar:horizontal {
    background: transparent;
    height: 10px;
    margin: 2px;
}
QScrollBar::handle:horizontal {
    background: #3a4048;
    border-radius: 3px;
    min-width: 30px;
}
QDateEdit {
    background-color: #16191c;
    border: 1px solid #3a4048;
    border-radius: 5px;
    padding: 5px 8px;
    color: #e3e6ea;
}
QDateEdit:focus {
    border-color: #3f8fcf;
}
QDateEdit::drop-down {
    border: none;
    width: 18px;
}
QFrame#searchBar, QFrame#importBar {
    background-color: #23272c;
    border: 1px solid #2c3137;
    border-radius: 8px;
}
QFrame#searchBar QLabel, QFrame#importBar QLabel {
    background: transparent;
    color: #9aa3ad;
}
QFrame#importBar QProgressBar {
    min-width: 220px;
}
QLabel[role="muted"] {
    color: #9aa3ad;
}
"""


def display_name(name: str) -> str:
    """A DICOM person name as readers write it: ``Smith^John`` → ``Smith, John``."""
    parts = [p.strip() for p in name.split("^")]
    family, given = [*parts, "", ""][:2]
    rest = " ".join(p for p in parts[2:] if p)
    text = f"{family}, {given}" if family and given else family or given
    return f"{text} {rest}".strip()


def display_date(date: str) -> str:
    """``YYYYMMDD`` → ``YYYY-MM-DD`` (other text unchanged)."""
    return f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) >= 8 and date[:8].isdigit() else date


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


class _Item(QtWidgets.QTableWidgetItem):
    """A cell that sorts numbers as numbers and dates as text."""

    def __init__(self, text: str, sort_key: Any = None) -> None:
        super().__init__(text)
        self._key = text if sort_key is None else sort_key
        self.setFlags(QtCore.Qt.ItemFlag.ItemIsSelectable | QtCore.Qt.ItemFlag.ItemIsEnabled)

    def __lt__(self, other: QtWidgets.QTableWidgetItem) -> bool:
        key = getattr(other, "_key", other.text())
        try:
            return self._key < key
        except TypeError:
            return str(self._key) < str(key)


class RecordTable(QtWidgets.QTableWidget):
    """A read-only, row-selecting table whose rows carry records."""

    def __init__(self, columns: Sequence[str], *, multi: bool) -> None:
        super().__init__(0, len(columns))
        self.setHorizontalHeaderLabels(list(columns))
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        mode = (
            QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection
            if multi
            else QtWidgets.QAbstractItemView.SelectionMode.SingleSelection
        )
        self.setSelectionMode(mode)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(30)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(
            QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        header.setStretchLastSection(True)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)

    #: Column and order rows are sorted by when shown (None: as given, no sorting).
    initial_sort: tuple[int, QtCore.Qt.SortOrder] | None = None

    def set_rows(self, rows: Sequence[tuple[Any, Sequence[tuple[str, Any]]]]) -> None:
        """Replace the rows: ``(record, [(text, sort key), ...])`` each."""
        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.clearSelection()
        self.setRowCount(len(rows))
        for number, (record, cells) in enumerate(rows):
            for column, (text, key) in enumerate(cells):
                item = _Item(text, key)
                if column == 0:
                    item.setData(_RECORD, record)
                self.setItem(number, column, item)
        self.blockSignals(False)
        if self.initial_sort is not None:
            header = self.horizontalHeader()
            if not header.isSortIndicatorShown():
                header.setSortIndicator(*self.initial_sort)
            self.setSortingEnabled(True)

    def record(self, row: int) -> Any:
        """The record of ``row``."""
        item = self.item(row, 0)
        return item.data(_RECORD) if item is not None else None

    def records(self) -> list[Any]:
        """Records of all rows, top to bottom."""
        return [self.record(r) for r in range(self.rowCount())]

    def selected_records(self) -> list[Any]:
        """Records of the selected rows, top to bottom."""
        rows = sorted({index.row() for index in self.selectionModel().selectedRows()})
        return [self.record(r) for r in rows]

    def select_record(self, match) -> bool:
        """Select the first row whose record satisfies ``match``; False when none does."""
        for row in range(self.rowCount()):
            if match(self.record(row)):
                self.selectRow(row)
                return True
        return False


#: The "All patients" row of the patients table.
ALL_PATIENTS = PatientRow(patient_id="", patient_name="")


class PatientsTable(RecordTable):
    """Patients of the studies found; the first row stands for all of them."""

    def __init__(self) -> None:
        super().__init__(["Patient", "ID", "Studies"], multi=False)
        self.setObjectName("patientsTable")
        self.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setStretchLastSection(False)

    def show_patients(self, patients: Sequence[PatientRow], n_studies: int) -> None:
        rows = [(ALL_PATIENTS, [("All patients", ""), ("", ""), (str(n_studies), -1)])]
        rows += [
            (
                p,
                [
                    (display_name(p.patient_name) or "(no name)", p.patient_name.lower()),
                    (p.patient_id, p.patient_id),
                    (str(p.n_studies), p.n_studies),
                ],
            )
            for p in patients
        ]
        self.set_rows(rows)
        self.resizeColumnToContents(1)
        self.resizeColumnToContents(2)


class StudiesTable(RecordTable):
    """Studies found, several can be selected."""

    def __init__(self) -> None:
        super().__init__(
            ["Date", "Patient", "ID", "Description", "Modalities", "Series", "Images"], multi=True
        )
        self.setObjectName("studiesTable")
        self.initial_sort = (0, QtCore.Qt.SortOrder.DescendingOrder)  # newest first

    def show_studies(self, studies: Sequence[StudyRow]) -> None:
        self.set_rows(
            [
                (
                    s,
                    [
                        (display_date(s.study_date), s.study_date + s.study_time),
                        (display_name(s.patient_name), s.patient_name.lower()),
                        (s.patient_id, s.patient_id),
                        (s.description, s.description.lower()),
                        (" ".join(s.modalities), " ".join(s.modalities)),
                        (_count(s.n_series), s.n_series or 0),
                        (_count(s.n_instances), s.n_instances or 0),
                    ],
                )
                for s in studies
            ]
        )
        self.resizeColumnsToContents()
        self.setColumnWidth(3, max(self.columnWidth(3), 220))


class SeriesTable(RecordTable):
    """Series of the selected studies with their thumbnails; several can be selected."""

    def __init__(self) -> None:
        super().__init__(["", "#", "Modality", "Description", "Images", "Study"], multi=True)
        self.setObjectName("seriesTable")
        self.initial_sort = (1, QtCore.Qt.SortOrder.AscendingOrder)  # by series number
        self.setIconSize(QtCore.QSize(THUMB_PX, THUMB_PX))
        self.verticalHeader().setDefaultSectionSize(THUMB_PX + 10)
        self.setColumnWidth(0, THUMB_PX + 18)

    def show_series(self, series: Sequence[SeriesRow], studies: dict[str, StudyRow]) -> None:
        rows = []
        for s in series:
            study = studies.get(s.study_uid)
            where = (
                " · ".join(p for p in (display_date(study.study_date), study.description) if p)
                if study
                else ""
            )
            rows.append(
                (
                    s,
                    [
                        ("", s.series_number or 0),
                        (_count(s.series_number), s.series_number or 0),
                        (s.modality, s.modality),
                        (s.description, s.description.lower()),
                        (_count(s.n_images), s.n_images or 0),
                        (where, where),
                    ],
                )
            )
        self.set_rows(rows)
        for row in range(self.rowCount()):
            self.item(row, 0).setIcon(placeholder_icon())
        self.setColumnWidth(0, THUMB_PX + 18)
        for column in (1, 2, 4):
            self.resizeColumnToContents(column)
        self.setColumnWidth(3, max(self.columnWidth(3), 260))

    def set_thumbnail(self, series_uid: str, icon: QtGui.QIcon, tooltip: str = "") -> None:
        """Show ``icon`` in the row of ``series_uid`` (if it is still listed)."""
        for row in range(self.rowCount()):
            record = self.record(row)
            if record is not None and record.series_uid == series_uid:
                item = self.item(row, 0)
                item.setIcon(icon)
                item.setToolTip(tooltip)


def _framed(image: QtGui.QImage | None) -> QtGui.QPixmap:
    """A square dark tile with ``image`` centred in it, aspect kept."""
    ratio = 2  # drawn at twice the size: sharp on high-density screens too
    size = THUMB_PX * ratio
    pixmap = QtGui.QPixmap(size, size)
    pixmap.fill(QtGui.QColor("#0d0f11"))
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
    if image is not None and not image.isNull():
        scaled = image.scaled(
            size,
            size,
            QtCore.Qt.AspectRatioMode.KeepAspectRatio,
            QtCore.Qt.TransformationMode.SmoothTransformation,
        )
        painter.drawImage((size - scaled.width()) // 2, (size - scaled.height()) // 2, scaled)
    else:
        painter.setPen(QtGui.QPen(QtGui.QColor("#3a4048"), 2))
        painter.drawRoundedRect(QtCore.QRectF(size * 0.3, size * 0.3, size * 0.4, size * 0.4), 6, 6)
    painter.end()
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


def thumbnail_icon(pixels: np.ndarray) -> QtGui.QIcon:
    """An icon of a uint8 (rows, columns) thumbnail."""
    data = np.ascontiguousarray(pixels, dtype=np.uint8)
    rows, cols = data.shape
    image = QtGui.QImage(data.data, cols, rows, cols, QtGui.QImage.Format.Format_Grayscale8)
    return QtGui.QIcon(_framed(image.copy()))  # copy: the array's memory is not Qt's


def placeholder_icon() -> QtGui.QIcon:
    """The tile shown while a thumbnail loads, or when there is none."""
    return QtGui.QIcon(_framed(None))
