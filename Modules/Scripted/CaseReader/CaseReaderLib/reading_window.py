"""The reading window: one case at a time, its views and segments, and the way to the next one.

It composes the pieces (header, case list, views, segment panel, tools, navigation bar) and
runs the case flow: open a case (loaded ahead by the core's prefetcher through
:class:`~.case_loader.CaseLoader`), show it, record progress and reading time, save, skip, move
on. A case that cannot be opened is shown calmly in a banner, recorded as failed, and can be
left behind.

Work is never lost: a few seconds after an edit the segmentation is copied (milliseconds, GUI
thread) and written as a draft by a background thread (:mod:`~CaseIteratorCoreLib.draft_store`);
saving copies the same way and builds and writes the result in that thread, so "Save & Next"
moves on at once. After a crash the case opens with its draft as unsaved edits.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.batch_file import PrefetchSpec
from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.draft_store import Draft, DraftError, DraftStore, PaintedLayers
from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.mrml_segmentation import fill_segments
from CaseIteratorCoreLib.mrml_volume import volume_to_node
from CaseIteratorCoreLib.problems import Severity
from CaseIteratorCoreLib.segmentation import Segment, Segmentation

from .batch_picker import choose_batch
from .case_details_panel import CaseDetailsPanel
from .case_list_panel import CaseListPanel
from .case_loader import CaseLoader
from .disk_worker import DiskWorker, Finished
from .edit_tools_panel import EditToolsPanel, register_tool_shortcuts
from .message_banner import MessageBanner
from .navigation_bar import NavigationBar
from .qt_binding_guard import protect_none_refcount
from .reading_actions import make_actions
from .reading_header import ReadingHeader
from .reading_scene import ReadingScene
from .reading_session import ReadingSession
from .reading_timer import ReadingTimer
from .result_saving import ResultSaver, SaveOutcome, StartingPoint, snapshot_layers
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
#: A draft is written this long after the first edit not yet in a draft (seconds): with the
#: write itself, at most ~5 s of editing can be lost.
AUTOSAVE_S = 3.0


def freeze_startup_objects() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach.

    The Slicer core, VTK, Qt and trame-slicer leave hundreds of thousands of long-lived Python
    objects; a full collection walks them all (~160 ms at 512x512x300 here) while holding the
    GIL, on whichever thread triggers it: a prefetch worker's allocation froze the window that
    long. Called once the window is built and before any case is loaded (no case data is
    frozen), it makes later full collections take about 1 ms.
    """
    gc.collect()
    gc.freeze()


