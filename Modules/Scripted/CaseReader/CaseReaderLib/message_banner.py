"""One calm way to show a problem: a banner above the views naming the case and what to do."""

from __future__ import annotations

from collections.abc import Callable

from Qt import QtCore, QtWidgets

from .style import icon


class MessageBanner(QtWidgets.QFrame):
    """A banner with a title, an explanation and up to two action buttons.

    ``kind`` is ``"attention"`` (amber: something is wrong, here is what to do) or ``"info"``
    (blue: a calm note, e.g. the batch is finished).
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 10, 10)
        layout.setSpacing(12)
        self._icon = QtWidgets.QLabel()
        self._icon.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self._icon)
        texts = QtWidgets.QVBoxLayout()
        texts.setSpacing(2)
        self.title = QtWidgets.QLabel()
        self.title.setObjectName("bannerTitle")
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        texts.addWidget(self.title)
        texts.addWidget(self.text)
        layout.addLayout(texts, 1)
        self._buttons: list[QtWidgets.QPushButton] = []
        self._button_box = QtWidgets.QHBoxLayout()
        self._button_box.setSpacing(6)
        layout.addLayout(self._button_box)
        self.hide()

    def show_message(
        self,
        title: str,
        text: str,
        actions: list[tuple[str, Callable[[], None]]] = (),  # type: ignore[assignment]
        *,
        kind: str = "attention",
    ) -> None:
        """Show the banner; ``actions`` are ``(button text, callback)`` pairs."""
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        name = "status-failed" if kind == "attention" else "status-done"
        self._icon.setPixmap(icon(name).pixmap(20, 20))
        self.title.setText(title)
        self.text.setText(text)
        for button in self._buttons:
            button.deleteLater()
        self._buttons = []
        for number, (label, callback) in enumerate(actions):
            button = QtWidgets.QPushButton(label)
            if number == 0:
                button.setProperty("primary", True)
            button.clicked.connect(callback)
            self._button_box.addWidget(button)
            self._buttons.append(button)
        self.show()

    def clear(self) -> None:
        """Hide the banner."""
        self.hide()

    def button_texts(self) -> list[str]:
        """Texts of the action buttons (tests)."""
        return [b.text() for b in self._buttons]

    def click(self, text: str) -> None:
        """Press the action button called ``text`` (tests)."""
        for button in self._buttons:
            if button.text() == text:
                button.click()
                return
        raise KeyError(text)
