"""Asking who reads, once at start (unless ``--reader`` or the site settings fix it)."""

from __future__ import annotations

from collections.abc import Sequence

from Qt import QtCore, QtWidgets

from .style import APP_TITLE, logo


class ReaderDialog(QtWidgets.QDialog):
    """Modal dialog: the reader's name, from a fixed list or typed freely.

    Parameters
    ----------
    suggestions
        Names to offer (readers already known in this batch, the login name).
    fixed_list
        When True, only ``suggestions`` may be chosen (site settings' reader list).
    """

    def __init__(
        self,
        suggestions: Sequence[str],
        *,
        fixed_list: bool = False,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(APP_TITLE)
        self.setModal(True)
        self.setMinimumWidth(420)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(24, 22, 24, 18)
        layout.setSpacing(12)
        top = QtWidgets.QHBoxLayout()
        mark = QtWidgets.QLabel()
        mark.setPixmap(logo().pixmap(40, 40))
        top.addWidget(mark)
        title = QtWidgets.QLabel("Who is reading?")
        title.setObjectName("dialogTitle")
        top.addWidget(title, 1)
        layout.addLayout(top)
        note = QtWidgets.QLabel(
            "Your name is recorded with every result and with your progress in this batch."
        )
        note.setProperty("role", "muted")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.name = QtWidgets.QComboBox()
        self.name.setEditable(not fixed_list)
        self.name.addItems(list(dict.fromkeys(s for s in suggestions if s)))
        if self.name.lineEdit() is not None:
            self.name.lineEdit().setPlaceholderText("Your name")
            self.name.lineEdit().textChanged.connect(self._refresh)
        layout.addWidget(self.name)
        buttons = QtWidgets.QDialogButtonBox()
        self.start_button = buttons.addButton(
            "Start reading", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.start_button.setProperty("primary", True)
        buttons.addButton("Quit", QtWidgets.QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.name.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
        self._refresh()

    def reader(self) -> str:
        """The name entered or chosen (stripped)."""
        return self.name.currentText().strip()

    def _refresh(self, *_: object) -> None:
        self.start_button.setEnabled(bool(self.reader()))
