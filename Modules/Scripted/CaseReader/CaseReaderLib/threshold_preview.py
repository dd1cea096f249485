"""The Threshold tool's preview, pulsing on a QTimer.

trame-slicer pulses the preview overlay with an asyncio task, and no asyncio loop runs under
Qt: the overlay would stay still, and the task would never run. This object takes the place of
trame-slicer's "blinker" on the Threshold effect and drives the same parameter (the overlay's
opacity) from a QTimer. Each step re-renders the slice views (tens of milliseconds each on a
machine without a GPU), so the overlay pulses for a few seconds after the tool opens or the
range changes, then stays steady: it shows what will be filled without keeping a CPU busy.
"""

from __future__ import annotations

from typing import Any

from Qt import QtCore

#: Milliseconds between two opacity steps.
STEP_MS = 180
#: Opacity steps from low to high (and back).
STEPS = 5
#: Full pulses after each change before the overlay stays steady.
PULSES = 3
#: Opacity of the overlay between pulses and once it is steady.
STEADY_OPACITY = 0.6


class ThresholdPreviewPulse(QtCore.QObject):
    """Pulses the Threshold effect's preview; installed with :meth:`install`.

    Parameters
    ----------
    effect
        trame-slicer's ``SegmentationEffectThreshold``.
    parent
        Owner of the timer (the tools panel).
    """

    def __init__(self, effect: Any, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._effect = effect
        self._low = 0.3
        self._high = 0.85
        self._step = 0
        self._direction = 1
        self._steps_left = 0
        self._active = False
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(STEP_MS)
        self.timer.timeout.connect(self._tick)

    @classmethod
    def install(cls, effect: Any, parent: QtCore.QObject | None = None) -> ThresholdPreviewPulse:
        """Replace ``effect``'s asyncio blinker with a Qt-driven pulse; returns the pulse."""
        pulse = cls(effect, parent)
        # The effect calls set_active/start/stop on this attribute when it is (de)activated.
        effect._opacity_blinker = pulse
        return pulse

    @property
    def pulsing(self) -> bool:
        """Whether the overlay is pulsing now."""
        return self.timer.isActive()

    def set_active(self, is_active: bool) -> None:
        """The effect was activated or deactivated (called by trame-slicer)."""
        self._active = is_active
        if is_active:
            self.start()
        else:
            self.stop()

    def set_opacity_range(self, low: float, high: float) -> None:
        """Opacity of the overlay at the bottom and top of a pulse."""
        self._low, self._high = low, high

    def start(self) -> None:
        """Pulse for a few seconds (again), then stay steady."""
        if not self._active:
            return
        self._step, self._direction = 0, 1
        self._steps_left = PULSES * 2 * (STEPS - 1)
        self.timer.start()

    def restart(self) -> None:
        """The range changed: show it with a few pulses."""
        self.start()

    def stop(self) -> None:
        """Stop pulsing; the overlay keeps the steady opacity."""
        self.timer.stop()
        self._steps_left = 0

    def _tick(self) -> None:
        if self._steps_left <= 0 or not self._effect.is_active:
            self.timer.stop()
            self._set_opacity(STEADY_OPACITY)
            return
        self._steps_left -= 1
        self._step += self._direction
        if not 0 <= self._step < STEPS:
            self._direction *= -1
            self._step += 2 * self._direction
        self._set_opacity(self._low + (self._high - self._low) * self._step / (STEPS - 1))

    def _set_opacity(self, opacity: float) -> None:
        self._effect.get_param_proxy().preview_opacity = opacity
