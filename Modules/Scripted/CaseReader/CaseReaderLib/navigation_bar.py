"""The bottom bar: the case's name on the left, Previous / Skip / Save / Save & Next / Next."""

from __future__ import annotations

from Qt import QtGui, QtWidgets

from .style import icon


def _button(action: QtGui.QAction, primary: bool = False) -> QtWidgets.QPushButton:
    """A push button that mirrors ``action`` (text, icon, tooltip with shortcut, enabled)."""
    button = QtWidgets.QPushButton(action.icon(), action.text())
    button.setToolTip(action.toolTip())
    button.setEnabled(action.isEnabled())
    button.clicked.connect(action.trigger)
    action.changed.connect(lambda: button.setEnabled(action.isEnabled()))
    if primary:
        button.setProperty("primary", True)
    return button


class NavigationBar(QtWidgets.QFrame):
    """Bottom bar with the case actions; the actions (and their shortcuts) live in the window."""

    def __init__(
        self,
        previous: QtGui.QAction,
        skip: QtGui.QAction,
        save: QtGui.QAction,
        save_next: QtGui.QAction,
        next_: QtGui.QAction,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("navigationBar")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        layout.setSpacing(8)
        self.status = QtWidgets.QLabel("")
        self.status.setProperty("role", "muted")
        layout.addWidget(self.status, 1)
        self.previous_button = _button(previous)
        self.skip_button = _button(skip)
        self.save_button = _button(save)
        self.save_next_button = _button(save_next, primary=True)
        self.next_button = _button(next_)
        for button in (self.previous_button, self.skip_button):
            layout.addWidget(button)
        layout.addSpacing(18)
        for button in (self.save_button, self.save_next_button, self.next_button):
            layout.addWidget(button)
        self.next_button.setIcon(icon("nav-next"))

    def set_status(self, text: str) -> None:
        """Short line on the left (what was last saved, load state)."""
        self.status.setText(text)
