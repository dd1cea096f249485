"""The segment list: add, rename, recolour, show/hide, lock and remove the case's segments.

Bound to :class:`~.segment_editing.SegmentEditing` (:meth:`SegmentPanel.bind`), the list follows
the segmentation node: what the reader changes here is changed there (through the undo stack),
and Undo/Redo of a segment change shows here. Unbound, it only shows the batch's segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.segmentation import Segment

from .segment_editing import CALM_PALETTE, SegmentEditing
from .style import icon

#: Rows shown before the list scrolls.
VISIBLE_ROWS = 6
#: Height of one row, in pixels.
ROW_HEIGHT = 34
#: How long a "name already used" message stays, in milliseconds.
MESSAGE_MS = 5000


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


def _icon_button(name: str, tooltip: str, checkable: bool = False) -> QtWidgets.QToolButton:
    button = QtWidgets.QToolButton()
    button.setObjectName("iconButton")
    button.setIcon(icon(name))
    button.setIconSize(QtCore.QSize(16, 16))
    button.setToolTip(tooltip)
    button.setCheckable(checkable)
    button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
    return button


class _SegmentRow(QtWidgets.QWidget):
    """One segment: colour, name (editable in place), lock and eye."""

    visibility_toggled = QtCore.Signal(bool)
    lock_toggled = QtCore.Signal(bool)
    color_clicked = QtCore.Signal()
    rename_requested = QtCore.Signal()
    renamed = QtCore.Signal(str)

    def __init__(self, segment: Segment, editable: bool = False) -> None:
        super().__init__()
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_TranslucentBackground)
        self._segment = segment
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(8, 0, 4, 0)
        layout.setSpacing(4)
        self.swatch = _icon_button("eye", "Change the colour")
        self.swatch.setIconSize(QtCore.QSize(14, 14))
        self.swatch.clicked.connect(self.color_clicked)
        if not editable:
            # Not disabled (Qt would grey the colour out): just not clickable.
            self.swatch.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            self.swatch.setToolTip("")
        layout.addWidget(self.swatch)
        self.name = QtWidgets.QLabel()
        self.name.setStyleSheet("background: transparent;")
        layout.addWidget(self.name, 1)
        self.editor = QtWidgets.QLineEdit()
        self.editor.setObjectName("segmentNameEditor")
        # The row is short: a compact editor, so the text is not clipped.
        self.editor.setFixedHeight(24)
        self.editor.setStyleSheet("QLineEdit { padding: 0 4px; border-radius: 4px; }")
        self.editor.hide()
        self.editor.editingFinished.connect(self._commit)
        self.editor.installEventFilter(self)
        layout.addWidget(self.editor, 1)
        self.lock = _icon_button("lock-open", "Lock: no tool changes this segment", True)
        self.lock.toggled.connect(self._on_lock)
        layout.addWidget(self.lock)
        # After addWidget: shown while it has no parent, it would be a window of its own and
        # take the activation (and the keyboard shortcuts) from the reading window.
        self.lock.setVisible(editable)
        self.eye = _icon_button("eye", "Show or hide this segment", True)
        self.eye.setChecked(True)
        self.eye.toggled.connect(self._on_eye)
        layout.addWidget(self.eye)
        self._editable = editable
        self.show_segment(segment, visible=True, locked=False)

    def show_segment(self, segment: Segment, *, visible: bool, locked: bool) -> None:
        """Show the current state of ``segment`` without emitting."""
        self._segment = segment
        self.swatch.setIcon(QtGui.QIcon(color_swatch(segment.color)))
        self.name.setText(segment.name)
        # A hidden segment's name is dimmed, like its eye.
        self.name.setStyleSheet(
            "background: transparent;" + ("" if visible else " color: #7f8b96;")
        )
        coded = f"{segment.type.meaning} ({segment.category.meaning})"
        how = "" if segment.algorithm.value == "MANUAL" else f"\nMade with {segment.algorithm_name}"
        rename = "\nDouble-click or F2 to rename" if self._editable else ""
        self.name.setToolTip(f"{segment.name}\n{coded}{how}{rename}")
        for button, checked in ((self.eye, visible), (self.lock, locked)):
            blocked = button.blockSignals(True)
            button.setChecked(checked)
            button.blockSignals(blocked)
        self.eye.setIcon(icon("eye" if visible else "eye-off"))
        self.lock.setIcon(icon("lock" if locked else "lock-open"))
        self.lock.setToolTip(
            "Locked: no tool changes this segment. Click to unlock"
            if locked
            else "Lock: no tool changes this segment"
        )

    @property
    def renaming(self) -> bool:
        """Whether the name editor is open."""
        return self.editor.isVisible()

    def start_rename(self) -> None:
        """Open the name editor on the current name, all selected."""
        self.editor.setText(self._segment.name)
        # As tall as the row leaves room for (the list's item padding takes some).
        self.editor.setFixedHeight(max(18, min(26, self.height() - 6)))
        self.name.hide()
        self.editor.show()
        self.editor.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
        self.editor.selectAll()

    def _close_editor(self) -> None:
        self.editor.hide()
        self.name.show()

    def _commit(self) -> None:
        if not self.renaming:
            return
        text = self.editor.text().strip()
        self._close_editor()
        if text and text != self._segment.name:
            self.renamed.emit(text)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if (
            watched is self.editor
            and event.type()
            in (
                QtCore.QEvent.Type.ShortcutOverride,
                QtCore.QEvent.Type.KeyPress,
            )
            and event.key() == QtCore.Qt.Key.Key_Escape
        ):
            if event.type() == QtCore.QEvent.Type.ShortcutOverride:
                event.accept()  # Esc is the window's "Adjust" tool: here it cancels
                return True
            self._close_editor()  # Esc keeps the old name
            return True
        return super().eventFilter(watched, event)

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:
        if self._editable:
            self.rename_requested.emit()
        event.accept()

    def _on_eye(self, visible: bool) -> None:
        self.eye.setIcon(icon("eye" if visible else "eye-off"))
        self.visibility_toggled.emit(visible)

    def _on_lock(self, locked: bool) -> None:
        self.lock.setIcon(icon("lock" if locked else "lock-open"))
        self.lock_toggled.emit(locked)


class SegmentPanel(QtWidgets.QWidget):
    """The case's segments; the selected one is the one the tools edit.

    Parameters
    ----------
    allow_free_names
        Whether readers may name segments themselves (new segments, renames). Without, only
        the batch's segment templates can be added.

    Signals
    -------
    segment_selected(int)
        The reader selected segment ``index``.
    visibility_changed(int, bool)
        The reader showed or hid segment ``index``.
    """

    segment_selected = QtCore.Signal(int)
    visibility_changed = QtCore.Signal(int, bool)

    def __init__(
        self, parent: QtWidgets.QWidget | None = None, *, allow_free_names: bool = True
    ) -> None:
        super().__init__(parent)
        self.allow_free_names = allow_free_names
        self._editing: SegmentEditing | None = None
        self._templates: tuple[Segment, ...] = ()
        self._ids: list[str] = []
        self._rows: list[_SegmentRow] = []
        #: The open colour dialog or removal question (tests answer them).
        self.color_dialog: QtWidgets.QColorDialog | None = None
        self.confirm_box: QtWidgets.QMessageBox | None = None

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        header = QtWidgets.QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(2)
        title = QtWidgets.QLabel("SEGMENTS")
        title.setProperty("role", "sectionTitle")
        header.addWidget(title, 1)
        self.add_button = _icon_button("plus", "Add a segment")
        self.add_menu = QtWidgets.QMenu(self)
        self.add_menu.aboutToShow.connect(self._fill_add_menu)
        self.add_button.setMenu(self.add_menu)
        self.add_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        self.remove_button = _icon_button("trash", "Remove the selected segment (Delete)")
        self.remove_button.clicked.connect(lambda: self.remove_segment(self.current_index))
        for button in (self.add_button, self.remove_button):
            button.hide()
            header.addWidget(button)
        layout.addLayout(header)

        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("segmentList")
        # Rows lay themselves out; the style sheet's item padding would leave them 18 px.
        self.list.setStyleSheet("QListWidget#segmentList::item { padding: 0 2px; }")
        self.list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.list.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        layout.addWidget(self.list)
        self.message = QtWidgets.QLabel()
        self.message.setProperty("role", "muted")
        self.message.setWordWrap(True)
        self.message.hide()
        layout.addWidget(self.message)
        self._message_timer = QtCore.QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self.message.hide)

        context = QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys, slot in (
            ("F2", lambda: self.start_rename(self.current_index)),
            ("Delete", lambda: self.remove_segment(self.current_index)),
        ):
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(keys), self.list)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)

    # -- model -----------------------------------------------------------------------------

    def bind(self, editing: SegmentEditing) -> None:
        """Follow and edit ``editing``'s segments from now on."""
        self._editing = editing
        self.add_button.show()
        editing.add_listener(self._sync)
        self._sync()

    def set_segments(self, segments: Sequence[Segment]) -> None:
        """The batch's segments: offered by "Add"; shown as they are when not bound."""
        self._templates = tuple(segments)
        if self._editing is not None:
            self._sync()
            return
        self._rebuild([f"template_{i}" for i in range(len(segments))], list(segments))
        rows = self._rows
        for index, row in enumerate(rows):
            row.visibility_toggled.connect(
                lambda visible, i=index: self.visibility_changed.emit(i, visible)
            )
        if segments:
            self.list.setCurrentRow(0)

    @property
    def current_index(self) -> int:
        """Index of the selected segment (-1 when none)."""
        return self.list.currentRow()

    def row(self, index: int) -> _SegmentRow:
        """The row widget of segment ``index``."""
        return self._rows[index]

    def set_current(self, index: int) -> None:
        """Select segment ``index`` without emitting."""
        blocked = self.list.blockSignals(True)
        self.list.setCurrentRow(index)
        self.list.blockSignals(blocked)
        self._update_buttons()

    def _rebuild(self, ids: list[str], segments: list[Segment]) -> None:
        blocked = self.list.blockSignals(True)
        self.list.clear()
        self._rows = []
        self._ids = ids
        editable = self._editing is not None
        for segment in segments:
            item = QtWidgets.QListWidgetItem()
            row = _SegmentRow(segment, editable=editable)
            item.setSizeHint(QtCore.QSize(0, ROW_HEIGHT))
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            self._rows.append(row)
            if editable:
                self._connect_row(row)
        self.list.setFixedHeight(min(VISIBLE_ROWS, max(1, len(segments))) * (ROW_HEIGHT + 2) + 8)
        self.list.blockSignals(blocked)

    def _connect_row(self, row: _SegmentRow) -> None:
        def index() -> int:
            return self._rows.index(row)

        row.visibility_toggled.connect(lambda visible: self._set_visible(index(), visible))
        row.lock_toggled.connect(lambda locked: self.set_locked(index(), locked))
        row.color_clicked.connect(lambda: self.choose_color(index()))
        row.rename_requested.connect(lambda: self.start_rename(index()))
        row.renamed.connect(lambda name: self.rename(index(), name))

    def _sync(self) -> None:
        """Show the editing's segments as they are now (rebuild only when segments came/went)."""
        editing = self._editing
        if editing is None:
            return
        ids = editing.segment_ids
        segments = list(editing.segments)
        if ids != self._ids:
            self._rebuild(ids, segments)
        for index, (row, segment) in enumerate(zip(self._rows, segments, strict=True)):
            row.show_segment(
                segment, visible=editing.is_visible(index), locked=editing.is_locked(index)
            )
        self.set_current(editing.active_index)

    def _update_buttons(self) -> None:
        editing = self._editing
        index = self.current_index
        has_case = editing is not None and editing.node is not None
        self.add_button.setEnabled(has_case)
        removable = has_case and 0 <= index < len(self._ids) and not editing.is_template(index)
        # Only segments the reader added can go: no dead button for the batch's segments.
        self.remove_button.setVisible(self._editing is not None and removable)

    def _on_row_changed(self, row: int) -> None:
        if row < 0:
            return
        if self._editing is not None:
            self._editing.set_active_index(row)
        self._update_buttons()
        self.segment_selected.emit(row)

    def _set_visible(self, index: int, visible: bool) -> None:
        if self._editing is not None:
            self._editing.set_visible(index, visible)
        self.visibility_changed.emit(index, visible)

    def show_message(self, text: str) -> None:
        """Say something about the last action under the list for a few seconds."""
        self.message.setText(text)
        self.message.show()
        self._message_timer.start(MESSAGE_MS)

    # -- actions ---------------------------------------------------------------------------

    def _fill_add_menu(self) -> None:
        self.add_menu.clear()
        for template in self._templates:
            action = self.add_menu.addAction(
                QtGui.QIcon(color_swatch(template.color)), template.name
            )
            action.triggered.connect(lambda _=False, t=template: self.add_segment(t))
        if self.allow_free_names:
            if self._templates:
                self.add_menu.addSeparator()
            action = self.add_menu.addAction(icon("plus"), "New segment…")
            action.triggered.connect(lambda: self.add_segment())

    def add_segment(self, template: Segment | None = None) -> int:
        """Add ``template`` (again) or a new, freely named segment; returns its index (-1: none).

        A template already in the list is added as "Name 2" in a colour of its own; a free
        segment opens its name for typing.
        """
        editing = self._editing
        if editing is None or editing.node is None:
            return -1
        if template is None and not self.allow_free_names:
            self.show_message("This site uses the batch's segment names only.")
            return -1
        names = {segment.name for segment in editing.segments}
        if template is not None and template.name in names:
            number = 2
            while f"{template.name} {number}" in names:
                number += 1
            template = replace(template, name=f"{template.name} {number}")
            template = replace(template, color=editing.next_color())
        index = editing.add_segment(template)
        if template is None:
            self.start_rename(index)
        return index

    def start_rename(self, index: int) -> None:
        """Open the name of segment ``index`` for typing (Enter keeps it, Esc does not)."""
        if self._editing is None or not 0 <= index < len(self._rows):
            return
        if not self.allow_free_names:
            self.show_message("This site uses the batch's segment names only.")
            return
        self.list.scrollToItem(self.list.item(index))
        self._rows[index].start_rename()

    def rename(self, index: int, name: str) -> bool:
        """Rename segment ``index``; a refused name is said under the list."""
        if self._editing is None:
            return False
        try:
            self._editing.rename(index, name)
        except ValueError as error:
            self.show_message(str(error)[:1].upper() + str(error)[1:] + ".")
            return False
        return True

    def choose_color(self, index: int) -> None:
        """Open the colour dialog for segment ``index`` (non-blocking)."""
        editing = self._editing
        if editing is None or not 0 <= index < len(self._ids):
            return
        segment = editing.segments[index]
        segment_id = self._ids[index]
        for number, rgb in enumerate(CALM_PALETTE[:16]):
            # The calm colours new segments get, offered first as "custom colours".
            QtWidgets.QColorDialog.setCustomColor(number, QtGui.QColor(*rgb))
        dialog = QtWidgets.QColorDialog(QtGui.QColor(*segment.color), self)
        dialog.setWindowTitle(f"Colour of {segment.name}")
        dialog.setOption(QtWidgets.QColorDialog.ColorDialogOption.DontUseNativeDialog)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.colorSelected.connect(lambda color: self._set_color(segment_id, color))
        dialog.destroyed.connect(lambda *_: setattr(self, "color_dialog", None))
        self.color_dialog = dialog
        dialog.open()

    def _set_color(self, segment_id: str, color: QtGui.QColor) -> None:
        if self._editing is not None and segment_id in self._ids and color.isValid():
            self._editing.set_color(
                self._ids.index(segment_id), (color.red(), color.green(), color.blue())
            )

    def set_locked(self, index: int, locked: bool) -> None:
        """Lock or unlock segment ``index``."""
        if self._editing is not None and 0 <= index < len(self._ids):
            self._editing.set_locked(index, locked)

    def remove_segment(self, index: int) -> None:
        """Remove segment ``index``; asks first when it has painted voxels (Undo restores)."""
        editing = self._editing
        if editing is None or not 0 <= index < len(self._ids):
            return
        if editing.is_template(index):
            self.show_message("The batch's segments stay; erase their voxels instead.")
            return
        voxels = editing.painted_voxels(index)
        if voxels == 0:
            editing.remove_segment(index)
            return
        segment_id, name = self._ids[index], editing.segments[index].name
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setWindowTitle("Remove segment")
        box.setText(f"Remove the segment “{name}”?")
        box.setInformativeText(
            f"Its {voxels:,} painted voxels go with it. Undo (Ctrl+Z) brings it back."
        )
        remove = box.addButton("Remove", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)  # Enter does not destroy work
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(*_: object) -> None:
            self.confirm_box = None
            if box.clickedButton() is remove and segment_id in self._ids:
                editing.remove_segment(self._ids.index(segment_id))

        box.finished.connect(answered)
        self.confirm_box = box
        box.open()

    def _context_menu(self, position: QtCore.QPoint) -> None:
        editing = self._editing
        index = self.list.indexAt(position).row()
        if editing is None or index < 0:
            return
        menu = QtWidgets.QMenu(self)
        rename = menu.addAction("Rename\tF2", lambda: self.start_rename(index))
        rename.setEnabled(self.allow_free_names)
        menu.addAction("Change colour…", lambda: self.choose_color(index))
        locked = editing.is_locked(index)
        menu.addAction(
            icon("lock-open" if locked else "lock"),
            "Unlock" if locked else "Lock",
            lambda: self.set_locked(index, not locked),
        )
        visible = editing.is_visible(index)
        menu.addAction(
            icon("eye-off" if visible else "eye"),
            "Hide" if visible else "Show",
            lambda: self._set_visible(index, not visible),
        )
        menu.addSeparator()
        remove = menu.addAction(
            icon("trash"), "Remove…\tDelete", lambda: self.remove_segment(index)
        )
        remove.setEnabled(not editing.is_template(index))
        menu.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.list.viewport().mapToGlobal(position))
