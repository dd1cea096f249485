"""The reading timer counts only time the reader is there."""

from __future__ import annotations

import pytest
from Qt import QtWidgets

from CaseReaderLib.reading_timer import ReadingTimer

pytestmark = pytest.mark.gui


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timer(qtbot):
    window = QtWidgets.QWidget()
    qtbot.addWidget(window)
    window.show()
    clock = Clock()
    timer = ReadingTimer(window, idle_after_s=60.0, clock=clock)
    yield timer, clock, window
    timer.shutdown()


def test_counts_while_the_reader_works(timer) -> None:
    reading, clock, _ = timer
    reading.start()
    clock.now += 10
    reading.note_input()
    clock.now += 5
    assert reading.take() == pytest.approx(15.0)
    clock.now += 2
    assert reading.stop() == pytest.approx(2.0)


def test_idle_time_is_not_counted(timer) -> None:
    reading, clock, _ = timer
    reading.start()
    clock.now += 300  # nobody touched anything for 5 minutes
    reading.update()
    assert reading.paused
    assert reading.seconds == pytest.approx(60.0)  # counted up to the idle limit only
    reading.note_input()  # back
    clock.now += 4
    assert reading.take() == pytest.approx(64.0)


def test_minimised_window_pauses(timer) -> None:
    reading, clock, window = timer
    reading.start()
    clock.now += 3
    reading.update()
    window.showMinimized()
    clock.now += 20
    reading.update()
    window.showNormal()
    reading.note_input()
    clock.now += 2
    reading.update()
    assert reading.seconds == pytest.approx(5.0)
