"""The reading window: one case at a time, its views and segments, and the way to the next one.

It composes the pieces (header, case list, views, segment panel, tools, navigation bar) and
runs the case flow: open a case (loaded off the GUI thread by :class:`~.case_loader.
CaseLoader`), show it, record progress and reading time, save, skip, move on. A case that
cannot be opened is shown calmly in a banner, recorded as failed, and can be left behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.mrml_segmentation import fill_segments
from CaseIteratorCoreLib.mrml_volume import volume_to_node
from CaseIteratorCoreLib.problems import Severity
from CaseIteratorCoreLib.segmentation import Segment, Segmentation

from .batch_picker import choose_batch
from .case_details_panel import CaseDetailsPanel
from .case_list_panel import CaseListPanel
from .case_loader import CaseLoader
from .edit_tools_panel import EditToolsPanel, register_tool_shortcuts
from .message_banner import MessageBanner
from .navigation_bar import NavigationBar
from .qt_binding_guard import protect_none_refcount
from .reading_actions import make_actions
from .reading_header import ReadingHeader
from .reading_scene import ReadingScene
from .reading_session import ReadingSession
from .reading_timer import ReadingTimer
from .result_saving import ResultSaver
from .segment_editing import SegmentEditing
from .segment_panel import SegmentPanel
from .skip_dialog import SkipDialog
from .slice_view_layout import SliceViewLayout
from .style import APP_TITLE
from .window_level import PRESETS, apply_preset, presets_for
from .window_presets_bar import WindowPresetsBar

log = logging.getLogger(__name__)

#: Reading time is written to the progress store at least this often (seconds).
TIME_FLUSH_S = 60.0


def describe_image(loaded: LoadedCase) -> str:
    """One line about the image: modality, size, voxel size."""
    geometry = loaded.image.volume.geometry
    modality = loaded.case.details.get("modality", "")
    size = " × ".join(str(n) for n in geometry.size)
    spacing = " × ".join(f"{s:.2f}" for s in geometry.spacing)
    parts = [p for p in (modality, f"{size} voxels", f"{spacing} mm") if p]
    return " · ".join(parts)


class ReadingWindow(QtWidgets.QMainWindow):
    """The main window of CaseIterator.

    Parameters
    ----------
    session
        The batch, its cases and the reader's progress.
    scene
        The Slicer scene and views (made on the GUI thread); a new one when None.
    effects
        Editing tools to offer (site settings); all when None.
    kiosk
        Reading-station mode: closing asks for confirmation, nothing else of the desktop shows.
    allowed_folders
        Folders the "Open batch" dialog may show (site settings); in kiosk mode without any,
        no file dialog is offered.

    Signals
    -------
    case_shown(int, float)
        Case ``index`` is on screen; GUI-thread seconds the switch took (wrap, show, render).
    """

    case_shown = QtCore.Signal(int, float)

    def __init__(
        self,
        session: ReadingSession,
        scene: ReadingScene | None = None,
        *,
        effects: Iterable[str] | None = None,
        kiosk: bool = False,
        allowed_folders: Sequence[Path] = (),
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        protect_none_refcount()  # before the first repaint: see qt_binding_guard
        super().__init__(parent)
        self.setObjectName("readingWindow")
        self.setWindowTitle(f"{APP_TITLE} — {session.batch.name}")
        self.session = session
        self.kiosk = kiosk
        self.allowed_folders = tuple(allowed_folders)
        #: A batch the reader chose with "Open batch…"; the application opens it next.
        self.requested_batch: Path | None = None
        self.scene = scene or ReadingScene()
        self.editing = SegmentEditing(self.scene)
        self.saver = ResultSaver(session.batch, session.reader, session.source)
        self.loader = CaseLoader(session.source, self, after_load=self.saver.prepare_resume)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.timer = ReadingTimer(self)
        self.timer.ticked.connect(self._on_timer_tick)
        self.loaded: LoadedCase | None = None
        self.last_switch_seconds = 0.0
        self._recorded_seconds = 0.0
        self._segments = tuple(Segment.from_template(t) for t in session.batch.segments)
        self._closing = False

        self.actions = make_actions(self)
        self._build(effects)
        self._connect()
        self.resize(1600, 980)

    # -- construction ----------------------------------------------------------------------

    def _build(self, effects: Iterable[str] | None) -> None:
        session = self.session
        central = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        self.header = ReadingHeader(session.batch.name, session.reader)
        self.header.open_button.clicked.connect(self.open_other_batch)
        self.header.open_button.setVisible(not self.kiosk or bool(self.allowed_folders))
        outer.addWidget(self.header)

        body = QtWidgets.QHBoxLayout()
        body.setContentsMargins(10, 10, 10, 10)
        body.setSpacing(10)
        self.case_list = CaseListPanel()
        self.case_list.setFixedWidth(280)
        self.case_list.set_cases(session.cases)
        body.addWidget(self.case_list)

        middle = QtWidgets.QVBoxLayout()
        middle.setSpacing(8)
        self.banner = MessageBanner()
        middle.addWidget(self.banner)
        self.views = SliceViewLayout(self.scene)
        middle.addWidget(self.views, 1)
        body.addLayout(middle, 1)

        self.side_panel = QtWidgets.QFrame()
        self.side_panel.setObjectName("sidePanel")
        self.side_panel.setFixedWidth(320)
        side = QtWidgets.QVBoxLayout(self.side_panel)
        side.setContentsMargins(12, 10, 12, 12)
        side.setSpacing(14)
        self.segment_panel = SegmentPanel()
        self.segment_panel.set_segments(self._segments)
        side.addWidget(self.segment_panel)
        self.tools = EditToolsPanel(self.editing, effects)
        side.addWidget(self.tools)
        self.presets = WindowPresetsBar()
        side.addWidget(self.presets)
        side.addStretch(1)
        self.details = CaseDetailsPanel()
        side.addWidget(self.details)
        body.addWidget(self.side_panel)
        outer.addLayout(body, 1)

        a = self.actions
        self.navigation = NavigationBar(
            a["previous"], a["skip"], a["save"], a["save_next"], a["next"]
        )
        outer.addWidget(self.navigation)
        self.setCentralWidget(central)
        register_tool_shortcuts(self, self.tools)
        for preset in PRESETS:
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(preset.shortcut), self)
            shortcut.activated.connect(lambda p=preset: self.apply_window_preset(p.key))

    def _connect(self) -> None:
        a = self.actions
        a["previous"].triggered.connect(self.previous_case)
        a["next"].triggered.connect(self.next_case)
        a["skip"].triggered.connect(lambda: self.skip_case())  # not the "checked" argument
        a["save"].triggered.connect(self.save_case)
        a["save_next"].triggered.connect(self.save_and_next)
        a["undo"].triggered.connect(self.editing.undo)
        a["redo"].triggered.connect(self.editing.redo)
        a["reset_views"].triggered.connect(self.scene.reset_views)
        self.case_list.case_chosen.connect(self.go_to)
        self.segment_panel.segment_selected.connect(self.editing.set_active_index)
        self.segment_panel.visibility_changed.connect(self.editing.set_visible)
        self.presets.preset_chosen.connect(lambda preset: self.apply_window_preset(preset.key))
        self.editing.add_listener(self._on_editing_changed)

    # -- case flow -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the first unfinished case (where the reader stopped last time)."""
        self._refresh_statuses()
        if self.session.count:
            self.go_to(self.session.resume_index())
        else:
            self.views.set_placeholder("This batch has no cases")

    @property
    def current_index(self) -> int:
        """Index of the case on screen (or being opened)."""
        return self.session.current_index

    def go_to(self, index: int) -> None:
        """Open case ``index`` (leaving the current one: its reading time is recorded)."""
        session = self.session
        if not 0 <= index < session.count:
            return
        if index == session.current_index and self.loaded is not None:
            return
        if not self._may_leave():
            self.case_list.set_current(session.current_index)
            return
        self._leave_case()
        session.current_index = index
        case = session.cases[index]
        progress = session.progress.open_case(case.id)
        self._recorded_seconds = progress.seconds
        self.case_list.set_progress(index, case, progress)
        self.case_list.set_current(index)
        self._update_header()
        self.banner.clear()
        self.navigation.set_status(f"Opening {case.name}…")
        if not self.loader.is_ready(case.id):
            self.views.set_placeholder(f"Opening {case.name}…")
        self._update_actions()
        self.loader.request(case)

    def next_case(self) -> None:
        """Open the next case (nothing is saved)."""
        if self.session.has_next():
            self.go_to(self.session.current_index + 1)

    def previous_case(self) -> None:
        """Open the previous case."""
        if self.session.has_previous():
            self.go_to(self.session.current_index - 1)

    def skip_case(self, reason: str | None = None) -> bool:
        """Skip the current case with a reason (asked when not given); go to the next one."""
        case = self.session.current_case
        if case is None:
            return False
        if reason is None:
            dialog = SkipDialog(case.name, self)
            if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted or not dialog.reason():
                return False
            reason = dialog.reason()
        self._record_time()
        progress = self.session.progress.mark_skipped(case.id, reason)
        self.case_list.set_progress(self.session.current_index, case, progress)
        self.editing.mark_saved()  # nothing to keep: the reader decided to skip
        self._refresh_statuses()
        self._advance()
        return True

    def save_case(self) -> bool:
        """Save the current segmentation and mark the case done."""
        case, loaded = self.session.current_case, self.loaded
        if case is None or loaded is None or loaded.case.id != case.id:
            return False
        try:
            outcome = self.saver.save(self.editing, loaded)
        except Exception as exc:  # shown calmly; the segmentation stays on screen, unsaved
            log.exception("saving case %s failed", case.label)
            self.banner.show_message(
                f"{case.name} could not be saved",
                f"{exc}\nYour segmentation is still here; try again, or ask your site admin.",
                [("Try again", self.save_case)],
            )
            return False
        self._record_time()
        progress = self.session.progress.mark_done(
            case.id, outcome.refs[-1] if outcome.refs else None
        )
        for ref in outcome.refs[:-1]:
            progress = self.session.progress.add_result(case.id, ref)
        self.editing.mark_saved()
        self.case_list.set_progress(self.session.current_index, case, progress)
        self._refresh_statuses()
        voxels = sum(outcome.painted_voxels)
        where = f" to {outcome.place}" if outcome.written else " (result files are not written yet)"
        self.navigation.set_status(f"Saved {case.name}{where} · {voxels} voxels segmented")
        return True

    def save_and_next(self) -> None:
        """Save, then open the next case."""
        if self.save_case():
            self._advance()

    def _advance(self) -> None:
        """After a case is finished: the next case, or a calm note at the end of the batch."""
        if self.session.has_next():
            self.go_to(self.session.current_index + 1)
            return
        remaining = self.session.next_unfinished_index(self.session.current_index)
        if remaining is None:
            self.banner.show_message(
                "All cases are finished",
                f"You have finished the {self.session.count} cases of {self.session.batch.name}."
                " Thank you.",
                kind="info",
            )
        else:
            case = self.session.cases[remaining]
            self.banner.show_message(
                "This was the last case",
                f"Case {remaining + 1} ({case.name}) is not finished yet.",
                [(f"Open case {remaining + 1}", lambda: self.go_to(remaining))],
                kind="info",
            )

    def _on_loaded(self, case_id: str, loaded: LoadedCase) -> None:
        case = self.session.current_case
        if case is None or case.id != case_id or self._closing:
            return  # the reader moved on
        started = time.perf_counter()
        image = loaded.image
        node = volume_to_node(self.scene.scene, image.volume, case.name, window=image.window)
        segmentation_node = self.editing.start_case(node, self._segments)
        resumed = self.saver.take_resume(case.id)
        if resumed is not None:
            self._start_from(segmentation_node, *resumed)
        self.scene.show_volume(node)
        self.loaded = loaded
        modality = case.details.get("modality")
        self.presets.set_available(presets_for(modality))
        self.presets.set_checked("auto")
        self.segment_panel.set_segments(self._segments)
        self.views.set_placeholder("")
        self.views.render_all()
        self.last_switch_seconds = time.perf_counter() - started
        log.info("case %s shown in %.3f s (GUI thread)", case.label, self.last_switch_seconds)
        warnings = [p.message for p in loaded.problems if p.severity == Severity.WARNING]
        if warnings:
            self.banner.show_message(
                f"{case.name} opened with warnings", "\n".join(warnings[:4]), kind="info"
            )
        self.navigation.set_status(describe_image(loaded))
        self.details.show_case(loaded)
        self.timer.start()
        self._update_actions()
        if self.session.has_next():
            self.loader.prefetch(self.session.cases[self.session.current_index + 1])
        self.case_shown.emit(self.session.current_index, self.last_switch_seconds)

    def _start_from(self, node, segmentation, where: str) -> None:
        """Show the reader's last result (or the pre-segmentation) as the starting point."""
        by_name = {segment.name: index for index, segment in enumerate(segmentation.segments)}
        order = [by_name.get(segment.name) for segment in self._segments]
        masks = [
            segmentation.mask(i) if i is not None else np.zeros(segmentation.geometry.shape, bool)
            for i in order
        ]
        fill_segments(
            node,
            self.editing.segment_ids,
            Segmentation.from_masks(masks, segmentation.geometry, self._segments),
        )
        self.editing.mark_saved()  # the starting point is the clean state: nothing to save yet
        self.banner.show_message("Starting point", where[:1].upper() + where[1:], kind="info")

    def _on_failed(self, case_id: str, reason: str) -> None:
        case = self.session.current_case
        if case is None or case.id != case_id or self._closing:
            return
        index = self.session.current_index
        progress = self.session.progress.mark_failed(case.id, reason)
        self.case_list.set_progress(index, case, progress)
        self._refresh_statuses()
        self.loaded = None
        self.editing.close_case()
        self.details.show_case(None)
        self.views.set_placeholder("This case could not be opened")
        actions = [("Try again", lambda: self._retry(index))]
        if self.session.has_next():
            actions.insert(0, ("Next case", self.next_case))
        self.banner.show_message(
            f"{case.name} could not be opened",
            f"{reason}\nIt is recorded as “could not be opened”; the batch goes on without it.",
            actions,
        )
        self.navigation.set_status("")
        self._update_actions()

    def _retry(self, index: int) -> None:
        self.session.current_index = -1
        self.go_to(index)

    # -- leaving a case --------------------------------------------------------------------

    def _may_leave(self) -> bool:
        """Ask what to do with unsaved edits; False when the reader stays."""
        if not self.editing.modified or self.session.current_case is None:
            return True
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle(APP_TITLE)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setText(f"Save your segmentation of {self.session.current_case.name}?")
        box.setInformativeText("Unsaved edits are lost when you leave the case.")
        save = box.addButton("Save", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Keep reading", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(save)
        box.exec()
        if box.clickedButton() is save:
            return self.save_case()
        return box.clickedButton() is discard

    def _record_time(self) -> None:
        case = self.session.current_case
        seconds = self.timer.take()
        if case is not None and seconds > 0:
            self.session.progress.add_time(case.id, seconds)
            self._recorded_seconds += seconds

    def _leave_case(self) -> None:
        self._record_time()
        self.timer.stop()
        self.loaded = None

    # -- window/level ----------------------------------------------------------------------

    def apply_window_preset(self, key: str) -> None:
        """Apply window preset ``key`` (``"auto"``, ``"soft-tissue"``, ...)."""
        node = self.scene.volume_node
        if node is None or self.loaded is None:
            return
        preset = next((p for p in PRESETS if p.key == key), None)
        if preset is None or not self.presets.buttons[key].isVisible():
            return
        apply_preset(node.GetDisplayNode(), preset, self.loaded.image.window)
        self.presets.set_checked(key)

    # -- display ---------------------------------------------------------------------------

    def _update_header(self) -> None:
        case = self.session.current_case
        if case is None:
            return
        self.header.set_position(
            self.session.current_index + 1,
            self.session.count,
            self.session.finished_count(),
            case.name,
        )
        self.header.set_reading_time(self._recorded_seconds)

    def _refresh_statuses(self) -> None:
        known = self.session.progress.all()
        for index, case in enumerate(self.session.cases):
            if case.id in known:
                self.case_list.set_progress(index, case, known[case.id])
        self.case_list.set_summary(self.session.progress.counts([c.id for c in self.session.cases]))
        self._update_header()

    def _update_actions(self) -> None:
        has_case = self.session.current_case is not None
        shown = self.loaded is not None
        self.actions["previous"].setEnabled(self.session.has_previous())
        self.actions["next"].setEnabled(self.session.has_next())
        self.actions["skip"].setEnabled(has_case)
        self.actions["save"].setEnabled(shown)
        self.actions["save_next"].setEnabled(shown)
        self._on_editing_changed()

    def _on_editing_changed(self) -> None:
        self.actions["undo"].setEnabled(self.editing.can_undo())
        self.actions["redo"].setEnabled(self.editing.can_redo())
        index = self.editing.active_index
        if index >= 0:
            self.segment_panel.set_current(index)

    def _on_timer_tick(self, seconds: float) -> None:
        if seconds >= TIME_FLUSH_S:
            self._record_time()  # a crash loses at most a minute of reading time
            seconds = 0.0
        self.header.set_reading_time(self._recorded_seconds + seconds, self.timer.paused)

    # -- batches and closing ---------------------------------------------------------------

    def open_other_batch(self) -> None:
        """Let the reader choose another batch (inside the allowed folders); close for it."""
        path = choose_batch(self, self.allowed_folders, kiosk=self.kiosk)
        if path is None:
            return
        self.requested_batch = path
        if not self.close():
            self.requested_batch = None

    def _confirm_quit(self) -> bool:
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle(APP_TITLE)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setText("Quit CaseIterator?")
        box.setInformativeText("Your progress is kept; reading resumes here next time.")
        quit_button = box.addButton("Quit", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep reading", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is quit_button

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self._closing and not self._may_leave():
            event.ignore()
            return
        if (
            not self._closing
            and self.kiosk
            and self.requested_batch is None
            and not self._confirm_quit()
        ):
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Record the reading time, stop the workers, release the scene (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self._leave_case()
        self.timer.shutdown()
        self.loader.close()
        self.editing.shutdown()
        self.scene.close()
