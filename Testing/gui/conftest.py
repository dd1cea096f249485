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

from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseReaderLib.qt_binding_guard import protect_none_refcount

# PySide6 6.12 leaks a reference to None per void Qt call on Python 3.11: a long test session
# would abort with "deallocating None" (see qt_binding_guard).
protect_none_refcount()


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