def clock(seconds: float) -> str:
    """``HH:MM`` local time (with the date when it is not today)."""
    stamp = time.localtime(seconds)
    if time.strftime("%Y-%m-%d", stamp) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", stamp)
    return time.strftime("%Y-%m-%d %H:%M", stamp)


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
    prefetch
        How many cases to load ahead and the memory cap (site settings); the batch's
        ``[prefetch]`` when None.
    drafts
        Where drafts are kept; the reader's drafts of this batch in the data folder when None.
    autosave_s
        Seconds from an edit to its draft.

    Signals
    -------
    case_shown(int, float)
        Case ``index`` is on screen; GUI-thread seconds the switch took (wrap, show, render).
    draft_written(str)
        A draft of case ``id`` is on disk.
    case_saved(str, bool)
        A save of case ``id`` finished: written (True) or failed (False).
    """

    case_shown = QtCore.Signal(int, float)
    draft_written = QtCore.Signal(str)
    case_saved = QtCore.Signal(str, bool)

    def __init__(
        self,
        session: ReadingSession,
        scene: ReadingScene | None = None,
        *,
        effects: Iterable[str] | None = None,
        kiosk: bool = False,
        allowed_folders: Sequence[Path] = (),
        prefetch: PrefetchSpec | None = None,
        drafts: DraftStore | None = None,
        autosave_s: float = AUTOSAVE_S,
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
        self.saver.arrange = self._ordered  # starting points ordered in the worker
        self.drafts = drafts or DraftStore(session.batch.key, session.reader)
        #: Drafts (and saves) are written here, one at a time, off the GUI thread.
        self.disk = DiskWorker(self)
        self.disk.submit(self.saver.warm_up)  # first save's one-time parsing, while we open
        self.loader = CaseLoader(
            session.source,
            session.cases,
            prefetch or session.batch.prefetch,
            self,
            prepare=self._prepare_case,
        )
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.timer = ReadingTimer(self)
        self.timer.ticked.connect(self._on_timer_tick)
        self.loaded: LoadedCase | None = None
        self.last_switch_seconds = 0.0
        #: GUI-thread seconds the last draft's copy took (the write runs in the background).
        self.last_draft_copy_seconds = 0.0
        self._recorded_seconds = 0.0
        self._segments = tuple(Segment.from_template(t) for t in session.batch.segments)
        self._closing = False
        # Drafts found by the loader's worker, taken when their case is shown.
        self._found: dict[str, tuple[Segmentation | None, Draft | None, tuple[str, str]]] = {}
        self._found_lock = threading.Lock()
        self._starting_point = ""  # where the current case's starting segmentation came from
        self._draft_case: str | None = None  # the case whose draft is (being) written
        self._saving: dict[str, int] = {}  # saves in flight: case id -> attempts
        self._autosave = QtCore.QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(int(autosave_s * 1000))
        self._autosave.timeout.connect(self._autosave_now)

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
        self.header.browser_button.clicked.connect(self.open_dicom_browser)
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
        self.segment_panel.bind(self.editing)  # add, rename, recolour, lock: on the node
        self.tools = EditToolsPanel(self.editing, effects)
        side.addWidget(self.tools)
        self.presets = WindowPresetsBar()
        side.addWidget(self.presets)
        view_row = QtWidgets.QHBoxLayout()
        view_row.setSpacing(4)
        for key in ("reset_views", "view_3d"):
            button = QtWidgets.QToolButton()
            button.setObjectName("presetButton")
            button.setDefaultAction(self.actions[key])
            button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(
                QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed
            )
            view_row.addWidget(button)
        side.addLayout(view_row)
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
        a["view_3d"].toggled.connect(self.show_3d_view)
        self.case_list.case_chosen.connect(self.go_to)
        self.loader.state_changed.connect(
            lambda index, status: self.case_list.set_prefetch_state(
                index, status.state.value, status.reason
            )
        )
        self.segment_panel.segment_selected.connect(self.editing.set_active_index)
        self.segment_panel.visibility_changed.connect(self.editing.set_visible)
        self.presets.preset_chosen.connect(lambda preset: self.apply_window_preset(preset.key))
        self.editing.add_listener(self._on_editing_changed)

    # -- case flow -------------------------------------------------------------------------

    def start(self, *, offer_recovery: bool = False) -> None:
        """Open the first unfinished case (where the reader stopped last time).

        With ``offer_recovery``, unsaved edits left by a crash are offered first: the reader
        resumes the case they belong to (its draft appears as unsaved edits) or discards them.
        """
        self._refresh_statuses()
        if not self.session.count:
            self.views.set_placeholder("This batch has no cases")
            return
        index = self.offer_recovery() if offer_recovery else None
        self.go_to(self.session.resume_index() if index is None else index)

    def offer_recovery(self) -> int | None:
        """Ask whether to resume the newest draft; its case index, or None (drafts discarded)."""
        by_id = {case.id: n for n, case in enumerate(self.session.cases)}
        found = [info for info in self.drafts.drafts() if info.case_id in by_id]
        if not found:
            return None
        newest = found[0]
        name = newest.case_name or self.session.cases[by_id[newest.case_id]].name
        box = QtWidgets.QMessageBox(self)
        box.setObjectName("recoveryQuestion")
        box.setWindowTitle(APP_TITLE)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setText(f"Recover your unsaved edits of {name}?")
        others = f" Edits of {len(found) - 1} other case(s) are kept too." if len(found) > 1 else ""
        box.setInformativeText(
            "CaseIterator was closed before you saved them (last kept at "
            f"{clock(newest.saved_at)}). Recover opens the case with your edits, not yet saved."
            f"{others}"
        )
        recover = box.addButton("Recover", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Discard edits", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(recover)
        box.exec()
        if box.clickedButton() is recover:
            return by_id[newest.case_id]
        for info in found:
            self.drafts.discard(info.case_id)
        return None

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
        if not self.loader.is_ready(index):
            self.views.set_placeholder(f"Opening {case.name}…")
        self._update_actions()
        self.loader.request(index)

    def next_case(self) -> None:
        """Open the next case (nothing is saved)."""
        following = self.session.neighbour(1)
        if following is not None:
            self.go_to(following)

    def previous_case(self) -> None:
        """Open the previous case."""
        before = self.session.neighbour(-1)
        if before is not None:
            self.go_to(before)

    def set_reading_order(self, order: Sequence[int] | None) -> None:
        """Go through the cases in ``order`` (batch indices; None: batch order).

        The case list shows that order, Next / Previous and Save & Next follow it, and the
        cases loaded ahead are its next ones.
        """
        order = list(order) if order is not None else None
        self.session.order = order
        self.case_list.set_order(order)
        self.loader.set_order(order)
        self._update_actions()

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
        self._drop_edits(case)  # nothing to keep: the reader decided to skip
        self._refresh_statuses()
        self._advance()
        return True

    def save_case(self) -> bool:
        """Save the current segmentation; the case is marked done once the result is written.

        The segments are copied here (milliseconds); building and writing the result happen in
        the background, so the reader can go on at once. A failure shows a banner naming the
        case with "Try again" (the edits stay safe in a draft meanwhile). Returns whether the
        save was started.
        """
        case, loaded = self.session.current_case, self.loaded
        if case is None or loaded is None or loaded.case.id != case.id:
            return False
        try:
            layers = snapshot_layers(self.editing, loaded.image.volume.geometry)
        except ValueError as exc:  # a segment off the image grid: cannot happen with our tools
            self.banner.show_message(f"{case.name} could not be saved", str(exc))
            return False
        self._record_time()
        self._autosave.stop()
        draft = Draft(case.id, layers, time.time(), case.name, self._starting_point)
        self.editing.mark_saved()
        self._draft_case = None
        self._start_save(self.session.current_index, case, loaded, layers, draft)
        return True

    def _start_save(
        self, index: int, case: Case, loaded: LoadedCase, layers: PaintedLayers, draft: Draft
    ) -> None:
        self._saving[case.id] = self._saving.get(case.id, 0) + 1
        self.navigation.set_status(f"Saving {case.name}…")
        drafts, saver = self.drafts, self.saver

        def write() -> SaveOutcome:  # the disk thread
            try:  # the edits are safe on disk while the result is built and written
                drafts.save(draft)
            except OSError:
                log.exception("draft of case %s not written before saving", case.label)
            outcome = saver.save(layers, loaded)
            drafts.discard(case.id)
            return outcome

        self.disk.submit(
            write,
            lambda done: self._on_saved(done, index, case, loaded, layers, draft),
            key=case.id,
        )

    def _on_saved(
        self,
        done: Finished,
        index: int,
        case: Case,
        loaded: LoadedCase,
        layers: PaintedLayers,
        draft: Draft,
    ) -> None:
        self._saving.pop(case.id, None)
        if done.error is not None:
            exc = done.error
            if self.session.current_case is case and self.loaded is loaded and not self._closing:
                self.editing.undo_stack.reset_clean()  # not saved: leaving asks again
            if not self._closing:
                self.banner.show_message(
                    f"{case.name} could not be saved",
                    f"{exc}\nYour segmentation is kept as a draft on this computer; try again, "
                    "or ask your site admin.",
                    [("Try again", lambda: self._start_save(index, case, loaded, layers, draft))],
                )
                self.navigation.set_status("")
            self.case_saved.emit(case.id, False)
            return
        outcome: SaveOutcome = done.result
        progress = self.session.progress.mark_done(
            case.id, outcome.refs[-1] if outcome.refs else None
        )
        for ref in outcome.refs[:-1]:
            progress = self.session.progress.add_result(case.id, ref)
        if not self._closing:
            self.case_list.set_progress(index, case, progress)
            self._refresh_statuses()
            voxels = sum(outcome.painted_voxels)
            where = (
                f" to {outcome.place}" if outcome.written else " (result files are not written yet)"
            )
            self.navigation.set_status(f"Saved {case.name}{where} · {voxels} voxels segmented")
        self.case_saved.emit(case.id, True)

    def set_autosave_delay(self, seconds: float) -> None:
        """Seconds from an edit to its draft (site settings, tests)."""
        self._autosave.setInterval(int(seconds * 1000))

    def wait_for_saves(self) -> None:
        """Block until every save and draft in flight is written and its outcome shown."""
        self.disk.wait()

    @property
    def saving(self) -> bool:
        """Whether a save is in flight."""
        return bool(self._saving)

    def save_and_next(self) -> None:
        """Save, then open the next case (the save finishes in the background)."""
        if self.save_case():
            self._advance()

    def _advance(self) -> None:
        """After a case is finished: the next case, or a calm note at the end of the batch."""
        following = self.session.neighbour(1)
        if following is not None:
            self.go_to(following)
            return
        remaining = self.session.next_unfinished_index(
            self.session.current_index, finishing=set(self._saving)
        )
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
        with self._found_lock:
            ordered, draft, (title, note) = self._found.pop(case.id, (None, None, ("", "")))
        self._starting_point = resumed.description if resumed is not None else ""
        self._draft_case = None
        if draft is not None and ordered is not None:
            self._recover(segmentation_node, ordered, draft)
        elif resumed is not None:
            self._start_from(segmentation_node, resumed)
        if note:
            self.banner.show_message(title, note, kind="info")
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
        self.case_shown.emit(self.session.current_index, self.last_switch_seconds)

    def _prepare_case(self, loaded: LoadedCase) -> None:
        """Find the case's starting point and draft (the loader's worker thread).

        A draft older than the reader's newest save of the case is dropped (the save holds
        later work); a draft painted on another grid is set aside with a note for the banner.
        """
        case = loaded.case
        # A save, draft or removal still on its way for this case lands first: the lookup
        # then finds the newest result (a Save & Next, then Previous at once). Other cases'
        # writes are not waited for: the next case opens while the last one is saved.
        self.disk.wait_for(case.id)
        self.saver.prepare_resume(loaded)
        geometry = loaded.image.volume.geometry
        note = ""
        title = "Unsaved edits set aside"
        draft: Draft | None = None
        try:
            draft = self.drafts.load(case.id, geometry)
        except DraftError as exc:
            log.warning("draft of case %s refused: %s", case.label, exc)
            kept = self.drafts.set_aside(case.id)
            note = f"{exc}." + (f" It is kept as {kept.name} for your site admin." if kept else "")
        ordered: Segmentation | None = None
        starting = self.saver.peek_resume(case.id)
        saved_at = starting.saved_at if starting is not None else None
        if draft is not None and saved_at is not None and saved_at > draft.saved_at:
            log.info("draft of case %s is older than the reader's save: dropped", case.label)
            self.drafts.discard(case.id)
            title = "Older unsaved edits dropped"
            note = (
                f"Your unsaved edits of {clock(draft.saved_at)} were older than your later "
                "save; the save is shown."
            )
            draft = None
        ordered = self._ordered(draft.layers.to_segmentation()) if draft is not None else None
        with self._found_lock:
            self._found[case.id] = (ordered, draft, (title, note))

    def _ordered(self, segmentation: Segmentation) -> Segmentation:
        """``segmentation`` with the batch's segments first, in template order (by name)."""
        if hasattr(self.editing, "load_result"):
            return segmentation  # the editor matches segments itself and keeps added ones
        by_name = {segment.name: index for index, segment in enumerate(segmentation.segments)}
        order = [by_name.get(segment.name) for segment in self._segments]
        masks = [
            segmentation.mask(i) if i is not None else np.zeros(segmentation.geometry.shape, bool)
            for i in order
        ]
        return Segmentation.from_masks(masks, segmentation.geometry, self._segments)

    def _fill(self, node, segmentation: Segmentation) -> None:
        load_result = getattr(self.editing, "load_result", None)
        if load_result is not None:
            load_result(segmentation)
        else:
            fill_segments(node, self.editing.segment_ids, segmentation)

    def _start_from(self, node, starting: StartingPoint) -> None:
        """Show the reader's last result (or the pre-segmentation) as the starting point."""
        self._fill(node, starting.segmentation)
        self.editing.mark_saved()  # the starting point is the clean state: nothing to save yet
        where = starting.description
        self.banner.show_message("Starting point", where[:1].upper() + where[1:], kind="info")

    def _recover(self, node, segmentation: Segmentation, draft: Draft) -> None:
        """Put a draft on screen as unsaved edits (Save is meaningful, leaving asks)."""
        self._fill(node, segmentation)
        self.editing.mark_saved()
        self.editing.undo_stack.reset_clean()  # unsaved: they are not in any result yet
        self._starting_point = draft.starting_point
        self._draft_case = draft.case_id
        since = f" (the case started {draft.starting_point})" if draft.starting_point else ""
        self.banner.show_message(
            f"Recovered your unsaved edits from {clock(draft.saved_at)}",
            f"They are not saved yet{since}: Save keeps them, Undo cannot take them back.",
            kind="info",
        )

    # -- drafts ----------------------------------------------------------------------------

    def _note_edit(self) -> None:
        """After any change in the editor: a draft follows within ``autosave_s``."""
        case = self.session.current_case
        if self._closing or self.loaded is None or case is None:
            return
        if (self.editing.modified or self._draft_case == case.id) and not self._autosave.isActive():
            self._autosave.start()  # not restarted by later edits: at most autosave_s behind

    def _autosave_now(self) -> None:
        """Write the current case's draft (or remove it when the edits were undone)."""
        case, loaded = self.session.current_case, self.loaded
        if case is None or loaded is None or loaded.case.id != case.id or self._closing:
            return
        if self.editing.modified:
            self._write_draft(case, loaded)
        elif self._draft_case == case.id:
            self._draft_case = None
            self.disk.submit(lambda: self.drafts.discard(case.id), key=case.id)

    def _write_draft(self, case: Case, loaded: LoadedCase) -> None:
        started = time.perf_counter()
        try:
            layers = snapshot_layers(self.editing, loaded.image.volume.geometry)
        except ValueError:
            log.exception("draft of case %s not taken", case.label)
            return
        self.last_draft_copy_seconds = time.perf_counter() - started
        draft = Draft(case.id, layers, time.time(), case.name, self._starting_point)
        self._draft_case = case.id
        self.disk.submit(lambda: self.drafts.save(draft), self._on_draft_written, key=case.id)

    def _on_draft_written(self, done: Finished) -> None:
        if done.error is not None:
            if not self._closing:
                self.banner.show_message(
                    "Your edits cannot be kept safe on this computer",
                    f"{done.error}\nSave your segmentation now, or ask your site admin.",
                    [("Save", self.save_case)],
                )
            return
        path: Path = done.result
        self.draft_written.emit(path.stem)

    def _drop_edits(self, case: Case) -> None:
        """The reader let the edits go (Discard, Skip): no draft keeps them."""
        self._autosave.stop()
        self.editing.mark_saved()
        self._draft_case = None
        self.disk.submit(lambda: self.drafts.discard(case.id), key=case.id)

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
        self.loader.prefetcher.retry(index)
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
        if box.clickedButton() is discard:
            self._drop_edits(self.session.current_case)
            return True
        return False

    def _record_time(self) -> None:
        case = self.session.current_case
        seconds = self.timer.take()
        if case is not None and seconds > 0:
            self.session.progress.add_time(case.id, seconds)
            self._recorded_seconds += seconds

    def _leave_case(self) -> None:
        self._autosave.stop()
        case, loaded = self.session.current_case, self.loaded
        if case is not None and loaded is not None and self.editing.modified:
            self._write_draft(case, loaded)  # e.g. the window closes without asking
        self._record_time()
        self.timer.stop()
        self.loaded = None

    def show_3d_view(self, visible: bool) -> None:
        """Show or hide the 3D view of the segments (off at start: costly without a GPU)."""
        # Surfaces first: the first render of the 3D view then fits its camera to them.
        self.editing.set_surfaces_visible(visible)
        self.views.set_3d_visible(visible)

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
        self._note_edit()
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

    def open_dicom_browser(self) -> None:
        """Find studies in the DICOM browser; a batch made there opens in place of this one."""
        from .dicom_browser import DicomBrowserDialog  # only when asked: it is not small

        dialog = DicomBrowserDialog(
            allowed_folders=self.allowed_folders,
            kiosk=self.kiosk,
            current_batch=self.session.batch.path,
            parent=self,
        )
        try:
            dialog.exec()
            path = dialog.created_batch  # read after exec: closing here from its signal
        finally:  # would run while the dialog is still open
            dialog.deleteLater()
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
        """Record the reading time, finish the writes, stop the workers, release the scene.

        Idempotent. A save in flight is waited for (and the case marked done).
        """
        if self._closing:
            return
        self._leave_case()  # writes a draft of unsaved edits
        self._closing = True
        self.timer.shutdown()
        self.disk.close()  # waits for saves and drafts in flight: nothing half-done is lost
        self.loader.close()
        self.editing.shutdown()
        self.scene.close()
