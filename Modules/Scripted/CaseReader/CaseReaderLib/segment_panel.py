"""The segment list: the batch's segments with colour, name and a show/hide toggle."""

from __future__ import annotations

from collections.abc import Sequence

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.segmentation import Segment

from .style import icon


def color_swatch(rgb: tuple[int, int, int], size: int = 14) -> QtGui.QPixmap:
    """A small rounded square of the segment's colour."""
    ratio = 2.0
    pixmap = QtGui.QPixmap(round(size * ratio), round(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setBrush(QtGui.QColor(*rgb))
    painter.setPen(QtGui.QPen(QtGui.QColor(255, 255, 255, 60), 1))
    painter.drawRoundedRect(QtCore.QRectF(0.5, 0.5, size - 1, size - 1), 3, 3)
    painter.end()
    return pixmap


class _SegmentRow(QtWidgets.QWidget):
    visibility_toggled = QtCore.Signal(bool)

    def __init__(self, segment: Segment) -> None:
        super().__init__()
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_TranslucentBackground)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 2, 2)
        layout.setSpacing(8)
        swatch = QtWidgets.QLabel()
        swatch.setPixmap(color_swatch(segment.color))
        swatch.setStyleSheet("background: transparent;")
        layout.addWidget(swatch)
        name = QtWidgets.QLabel(segment.name)
        name.setStyleSheet("background: transparent;")
        name.setToolTip(f"{segment.name}\n{segment.type.meaning} ({segment.category.meaning})")
        layout.addWidget(name, 1)
        self.eye = QtWidgets.QToolButton()
        self.eye.setObjectName("iconButton")
        self.eye.setCheckable(True)
        self.eye.setChecked(True)
        self.eye.setIcon(icon("eye"))
        self.eye.setToolTip("Show or hide this segment")
        self.eye.toggled.connect(self._on_toggled)
        layout.addWidget(self.eye)

    def _on_toggled(self, visible: bool) -> None:
        self.eye.setIcon(icon("eye" if visible else "eye-off"))
        self.visibility_toggled.emit(visible)


class SegmentPanel(QtWidgets.QWidget):
    """Segments of the batch; the selected one is the one the tools edit.

    Signals
    -------
    segment_selected(int)
        The reader selected segment ``index``.
    visibility_changed(int, bool)
        The reader showed or hid segment ``index``.
    """

    segment_selected = QtCore.Signal(int)
    visibility_changed = QtCore.Signal(int, bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("SEGMENTS")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("segmentList")
        self.list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentRowChanged.connect(self._on_row_changed)
        layout.addWidget(self.list)
        self._rows: list[_SegmentRow] = []

    def set_segments(self, segments: Sequence[Segment]) -> None:
        """Show ``segments`` (the first is selected)."""
        blocked = self.list.blockSignals(True)
        self.list.clear()
        self._rows = []
        for index, segment in enumerate(segments):
            item = QtWidgets.QListWidgetItem()
            row = _SegmentRow(segment)
            row.visibility_toggled.connect(
                lambda visible, i=index: self.visibility_changed.emit(i, visible)
            )
            item.setSizeHint(QtCore.QSize(0, 34))
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            self._rows.append(row)
        self.list.setFixedHeight(min(6, max(1, len(segments))) * 36 + 8)
        self.list.blockSignals(blocked)
        if segments:
            self.list.setCurrentRow(0)

    def set_current(self, index: int) -> None:
        """Select segment ``index`` without emitting."""
        blocked = self.list.blockSignals(True)
        self.list.setCurrentRow(index)
        self.list.blockSignals(blocked)

    def _on_row_changed(self, row: int) -> None:
        if row >= 0:
            self.segment_selected.emit(row)
