"""The per-case reading timer: counts only time the reader is actually reading.

Time stops while the window is minimised or hidden and while nobody touches mouse or keyboard
for longer than ``idle_after_s`` (the idle minutes are not counted either: the count stops at
the last input). Seconds are handed to the progress store with ``add_time``.
"""

from __future__ import annotations

import time

from Qt import QtCore, QtGui, QtWidgets

_INPUT_EVENTS = {
    QtCore.QEvent.Type.MouseButtonPress,
    QtCore.QEvent.Type.MouseMove,
    QtCore.QEvent.Type.Wheel,
    QtCore.QEvent.Type.KeyPress,
    QtCore.QEvent.Type.TouchBegin,
    QtCore.QEvent.Type.TabletPress,
}


class ReadingTimer(QtCore.QObject):
    """Counts active reading seconds of the current case.

    Parameters
    ----------
    window
        The reading window (its minimised state pauses the count).
    idle_after_s
        Seconds without input after which the count pauses.
    clock
        Monotonic clock in seconds (tests pass their own).

    Signals
    -------
    ticked(float)
        About once a second while running: the case's counted seconds so far.
    paused_changed(bool)
        The count paused (True) or resumed (False).
    """

    ticked = QtCore.Signal(float)
    paused_changed = QtCore.Signal(bool)

    def __init__(
        self,
        window: QtWidgets.QWidget,
        *,
        idle_after_s: float = 90.0,
        clock=time.monotonic,
    ) -> None:
        super().__init__(window)
        self._window = window
        self._idle_after = float(idle_after_s)
        self._clock = clock
        self._running = False
        self._counted = 0.0
        self._last_tick = clock()
        self._last_input = clock()
        self._paused = False
        self._tick = QtCore.QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self.update)
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start counting a new case from zero."""
        now = self._clock()
        self._counted = 0.0
        self._last_tick = now
        self._last_input = now
        self._running = True
        self._tick.start()
        self.ticked.emit(0.0)

    def take(self) -> float:
        """Seconds counted since the last ``start``/``take``; the count goes on from zero."""
        self._accumulate()
        seconds, self._counted = self._counted, 0.0
        return seconds

    def stop(self) -> float:
        """Stop counting; return the seconds not yet taken."""
        seconds = self.take()
        self._running = False
        self._tick.stop()
        return seconds

    @property
    def seconds(self) -> float:
        """Seconds counted and not yet taken."""
        return self._counted

    @property
    def paused(self) -> bool:
        """Whether the count is paused (idle, minimised or hidden)."""
        return self._paused

    # -- counting --------------------------------------------------------------------------

    def _is_away(self) -> bool:
        window = self._window
        minimised = bool(window.windowState() & QtCore.Qt.WindowState.WindowMinimized)
        hidden = not window.isVisible()
        state = QtGui.QGuiApplication.applicationState()
        suspended = state in (
            QtCore.Qt.ApplicationState.ApplicationSuspended,
            QtCore.Qt.ApplicationState.ApplicationHidden,
        )
        return minimised or hidden or suspended

    def update(self) -> None:
        """Add the time since the last update when the reader was there; emit ``ticked``."""
        if not self._running:
            self._last_tick = self._clock()
            return
        paused = self._accumulate()
        if paused != self._paused:
            self._paused = paused
            self.paused_changed.emit(paused)
        self.ticked.emit(self._counted)

    def _accumulate(self) -> bool:
        """Count the time since the last tick unless away or idle; return whether paused."""
        now = self._clock()
        if not self._running:
            self._last_tick = now
            return True
        idle_since = self._last_input + self._idle_after
        away = self._is_away()
        if not away:
            # Count up to now, but not past the moment the reader went idle.
            end = min(now, idle_since)
            if end > self._last_tick:
                self._counted += end - self._last_tick
        self._last_tick = now
        return away or now > idle_since

    def note_input(self) -> None:
        """Record reader input now (also done by the application event filter)."""
        now = self._clock()
        if self._running and now > self._last_input + self._idle_after:
            # Back from idle: the idle stretch is not counted.
            self._accumulate()
            self._last_tick = now
        self._last_input = now

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if event.type() in _INPUT_EVENTS:
            self.note_input()
        return False

    def shutdown(self) -> None:
        """Stop and remove the application event filter."""
        self._tick.stop()
        self._running = False
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
