"""Fixtures of the GUI tests: offscreen Qt and VTK, a small demo batch, leak checks.

The tests drive real widgets with pytest-qt (``qtbot``), real slicer-core scenes and real DICOM
files; nothing is mocked.
"""

from __future__ import annotations

import os

# Before Qt and VTK load: no X server needed (Testing/run_tests.sh sets the same).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.progress_store import ProgressStore
from CaseIteratorCoreLib.sources import open_source
from CaseReaderLib.qt_binding_guard import protect_none_refcount
from CaseReaderLib.reading_session import ReadingSession
from CaseReaderLib.reading_window import ReadingWindow

# PySide6 6.12 leaks a reference to None per void Qt call on Python 3.11: a long test session
# would abort with "deallocating None" (see qt_binding_guard).
protect_none_refcount()


#: How long a case may take to appear (first render compiles shaders).
SHOW_TIMEOUT_MS = 30_000


class Reading:
    """A reading window on a batch, with its progress store."""

    def __init__(self, qtbot, batch_file: Path, reader: str = "dr.test") -> None:
        self.qtbot = qtbot
        self.batch = load_batch(batch_file)
        self.source = open_source(self.batch)
        self.cases = list(self.source.iter_cases())
        self.store = ProgressStore()
        self.session = ReadingSession.open(self.batch, self.source, self.cases, self.store, reader)
        self.window = ReadingWindow(self.session)
        self.window.resize(1400, 900)
        self.window.show()
        qtbot.waitExposed(self.window)

        # Activation is asynchronous and a request made too early is dropped: ask until the
        # window is active (window shortcuts such as Ctrl+N only work in the active window).
        def active() -> bool:
            if not self.window.isActiveWindow():
                self.window.activateWindow()
            return self.window.isActiveWindow()

        qtbot.waitUntil(active, timeout=5000)

    def start(self) -> None:
        with self.qtbot.waitSignal(self.window.case_shown, timeout=SHOW_TIMEOUT_MS):
            self.window.start()

    def wait_shown(self, index: int) -> None:
        self.qtbot.waitUntil(
            lambda: (
                self.window.loaded is not None
                and self.window.loaded.case.id == self.cases[index].id
            ),
            timeout=SHOW_TIMEOUT_MS,
        )

    @property
    def axial(self):
        return self.window.views.views["Axial"]

    def close(self) -> None:
        self.window.editing.mark_saved()  # no "save your edits?" question at teardown
        self.window.close()
        assert self.window.loader.pool.activeThreadCount() == 0
        self.store.close()
        self.source.close()


@pytest.fixture
def reading_factory(qtbot):
    """Make :class:`Reading` harnesses (closed by the test)."""
    return lambda batch_file, reader="dr.test": Reading(qtbot, batch_file, reader)


@pytest.fixture
def reading(qtbot, demo_batch: Path, no_leaks):
    """A reading window on the demo batch, showing case 1; closed at the end."""
    harness = Reading(qtbot, demo_batch)
    harness.start()
    yield harness
    harness.close()


@pytest.fixture
def drag(qtbot):
    """Drag with the left button through ``points`` of ``widget``."""

    def do(widget, points) -> None:
        from Qt import QtCore

        left = QtCore.Qt.MouseButton.LeftButton
        qtbot.mouseMove(widget, points[0])
        qtbot.mousePress(widget, left, pos=points[0])
        for point in points[1:]:
            qtbot.mouseMove(widget, point)
        qtbot.mouseRelease(widget, left, pos=points[-1])

    return do


@pytest.fixture
def demo_batch(tmp_path: Path) -> Path:
    """A two-case demo batch of small CT series (64x64, 16 slices): the batch file."""
    return write_demo_batch(tmp_path / "demo", 2, size=64, n_slices=16)


@pytest.fixture
def no_leaks(qapp) -> Iterator[None]:
    """Fail when a test leaves top-level widgets or threads behind."""
    from Qt import QtCore, QtWidgets

    widgets_before = set(map(id, QtWidgets.QApplication.topLevelWidgets()))
    threads_before = {t.ident for t in threading.enumerate()}
    yield
    for _ in range(3):
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
        qapp.processEvents()
    left = [
        w
        for w in QtWidgets.QApplication.topLevelWidgets()
        if id(w) not in widgets_before and w.isVisible()
    ]
    assert not left, f"widgets left open: {[type(w).__name__ for w in left]}"
    # Qt's pool threads appear as dummy threads once they ran Python code; the loader's own
    # pool is checked by the tests that use it.
    threads = [
        t
        for t in threading.enumerate()
        if t.ident not in threads_before
        and t.is_alive()
        and not isinstance(t, threading._DummyThread)
    ]
    assert not threads, f"threads left running: {[t.name for t in threads]}"
    pool = QtCore.QThreadPool.globalInstance()
    assert pool.activeThreadCount() == 0
