"""Work is never lost: drafts a few seconds after an edit, recovery after kill -9, saving in
the background (failures named with Try again, closing waits), prefetch state in the case list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.draft_store import Draft, DraftStore, PaintedLayers
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.progress_store import CaseStatus
from CaseIteratorCoreLib.segmentation import Segmentation

pytestmark = [pytest.mark.gui, pytest.mark.slicer]

SHOW_TIMEOUT_MS = 30_000
REPO = Path(__file__).resolve().parents[2]


def _paint(qtbot, reading, drag, half_width: int = 30) -> int:
    window = reading.window
    qtbot.mouseClick(window.tools.buttons["paint"], QtCore.Qt.MouseButton.LeftButton)
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-half_width, half_width + 1, 6)])
    painted = window.editing.painted_voxels(0)
    assert painted > 0
    return painted


def _drafts(reading) -> DraftStore:
    return DraftStore(reading.batch.key, reading.session.reader)


def _answer_recovery(qtbot, button_text: str) -> list[str]:
    """Answer the recovery question when it appears; returns its text (once answered)."""
    seen: list[str] = []

    def answer() -> None:
        box = QtWidgets.QApplication.activeModalWidget()
        if not isinstance(box, QtWidgets.QMessageBox):
            QtCore.QTimer.singleShot(50, answer)
            return
        seen.append(box.text())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QtCore.QTimer.singleShot(0, answer)
    return seen


def test_an_edit_is_kept_as_a_draft_within_seconds_and_save_removes_it(
    qtbot, reading, drag
) -> None:
    window = reading.window
    window.set_autosave_delay(0.3)
    case = reading.cases[0]
    with qtbot.waitSignal(window.draft_written, timeout=10_000):
        painted = _paint(qtbot, reading, drag)
    draft = _drafts(reading).load(case.id, window.loaded.image.volume.geometry)
    assert draft is not None
    assert draft.layers.voxel_counts()[0] == painted
    assert draft.case_name == case.name
    print(f"draft copy on the GUI thread: {window.last_draft_copy_seconds * 1000:.1f} ms")
    # Saving writes the result and removes the draft; the case is done only then.
    assert window.save_case()
    assert not window.editing.modified
    window.wait_for_saves()
    assert _drafts(reading).info(case.id) is None
    assert window.case_list.status_of(0) is CaseStatus.DONE


def test_undoing_back_to_the_clean_state_removes_the_draft(qtbot, reading, drag) -> None:
    window = reading.window
    window.set_autosave_delay(0.2)
    case = reading.cases[0]
    with qtbot.waitSignal(window.draft_written, timeout=10_000):
        _paint(qtbot, reading, drag)
    assert _drafts(reading).info(case.id) is not None
    window.actions["undo"].trigger()
    assert not window.editing.modified
    qtbot.waitUntil(lambda: _drafts(reading).info(case.id) is None, timeout=10_000)


CHILD = textwrap.dedent(
    """
    import os, sys, time
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from Qt import QtCore, QtTest, QtWidgets
    from CaseIteratorCoreLib.batch_file import load_batch
    from CaseIteratorCoreLib.progress_store import ProgressStore
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow

    app = QtWidgets.QApplication(sys.argv[:1])
    batch = load_batch(sys.argv[1])
    source = open_source(batch)
    session = ReadingSession.open(
        batch, source, list(source.iter_cases()), ProgressStore(), "dr.crash"
    )
    window = ReadingWindow(session, autosave_s=0.5)
    window.resize(1400, 900)
    window.show()
    window.start()

    def wait(condition, seconds=60):
        end = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > end:
                sys.exit("timed out")
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: window.loaded is not None)
    window.tools.choose("paint")
    axial = window.views.views["Axial"]
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    left = QtCore.Qt.MouseButton.LeftButton
    none = QtCore.Qt.KeyboardModifier.NoModifier
    points = [centre + QtCore.QPoint(dx, 0) for dx in range(-30, 31, 6)]
    QtTest.QTest.mouseMove(axial, points[0])
    QtTest.QTest.mousePress(axial, left, none, points[0])
    for point in points[1:]:
        QtTest.QTest.mouseMove(axial, point)
    QtTest.QTest.mouseRelease(axial, left, none, points[-1])
    painted = window.editing.painted_voxels(0)
    written = []
    window.draft_written.connect(written.append)
    wait(lambda: written)
    print(f"PAINTED {painted}", flush=True)
    while True:  # still "reading" when the kill comes
        app.processEvents()
        time.sleep(0.02)
    """
)


def test_kill_9_after_the_autosave_and_the_next_start_recovers_the_edits(
    qtbot, demo_batch: Path, reading_factory, no_leaks
) -> None:
    env = dict(os.environ)  # the same data folder (the test's) and offscreen platforms
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(demo_batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("PAINTED") and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                break
        assert line.startswith("PAINTED"), child.stderr.read()[-3000:]
        painted = int(line.split()[1])
        assert painted > 0
        os.kill(child.pid, signal.SIGKILL)  # no chance to clean up: like a crash
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    harness = reading_factory(demo_batch, "dr.crash")
    try:
        window = harness.window
        asked = _answer_recovery(qtbot, "Recover")
        with qtbot.waitSignal(window.case_shown, timeout=SHOW_TIMEOUT_MS):
            window.start(offer_recovery=True)
        assert asked and harness.cases[0].name in asked[0]
        assert window.current_index == 0
        assert window.editing.painted_voxels(0) == painted
        assert window.editing.modified and window.actions["save"].isEnabled()
        assert window.banner.title.text().startswith("Recovered your unsaved edits from ")
        # Saving keeps them and removes the draft.
        assert window.save_case()
        window.wait_for_saves()
        assert DraftStore(harness.batch.key, "dr.crash").drafts() == []
    finally:
        harness.close()


def test_discarding_at_the_recovery_question_removes_the_drafts(
    qtbot, demo_batch: Path, reading_factory, no_leaks
) -> None:
    harness = reading_factory(demo_batch, "dr.b")
    try:
        window = harness.window
        case = harness.cases[1]
        _store_draft(harness, case.id, time.time(), painted_slab=(4, 6))
        asked = _answer_recovery(qtbot, "Discard edits")
        with qtbot.waitSignal(window.case_shown, timeout=SHOW_TIMEOUT_MS):
            window.start(offer_recovery=True)
        assert asked
        assert window.current_index == 0  # where the reader stopped, not the draft's case
        assert DraftStore(harness.batch.key, "dr.b").drafts() == []
    finally:
        harness.close()


def _store_draft(harness, case_id: str, saved_at: float, painted_slab=(2, 4), geometry=None):
    """A draft of ``case_id`` painting a slab of slices in the first segment."""
    from CaseIteratorCoreLib.loading import load_case

    if geometry is None:
        case = next(c for c in harness.cases if c.id == case_id)
        geometry = load_case(harness.source, case).image.volume.geometry
    segments = [s for s in harness.window.editing.segments] or []
    if not segments:
        from CaseIteratorCoreLib.segmentation import Segment

        segments = [Segment.from_template(t) for t in harness.batch.segments]
    masks = [np.zeros(geometry.shape, bool) for _ in segments]
    masks[0][painted_slab[0] : painted_slab[1], 10:20, 10:20] = True
    segmentation = Segmentation.from_masks(masks, geometry, segments)
    store = DraftStore(harness.batch.key, harness.session.reader)
    store.save(Draft(case_id, PaintedLayers.from_segmentation(segmentation), saved_at, "x"))
    return int(masks[0].sum())


def test_a_draft_older_than_the_readers_save_is_dropped_a_newer_one_wins(
    qtbot, demo_batch: Path, reading_factory, drag, no_leaks
) -> None:
    first = reading_factory(demo_batch)
    first.start()
    try:
        saved = _paint(qtbot, first, drag)
        assert first.window.save_case()
        first.window.wait_for_saves()
    finally:
        first.close()
    case = first.cases[0]
    # A draft from before the save (as if a crash had left it, then the reader saved).
    _store_draft(first, case.id, time.time() - 3600)
    older = reading_factory(demo_batch)
    try:
        older.start()
        if older.window.current_index != 0:
            older.window.go_to(0)
            older.wait_shown(0)
        assert older.window.editing.painted_voxels(0) == saved
        assert not older.window.editing.modified
        assert "older than your later save" in older.window.banner.text.text()
        assert DraftStore(older.batch.key, "dr.test").info(case.id) is None
    finally:
        older.close()
    # A draft newer than the save: it is what the reader did last.
    newer_voxels = _store_draft(first, case.id, time.time() + 5, painted_slab=(3, 9))
    newer = reading_factory(demo_batch)
    try:
        newer.start()
        if newer.window.current_index != 0:
            newer.window.go_to(0)
            newer.wait_shown(0)
        assert newer.window.editing.painted_voxels(0) == newer_voxels
        assert newer.window.editing.modified
        assert "Recovered your unsaved edits" in newer.window.banner.title.text()
    finally:
        newer.close()


def test_a_draft_painted_on_another_grid_is_set_aside_with_a_clear_message(
    qtbot, demo_batch: Path, reading_factory, no_leaks
) -> None:
    harness = reading_factory(demo_batch)
    try:
        case = harness.cases[0]
        other = Geometry((32, 32, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), np.eye(3))
        _store_draft(harness, case.id, time.time(), geometry=other)
        harness.start()
        window = harness.window
        assert window.banner.isVisible()
        assert "another image grid" in window.banner.text.text()
        assert "Traceback" not in window.banner.text.text()
        assert window.editing.painted_voxels(0) == 0 and not window.editing.modified
        store = DraftStore(harness.batch.key, "dr.test")
        assert store.info(case.id) is None
        assert store.path_for(case.id).with_suffix(".rejected").exists()
    finally:
        harness.close()


def test_a_failed_save_names_the_case_offers_try_again_and_keeps_the_edits(
    qtbot, reading, drag
) -> None:
    window = reading.window
    results = reading.batch.output.folder
    # A real failure: the results folder cannot be made (a file is in its place).
    if results.exists():
        results.rmdir()
    results.write_text("not a folder")
    painted = _paint(qtbot, reading, drag)
    with qtbot.waitSignal(window.case_saved, timeout=30_000) as saved:
        assert window.save_case()  # returns at once: the window is not frozen
    assert saved.args[1] is False
    assert window.banner.isVisible()
    assert window.banner.title.text() == f"{reading.cases[0].name} could not be saved"
    assert "Try again" in window.banner.button_texts()
    assert window.case_list.status_of(0) is CaseStatus.IN_PROGRESS
    assert window.editing.modified  # leaving asks again
    draft = _drafts(reading).load(reading.cases[0].id)
    assert draft is not None and draft.layers.voxel_counts()[0] == painted
    # The admin fixes the folder; Try again writes the same segmentation.
    results.unlink()
    with qtbot.waitSignal(window.case_saved, timeout=30_000) as saved:
        window.banner.click("Try again")
    assert saved.args[1] is True
    assert window.case_list.status_of(0) is CaseStatus.DONE
    assert len(list(results.rglob("*.dcm"))) == 1
    assert _drafts(reading).info(reading.cases[0].id) is None


def test_closing_waits_for_a_save_in_flight(
    qtbot, demo_batch: Path, reading_factory, drag, no_leaks
) -> None:
    harness = reading_factory(demo_batch)
    harness.start()
    try:
        _paint(qtbot, harness, drag)
        window = harness.window
        window.save_and_next()  # moves on at once; the save runs in the background
    finally:
        harness.close()  # closing waits for the save
    progress = harness.store.__class__().for_batch(harness.batch.key, "dr.test")
    assert progress.get(harness.cases[0].id).status is CaseStatus.DONE
    assert len(list(harness.batch.output.folder.rglob("*.dcm"))) == 1


def test_the_case_list_shows_what_is_loaded_ahead(qtbot, reading) -> None:
    case_list = reading.window.case_list
    qtbot.waitUntil(lambda: case_list.prefetch_state_of(1) == "ready", timeout=SHOW_TIMEOUT_MS)
    assert "Loaded: opens at once" in case_list.list.item(1).toolTip()
    assert case_list.prefetch_state_of(0) == "ready"  # the case on screen


def test_save_and_next_then_previous_at_once_shows_the_save(qtbot, reading, drag) -> None:
    window = reading.window
    painted = _paint(qtbot, reading, drag)
    window.save_and_next()  # the save may still be on its way when the reader goes back
    window.previous_case()
    reading.wait_shown(0)
    assert window.editing.painted_voxels(0) == painted
    assert not window.editing.modified
    assert "resumed from your save" in window.banner.text.text().lower()
    assert window.case_list.status_of(0) is CaseStatus.DONE


def test_a_case_that_failed_while_loaded_ahead_is_reported_when_opened(
    qtbot, demo_batch: Path, reading_factory, no_leaks
) -> None:
    series = sorted((demo_batch.parent / "dicom" / "DEMO-002" / "CT_abdomen").glob("IM*.dcm"))
    series[len(series) // 2].unlink()  # case 2 misses a slice
    harness = reading_factory(demo_batch)
    try:
        harness.start()
        window = harness.window
        qtbot.waitUntil(
            lambda: window.case_list.prefetch_state_of(1) == "failed", timeout=SHOW_TIMEOUT_MS
        )
        assert "Could not be loaded" in window.case_list.list.item(1).toolTip()
        window.next_case()
        qtbot.waitUntil(window.banner.isVisible, timeout=SHOW_TIMEOUT_MS)
        assert "could not be opened" in window.banner.title.text()
        assert window.case_list.status_of(1) is CaseStatus.FAILED
    finally:
        harness.close()
