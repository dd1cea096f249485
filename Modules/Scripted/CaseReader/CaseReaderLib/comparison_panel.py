"""The comparison panel: the current case's agreement metrics, and how each segmentation shows.

One row per compared segmentation (the reference first): its colour, outline or fill, shown or
hidden. The panel only says what the reader asked for, through signals; the window that owns
the views applies it. Below, a table of the metrics of the case on screen
(:class:`~CaseIteratorCoreLib.comparison.CaseComparison`), one row per compared segmentation
and segment, and the case's problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.comparison import CaseComparison

from .segment_panel import color_swatch
from .style import icon

#: Colours given to segmentations in order (reference first): green, magenta, amber, cyan...
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (80, 200, 120),
    (230, 80, 200),
    (250, 190, 40),
    (60, 190, 230),
    (240, 110, 70),
    (170, 140, 250),
)
#: Dice below this is shown as disagreement.
LOW_DICE = 0.7
#: Table columns: header, tooltip.
COLUMNS = (
    ("Segment", "The segment compared"),
    ("vs", "The segmentation compared with the reference"),
    ("Dice", "2|A∩B| / (|A|+|B|): 1 is perfect agreement"),
    ("HD95", "95th percentile of the surface distances, mm"),
    ("HD max", "Largest surface distance (Hausdorff), mm"),
    ("MSD", "Mean surface distance, mm"),
    ("ΔVol", "Volume of the other minus the reference, mL"),
)
UNDEFINED = "—"
_RIGHT = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter


@dataclass(frozen=True)
class SegmentationDisplay:
    """How one segmentation is drawn: its colour, outline (else fill), shown or hidden."""

    color: tuple[int, int, int]
    outline: bool = False
    visible: bool = True


class _SegmentationRow(QtWidgets.QWidget):
    """Colour, name, Outline/Fill switch and eye of one segmentation."""

    color_clicked = QtCore.Signal()
    outline_toggled = QtCore.Signal(bool)
    visibility_toggled = QtCore.Signal(bool)

    def __init__(self, name: str, reference: bool, display: SegmentationDisplay) -> None:
        super().__init__()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 2, 0)
        layout.setSpacing(4)
        self.swatch = QtWidgets.QToolButton()
        self.swatch.setObjectName("iconButton")
        self.swatch.setToolTip(f"Change the colour of {name}")
        self.swatch.setIconSize(QtCore.QSize(14, 14))
        self.swatch.clicked.connect(self.color_clicked)
        layout.addWidget(self.swatch)
        self.name = QtWidgets.QLabel(name + ("  (reference)" if reference else ""))
        layout.addWidget(self.name, 1)
        self.outline = QtWidgets.QToolButton()
        self.outline.setCheckable(True)
        self.outline.setToolTip("Outline only (checked) or filled")
        self.outline.toggled.connect(self._on_outline)
        layout.addWidget(self.outline)
        self.eye = QtWidgets.QToolButton()
        self.eye.setObjectName("iconButton")
        self.eye.setCheckable(True)
        self.eye.setIconSize(QtCore.QSize(16, 16))
        self.eye.setToolTip(f"Show or hide {name}")
        self.eye.toggled.connect(self._on_eye)
        layout.addWidget(self.eye)
        self.show_display(display)

    def show_display(self, display: SegmentationDisplay) -> None:
        """Show ``display`` without emitting."""
        self.swatch.setIcon(QtGui.QIcon(color_swatch(display.color)))
        for button, checked in ((self.outline, display.outline), (self.eye, display.visible)):
            blocked = button.blockSignals(True)
            button.setChecked(checked)
            button.blockSignals(blocked)
        self.outline.setText("Outline" if display.outline else "Fill")
        self.eye.setIcon(icon("eye" if display.visible else "eye-off"))

    def _on_outline(self, outline: bool) -> None:
        self.outline.setText("Outline" if outline else "Fill")
        self.outline_toggled.emit(outline)

    def _on_eye(self, visible: bool) -> None:
        self.eye.setIcon(icon("eye" if visible else "eye-off"))
        self.visibility_toggled.emit(visible)


class ComparisonPanel(QtWidgets.QWidget):
    """Metrics of the current case and display toggles of each compared segmentation.

    Signals
    -------
    color_changed(str, object)
        The reader gave segmentation ``name`` the colour ``(r, g, b)``.
    outline_changed(str, bool)
        Segmentation ``name`` is to be drawn as an outline (True) or filled (False).
    visibility_changed(str, bool)
        Segmentation ``name`` is to be shown (True) or hidden.
    segment_activated(str)
        The reader double-clicked the metrics of segment ``name`` (to go to it).
    """

    color_changed = QtCore.Signal(str, object)
    outline_changed = QtCore.Signal(str, bool)
    visibility_changed = QtCore.Signal(str, bool)
    segment_activated = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._displays: dict[str, SegmentationDisplay] = {}
        self._rows: dict[str, _SegmentationRow] = {}
        #: The open colour dialog (tests answer it).
        self.color_dialog: QtWidgets.QColorDialog | None = None

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("COMPARISON")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        self._rows_box = QtWidgets.QVBoxLayout()
        self._rows_box.setSpacing(2)
        layout.addLayout(self._rows_box)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("comparisonTable")
        for column, (header, tooltip) in enumerate(COLUMNS):
            item = QtWidgets.QTableWidgetItem(header)
            item.setToolTip(tooltip)
            self.table.setHorizontalHeaderItem(column, item)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(
            0, QtWidgets.QHeaderView.ResizeMode.Stretch
        )
        self.table.cellDoubleClicked.connect(self._on_double_click)
        layout.addWidget(self.table, 1)

        self.problems = QtWidgets.QLabel()
        self.problems.setObjectName("comparisonProblems")
        self.problems.setWordWrap(True)
        self.problems.setProperty("role", "warning")
        self.problems.hide()
        layout.addWidget(self.problems)
        self.show_comparison(None)

    # -- segmentations -------------------------------------------------------------------

    def set_segmentations(
        self,
        names: Sequence[str],
        *,
        reference: str | None = None,
        displays: Mapping[str, SegmentationDisplay] | None = None,
    ) -> None:
        """List the compared segmentations (reference first), with their display.

        ``displays`` gives some or all of them their colour and style; the others get
        :data:`DEFAULT_COLORS` in order, filled and shown.
        """
        reference = reference or (names[0] if names else None)
        ordered = [n for n in names if n == reference] + [n for n in names if n != reference]
        for row in self._rows.values():
            self._rows_box.removeWidget(row)
            row.deleteLater()
        self._rows.clear()
        self._names = ordered
        given = dict(displays or {})
        self._displays = {
            name: given.get(name, SegmentationDisplay(DEFAULT_COLORS[n % len(DEFAULT_COLORS)]))
            for n, name in enumerate(ordered)
        }
        for name in ordered:
            row = _SegmentationRow(name, name == reference, self._displays[name])
            row.color_clicked.connect(lambda name=name: self.choose_color(name))
            row.outline_toggled.connect(lambda on, name=name: self.set_outline(name, on))
            row.visibility_toggled.connect(lambda on, name=name: self.set_visible(name, on))
            self._rows_box.addWidget(row)
            self._rows[name] = row

    @property
    def names(self) -> tuple[str, ...]:
        """The segmentations listed, reference first."""
        return tuple(self._names)

    def row(self, name: str) -> _SegmentationRow:
        """The row of segmentation ``name`` (for tests and the window's shortcuts)."""
        return self._rows[name]

    def display(self, name: str) -> SegmentationDisplay:
        """How segmentation ``name`` is to be drawn now."""
        return self._displays[name]

    def set_color(self, name: str, color: tuple[int, int, int]) -> None:
        """Give segmentation ``name`` a colour; emits :attr:`color_changed` when it changes."""
        self._change(name, color=tuple(int(c) for c in color))

    def set_outline(self, name: str, outline: bool) -> None:
        """Draw ``name`` as an outline or filled; emits :attr:`outline_changed` on change."""
        self._change(name, outline=bool(outline))

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide ``name``; emits :attr:`visibility_changed` on change."""
        self._change(name, visible=bool(visible))

    def _change(self, name: str, **changes: object) -> None:
        old = self._displays[name]
        new = replace(old, **changes)  # type: ignore[arg-type]
        if new == old:
            return
        self._displays[name] = new
        self._rows[name].show_display(new)
        if new.color != old.color:
            self.color_changed.emit(name, new.color)
        if new.outline != old.outline:
            self.outline_changed.emit(name, new.outline)
        if new.visible != old.visible:
            self.visibility_changed.emit(name, new.visible)

    def choose_color(self, name: str) -> None:
        """Open a colour dialog for ``name`` (non-modal; :attr:`color_dialog`)."""
        dialog = QtWidgets.QColorDialog(QtGui.QColor(*self._displays[name].color), self)
        dialog.setWindowTitle(f"Colour of {name}")
        dialog.colorSelected.connect(
            lambda color: self.set_color(name, (color.red(), color.green(), color.blue()))
        )
        dialog.finished.connect(lambda _result: self._forget_dialog(dialog))
        self.color_dialog = dialog
        dialog.open()

    def _forget_dialog(self, dialog: QtWidgets.QColorDialog) -> None:
        if self.color_dialog is dialog:
            self.color_dialog = None
        dialog.deleteLater()

    # -- metrics -------------------------------------------------------------------------

    def show_comparison(self, result: CaseComparison | None) -> None:
        """Show the metrics and problems of the case on screen (an empty table for None)."""
        self.table.setRowCount(0)
        self._segments: list[str] = []
        if result is None:
            self.problems.hide()
            return
        for item in result.segments:
            m = item.metrics
            row = self.table.rowCount()
            self.table.insertRow(row)
            cells = (
                item.segment,
                item.other,
                _fixed(m.dice, 3),
                _fixed(m.hd95_mm, 1),
                _fixed(m.hd_max_mm, 1),
                _fixed(m.msd_mm, 2),
                f"{m.volume_diff_ml:+.2f}",
            )
            for column, text in enumerate(cells):
                cell = QtWidgets.QTableWidgetItem(text)
                if column >= 2:
                    cell.setTextAlignment(_RIGHT)
                if text == UNDEFINED:
                    side = "the reference" if str(m.empty) == "reference" else item.other
                    cell.setToolTip(f"Undefined: {side} has no voxels of {item.segment}")
                self.table.setItem(row, column, cell)
            if m.dice < LOW_DICE:
                dice = self.table.item(row, 2)
                dice.setForeground(QtGui.QBrush(QtGui.QColor(235, 90, 80)))
                dice.setToolTip(f"Disagreement: Dice below {LOW_DICE}")
            self._segments.append(item.segment)
        messages = [p.message for p in result.problems]
        self.problems.setText("\n".join(messages))
        self.problems.setVisible(bool(messages))

    def cell_text(self, row: int, column: int) -> str:
        """The text of a metrics cell (tests, screen readers)."""
        item = self.table.item(row, column)
        return item.text() if item is not None else ""

    def _on_double_click(self, row: int, _column: int) -> None:
        if 0 <= row < len(self._segments):
            self.segment_activated.emit(self._segments[row])


def _fixed(value: float | None, digits: int) -> str:
    return UNDEFINED if value is None else f"{value:.{digits}f}"


__all__ = ["DEFAULT_COLORS", "ComparisonPanel", "SegmentationDisplay"]
