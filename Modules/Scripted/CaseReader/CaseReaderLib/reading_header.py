"""The header of the reading window: brand, batch, "Case N of M", progress, timer, reader."""

from __future__ import annotations

from Qt import QtCore, QtGui, QtWidgets

from .style import APP_TITLE, icon, logo


def format_duration(seconds: float) -> str:
    """``mm:ss`` (or ``h:mm:ss``) for the reading timer."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class _Chip(QtWidgets.QFrame):
    """A rounded label with an icon (reader, timer)."""

    def __init__(self, icon_name: str, object_name: str, tooltip: str) -> None:
        super().__init__()
        self.setObjectName("chip")
        self.setToolTip(tooltip)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(10, 3, 12, 3)
        layout.setSpacing(6)
        picture = QtWidgets.QLabel()
        picture.setPixmap(icon(icon_name).pixmap(16, 16))
        layout.addWidget(picture)
        self.label = QtWidgets.QLabel()
        self.label.setObjectName(object_name)
        layout.addWidget(self.label)


def _side() -> QtWidgets.QWidget:
    """A plain box for one side of the header (the header's colour shows through)."""
    side = QtWidgets.QWidget()
    side.setObjectName("headerSide")
    side.setStyleSheet("QWidget#headerSide { background: transparent; }")
    return side


class ReadingHeader(QtWidgets.QFrame):
    """Top bar of the reading window."""

    def __init__(self, batch_name: str, reader: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("header")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        layout.setSpacing(12)

        # The brand (left) and the buttons and chips (right) sit in boxes made equally wide
        # when there is room, so "Case N of M" stays in the middle of the window.
        self._left = _side()
        left = QtWidgets.QHBoxLayout(self._left)
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(12)
        mark = QtWidgets.QLabel()
        mark.setPixmap(logo().pixmap(30, 30))
        left.addWidget(mark)
        brand = QtWidgets.QVBoxLayout()
        brand.setSpacing(0)
        name = QtWidgets.QLabel(APP_TITLE)
        name.setObjectName("appName")
        brand.addWidget(name)
        self.batch_label = QtWidgets.QLabel(batch_name)
        self.batch_label.setObjectName("batchName")
        brand.addWidget(self.batch_label)
        left.addLayout(brand)
        left.addStretch(1)
        layout.addWidget(self._left)
        layout.addStretch(1)

        middle = QtWidgets.QVBoxLayout()
        middle.setSpacing(4)
        self.counter = QtWidgets.QLabel("")
        self.counter.setObjectName("caseCounter")
        self.counter.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        middle.addWidget(self.counter)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(280)
        middle.addWidget(self.progress, 0, QtCore.Qt.AlignmentFlag.AlignHCenter)
        self.case_title = QtWidgets.QLabel("")
        self.case_title.setObjectName("caseTitle")
        self.case_title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        middle.addWidget(self.case_title)
        self._middle = middle
        layout.addLayout(middle)
        layout.addStretch(1)

        self._right = _side()
        right = QtWidgets.QHBoxLayout(self._right)
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(12)
        right.addStretch(1)
        self.browser_button = QtWidgets.QPushButton("DICOM browser…")
        self.browser_button.setToolTip(
            "Find studies on this computer or the PACS and read them as a batch"
        )
        right.addWidget(self.browser_button)
        self.open_button = QtWidgets.QPushButton("Open batch…")
        self.open_button.setToolTip("Open another batch (your progress in this one is kept)")
        right.addWidget(self.open_button)
        self.timer_chip = _Chip(
            "clock", "readingTime", "Reading time of this case (pauses when idle or minimised)"
        )
        self.timer_chip.label.setText("00:00")
        right.addWidget(self.timer_chip)
        self.reader_chip = _Chip("reader", "readerName", "The reader whose work is recorded")
        self.reader_chip.label.setText(reader)
        right.addWidget(self.reader_chip)
        layout.addWidget(self._right)

    def _balance(self) -> None:
        """Make the two sides equally wide when the header has room for it (centred title)."""
        sides = max(self._left.sizeHint().width(), self._right.sizeHint().width())
        margins = self.layout().contentsMargins()
        room = self.width() - margins.left() - margins.right() - 4 * self.layout().spacing()
        width = sides if room >= 2 * sides + self._middle.sizeHint().width() else 0
        for side in (self._left, self._right):
            if side.minimumWidth() != width:
                side.setMinimumWidth(width)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._balance()

    def set_position(self, number: int, count: int, finished: int, title: str) -> None:
        """Show "Case ``number`` of ``count``", the finished share and the case's title."""
        self.counter.setText(f"Case {number} of {count}")
        self.progress.setRange(0, max(count, 1))
        self.progress.setValue(finished)
        self.progress.setToolTip(f"{finished} of {count} cases finished (done or skipped)")
        self.case_title.setText(title)
        self._balance()

    def set_reading_time(self, seconds: float, paused: bool = False) -> None:
        """Update the timer chip."""
        text = format_duration(seconds)
        self.timer_chip.label.setText(f"{text}  paused" if paused else text)
        self._balance()  # "paused" widens the right side
