"""Kiosk basics: only the reading workflow, file dialogs held inside the allowed folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.progress_store import ProgressStore
from CaseIteratorCoreLib.sources import open_source
from CaseReaderLib.batch_picker import BatchFileDialog, choose_batch, is_inside
from CaseReaderLib.reading_session import ReadingSession
from CaseReaderLib.reading_window import ReadingWindow

pytestmark = [pytest.mark.gui, pytest.mark.slicer]


def _window(demo_batch: Path, **kwargs) -> tuple[ReadingWindow, ProgressStore]:
    batch = load_batch(demo_batch)
    source = open_source(batch)
    store = ProgressStore()
    session = ReadingSession.open(batch, source, list(source.iter_cases()), store, "dr.kiosk")
    return ReadingWindow(session, **kwargs), store


def test_kiosk_window_has_no_menus_console_or_free_file_dialog(
    qtbot, demo_batch: Path, no_leaks
) -> None:
    window, store = _window(demo_batch, kiosk=True)
    try:
        window.show()
        qtbot.waitExposed(window)
        assert not window.findChildren(QtWidgets.QMenuBar)
        assert not window.findChildren(QtWidgets.QDockWidget)
        assert not window.findChildren(QtWidgets.QPlainTextEdit)  # no Python console
        assert not window.header.open_button.isVisible()  # no allowed folder: no file dialog
        assert choose_batch(window, (), kiosk=True) is None
    finally:
        window.shutdown()  # a kiosk window asks before closing
        window.hide()
        store.close()


def test_open_batch_is_offered_inside_allowed_folders(qtbot, demo_batch: Path, no_leaks) -> None:
    window, store = _window(demo_batch, kiosk=True, allowed_folders=(demo_batch.parent,))
    try:
        window.show()
        qtbot.waitExposed(window)
        assert window.header.open_button.isVisible()
    finally:
        window.shutdown()
        window.hide()
        store.close()


def test_batch_dialog_stays_inside_the_allowed_folders(qtbot, tmp_path: Path) -> None:
    allowed = tmp_path / "batches"
    allowed.mkdir()
    (allowed / "liver.toml").write_text("name = 'x'\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "other.toml").write_text("name = 'y'\n")
    assert is_inside(allowed / "liver.toml", [allowed])
    assert not is_inside(outside / "other.toml", [allowed])
    assert not is_inside(allowed / ".." / "elsewhere", [allowed])

    dialog = BatchFileDialog([allowed])
    qtbot.addWidget(dialog)
    assert [u.toLocalFile() for u in dialog.sidebarUrls()] == [str(allowed)]
    dialog.show()
    qtbot.waitExposed(dialog)
    # Going up from the allowed folder leads back into it.
    up = dialog.findChild(QtWidgets.QToolButton, "toParentButton")
    qtbot.mouseClick(up, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: Path(dialog.directory().absolutePath()) == allowed)
    # Typing a path outside, folder or file, is refused.
    edit = dialog.findChild(QtWidgets.QLineEdit, "fileNameEdit")
    for typed in (outside, outside / "other.toml"):
        edit.setText(str(typed))
        qtbot.keyClick(edit, QtCore.Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: Path(dialog.directory().absolutePath()) == allowed)
        assert dialog.isVisible() and dialog.result() != QtWidgets.QDialog.DialogCode.Accepted
    assert not dialog.is_allowed(outside / "other.toml")
    dialog.hide()
    dialog.selectFile(str(allowed / "liver.toml"))
    QtCore.QTimer.singleShot(0, dialog.accept)
    assert dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted
    assert Path(dialog.selectedFiles()[0]) == allowed / "liver.toml"
