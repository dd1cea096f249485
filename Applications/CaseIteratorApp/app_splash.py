"""The splash shown while the Slicer core starts and the batch is listed."""

from __future__ import annotations

from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib import __version__
from CaseReaderLib.style import APP_TITLE, logo


class Splash(QtWidgets.QFrame):
    """A frameless card: logo, name, what is happening, a progress bar."""

    def __init__(self) -> None:
        super().__init__(
            None,
            QtCore.Qt.WindowType.SplashScreen
            | QtCore.Qt.WindowType.FramelessWindowHint
            | QtCore.Qt.WindowType.WindowStaysOnTopHint,
        )
        self.setObjectName("splash")
        self.setFixedSize(520, 300)
        self.setStyleSheet(
            "QFrame#splash { background-color: #1b1e22; border: 1px solid #343a41;"
            " border-radius: 12px; }"
            "QLabel { background: transparent; }"
        )
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(36, 34, 36, 26)
        layout.setSpacing(6)
        top = QtWidgets.QHBoxLayout()
        top.setSpacing(16)
        mark = QtWidgets.QLabel()
        mark.setPixmap(logo().pixmap(72, 72))
        top.addWidget(mark)
        names = QtWidgets.QVBoxLayout()
        names.setSpacing(2)
        title = QtWidgets.QLabel(APP_TITLE)
        title.setStyleSheet("font-size: 22pt; font-weight: 600; color: #f1f3f5;")
        names.addWidget(title)
        tagline = QtWidgets.QLabel("Segment a batch of cases, one after another")
        tagline.setStyleSheet("color: #9aa3ad;")
        names.addWidget(tagline)
        top.addLayout(names, 1)
        layout.addLayout(top)
        layout.addStretch(1)
        self.message = QtWidgets.QLabel("Starting…")
        self.message.setStyleSheet("color: #c7ccd2;")
        layout.addWidget(self.message)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(False)
        layout.addWidget(self.progress)
        version = QtWidgets.QLabel(f"Version {__version__} · built on the 3D Slicer core")
        version.setStyleSheet("color: #6b737d; font-size: 8pt;")
        layout.addWidget(version)

    def show_centered(self) -> None:
        """Show in the middle of the primary screen."""
        screen = QtWidgets.QApplication.primaryScreen()
        if screen is not None:
            area = screen.availableGeometry()
            self.move(area.center() - self.rect().center())
        self.show()
        self.raise_()
        self.pump()

    def set_message(self, text: str, done: int | None = None, total: int | None = None) -> None:
        """Show what is happening (and how far, when known)."""
        self.message.setText(text)
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done or 0)
        else:
            self.progress.setRange(0, 0)
        self.pump()

    def pump(self) -> None:
        """Let Qt paint the splash now."""
        self.repaint()
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 30)
