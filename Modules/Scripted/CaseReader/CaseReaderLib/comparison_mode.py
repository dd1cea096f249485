"""Comparison mode of the reading window: the compared segmentations of a case, side by side.

Attached from outside to a :class:`~.reading_window.ReadingWindow` whose batch has a
``[compare]`` table (:class:`~CaseIteratorCoreLib.batch_file.CompareSpec`)::

    mode = ComparisonMode(window, batch.compare)   # after the window is built
    ...
    mode.close()                                   # before the window's scene closes

What it adds:

* under the case list, the :class:`~.comparison_panel.ComparisonPanel` (each segmentation's
  colour, outline or fill, shown or hidden; the metrics of the case on screen); in the side
  panel, "Start your result from" buttons: one per segmentation and the majority vote;
* in the views, one segmentation node per compared segmentation, each in its own colour,
  drawn under the reader's own segmentation (which stays the one the tools edit);
* in the case list, the worst Dice of each case as a badge and a "Worst agreement first" order,
  from a background :class:`~CaseIteratorCoreLib.comparison.ComparisonJob` over the batch.

When a case is shown its segmentations are read and compared off the GUI thread (one worker);
the result comes back through a queued signal and only the MRML part runs on the GUI thread.
Starting from a segmentation copies its voxels into the reader's segmentation as unsaved edits:
the window's normal Save writes the result. :meth:`ComparisonMode.provenance` says what the
result of a case was made from, for the saver (DICOM SEG references, DerivationDescription).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset
from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.batch_file import CompareSpec
from CaseIteratorCoreLib.comparison import CaseComparison, ComparisonJob, compare_segmentations
from CaseIteratorCoreLib.comparison_consensus import MajorityRule, majority_vote
from CaseIteratorCoreLib.comparison_inputs import LoadedSegmentation, load_segmentations
from CaseIteratorCoreLib.errors import OperationCancelled
from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.mrml_segmentation import fill_segments, segmentation_to_node
from CaseIteratorCoreLib.problems import Problem, ProblemCode
from CaseIteratorCoreLib.segmentation import Segmentation
from CaseIteratorCoreLib.tasks import CancelToken

from .comparison_panel import LOW_DICE, ComparisonPanel, SegmentationDisplay
from .style import APP_TITLE

log = logging.getLogger(__name__)

#: Fill opacity of the compared segmentations (the reader's own is 0.45, drawn above them).
COMPARED_FILL_OPACITY = 0.3
#: Orders offered in the case list: key, label.
ORDERS = (("batch", "Batch order"), ("disagreement", "Worst agreement first"))
#: Width of the case list column in comparison mode (the metrics table needs a little room).
CASE_COLUMN_WIDTH = 320
#: Key of the majority vote among the "start from" choices.
MAJORITY = "\0majority"


@dataclass(frozen=True, eq=False)
class CaseSegmentations:
    """One case's comparison and its segmentations on the image grid (from the worker)."""

    case_id: str
    comparison: CaseComparison
    loaded: tuple[LoadedSegmentation, ...]
    #: Their majority vote (made in the worker: ~0.2 s on a full CT), None with fewer than two.
    majority: Segmentation | None = None

    def get(self, name: str) -> LoadedSegmentation | None:
        """The segmentation named ``name`` in the ``[compare]`` table, if it was read."""
        return next((item for item in self.loaded if item.name == name), None)


@dataclass(frozen=True)
class ResultProvenance:
    """What the reader's result of a case was started from (for the saver).

    Attributes
    ----------
    description
        For DICOM SEG DerivationDescription, e.g. ``"Started from AI; compared: mask
        (reference), AI"``.
    seg_headers
        Headers of the compared DICOM SEG instances (empty for labelmap and .seg.nrrd files):
        pass them as ``build_dicom_seg(derived_from_segmentations=...)``.
    """

    description: str
    seg_headers: tuple[Dataset, ...] = ()


def order_by_disagreement(worst: dict[int, float | None], count: int) -> list[int]:
    """Batch indices, worst agreement first.

    Compared cases by their lowest Dice (ties in batch order); then cases that could not be
    compared (``None``); then the cases not compared yet.
    """
    compared = sorted((i for i, d in worst.items() if d is not None), key=lambda i: (worst[i], i))
    failed = sorted(i for i, d in worst.items() if d is None)
    pending = [i for i in range(count) if i not in worst]
    return compared + failed + pending


class _StartFromBar(QtWidgets.QWidget):
    """ "Start your result from": one button per segmentation, and the majority vote."""

    chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("START YOUR RESULT FROM")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        self._grid = QtWidgets.QGridLayout()
        self._grid.setSpacing(6)
        layout.addLayout(self._grid)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}

    def set_choices(self, choices: Sequence[tuple[str, str, str]]) -> None:
        """``(key, label, tooltip)`` per button, three to a row."""
        for button in self.buttons.values():
            self._grid.removeWidget(button)
            button.deleteLater()
        self.buttons = {}
        for number, (key, label, tooltip) in enumerate(choices):
            button = QtWidgets.QPushButton(label)
            button.setToolTip(
                f"{tooltip}. It replaces your segments as unsaved edits: edit it, then Save."
            )
            button.setEnabled(False)
            button.clicked.connect(lambda _checked=False, key=key: self.chosen.emit(key))
            self._grid.addWidget(button, number // 3, number % 3)
            self.buttons[key] = button

    def set_available(self, available: set[str]) -> None:
        """Enable the buttons whose segmentation is there for the case on screen."""
        for key, button in self.buttons.items():
            button.setEnabled(key in available)


class ComparisonMode(QtCore.QObject):
    """Comparison mode attached to a reading window (see the module docstring).

    Parameters
    ----------
    window
        The reading window (its scene, editing, side panel, case list, session, saver and
        banner).
    spec
        The batch's ``[compare]`` table.
    rank_batch
        Compare the whole batch in the background for the case list's badges and order.
    confirm_replace
        Asked ``(case name, what)`` before unsaved edits are replaced; a dialog when None.

    Signals
    -------
    comparison_shown(str)
        The comparison of case ``id`` is on screen (metrics in the panel, nodes in the views).
    ranked(int)
        Case ``index`` of the batch got its worst Dice (or could not be compared).
    ranking_finished()
        The background comparison of the batch ended (done, cancelled or failed).
    started_from(str)
        The reader's segmentation was replaced by segmentation ``name`` (or the majority).
    """

    comparison_shown = QtCore.Signal(str)
    ranked = QtCore.Signal(int)
    ranking_finished = QtCore.Signal()
    started_from = QtCore.Signal(str)
    # Worker -> GUI thread (queued: emitted from worker threads).
    _case_done = QtCore.Signal(int, object)
    _batch_case = QtCore.Signal(object)
    _batch_done = QtCore.Signal(object)

    def __init__(
        self,
        window: Any,
        spec: CompareSpec,
        *,
        rank_batch: bool = True,
        confirm_replace: Callable[[str, str], bool] | None = None,
    ) -> None:
        super().__init__(window)
        self.window = window
        self.spec = spec
        self.session = window.session
        self._confirm = confirm_replace or self._ask_replace
        self._closed = False
        #: The comparison on screen (None while computing or without a case).
        self.current: CaseSegmentations | None = None
        #: Nodes of the compared segmentations in the scene, by name.
        self.nodes: dict[str, Any] = {}
        #: Lowest Dice per batch index (None: not comparable), from the batch job or the case.
        self.worst_dice: dict[int, float | None] = {}
        #: GUI-thread seconds the last comparison took to show (nodes, table, render).
        self.last_show_seconds = 0.0
        self._generation = 0
        self._editing_node: Any = None
        self._provenance: dict[str, ResultProvenance] = {}
        self._cancel = CancelToken()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comparison-case")
        self._future: Future[None] | None = None
        self._order = "batch"
        self._job: ComparisonJob | None = None
        self._rank_batch = rank_batch
        self._resort = QtCore.QTimer(self)
        self._resort.setSingleShot(True)
        self._resort.setInterval(250)  # results arrive in bursts: sort once per burst
        self._resort.timeout.connect(self._apply_order)

        self._build()
        self._case_done.connect(self._on_case_done, QtCore.Qt.ConnectionType.QueuedConnection)
        self._batch_case.connect(self._on_batch_case, QtCore.Qt.ConnectionType.QueuedConnection)
        self._batch_done.connect(self._on_batch_done, QtCore.Qt.ConnectionType.QueuedConnection)
        window.case_shown.connect(self._on_case_shown)
        window.loader.failed.connect(lambda *_: None if self._closed else self._clear())
        window.editing.add_listener(self._on_editing_changed)
        window.installEventFilter(self)
        app = QtCore.QCoreApplication.instance()
        if app is not None:  # the event loop may end with the window, before a queued close
            app.aboutToQuit.connect(self.close)
        window.saver.provenance = self.provenance  # what a saved result was started from
        if window.loaded is not None:  # attached after a case was shown
            self._on_case_shown(window.current_index, 0.0)

    # -- construction ----------------------------------------------------------------------

    def _build(self) -> None:
        window = self.window
        self.section = QtWidgets.QWidget()
        self.section.setObjectName("comparisonSection")
        layout = QtWidgets.QVBoxLayout(self.section)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.setSpacing(4)
        self.panel = ComparisonPanel()
        names = self.spec.names
        displays = {
            name: SegmentationDisplay(color, outline=n > 0)
            for n, (name, color) in enumerate(zip(names, _colors(len(names)), strict=True))
        }
        self.panel.set_segmentations(names, reference=self.spec.reference, displays=displays)
        table = self.panel.table
        if len(names) == 2:
            table.setColumnHidden(1, True)  # "vs": there is only one other segmentation
        header = table.horizontalHeader()
        header.setMinimumSectionSize(34)
        for column in range(1, table.columnCount()):
            header.setSectionResizeMode(column, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.verticalHeader().setDefaultSectionSize(24)
        for name in names:  # room for "Outline" in the narrow column
            self.panel.row(name).outline.setMinimumWidth(64)
        self.panel.color_changed.connect(self._on_color)
        self.panel.outline_changed.connect(self._on_outline)
        self.panel.visibility_changed.connect(self._on_visibility)
        self.panel.segment_activated.connect(self.jump_to_segment)
        layout.addWidget(self.panel)
        self.status = QtWidgets.QLabel("")
        self.status.setObjectName("comparisonStatus")
        self.status.setProperty("role", "muted")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.start_bar = _StartFromBar()
        rule = MajorityRule(len(names))
        choices = [
            (
                name,
                name,
                f"Start from {name}'s segmentation" + (" (the reference)" if n == 0 else ""),
            )
            for n, name in enumerate(names)
        ]
        choices.append(
            (
                MAJORITY,
                "Majority",
                f"Start from the voxels more than half agree on: {rule.describe()}",
            )
        )
        self.start_bar.set_choices(choices)
        self.start_bar.chosen.connect(self._on_start_chosen)
        # The metrics and toggles under the case list (the list scrolls, the side panel is full);
        # starting from a segmentation is editing: with the segments and tools, on the right.
        case_list = window.case_list
        case_list.layout().insertWidget(
            case_list.layout().indexOf(case_list.list) + 1, self.section
        )
        case_list.setFixedWidth(max(case_list.width(), CASE_COLUMN_WIDTH))
        side = window.side_panel.layout()
        side.insertWidget(_stretch_index(side), self.start_bar)
        case_list.set_order_choices(ORDERS)
        case_list.order_chosen.connect(self.set_order)
        self._show_status("")

    # -- the case on screen ----------------------------------------------------------------

    def _on_case_shown(self, index: int, _seconds: float = 0.0) -> None:
        if self._closed:
            return
        loaded: LoadedCase | None = self.window.loaded
        self._clear()
        self._editing_node = self.window.editing.node
        if loaded is None:
            return
        self._generation += 1
        generation = self._generation
        self._cancel.cancel()  # the previous case's reading, if still running
        self._cancel = CancelToken()
        cancel = self._cancel
        if self._future is not None:
            self._future.cancel()
        self._show_status(f"Comparing the segmentations of {loaded.case.name}…")
        self._future = self._executor.submit(self._read_case, generation, loaded, cancel)
        if self._rank_batch and self._job is None:
            self._start_ranking()  # after the first case: it does not delay the first open

    def _read_case(self, generation: int, loaded: LoadedCase, cancel: CancelToken) -> None:
        """Read and compare the case's segmentations (worker thread)."""
        started = time.perf_counter()
        case = loaded.case
        try:
            found, problems = load_segmentations(
                self.session.source,
                case,
                self.spec,
                loaded.image.volume.geometry,
                loaded.image.dicom,
                templates=self.session.batch.segments,
                cancel=cancel,
            )
            comparison = compare_segmentations(
                case, self.spec, found, problems, started=started, cancel=cancel
            )
            majority = _majority(found, self.spec.reference)
        except OperationCancelled:
            return
        except Exception as exc:  # an odd file must not stop the reading
            log.exception("comparison of case %s failed", case.label)
            found, majority = [], None
            problem = Problem(ProblemCode.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}")
            comparison = CaseComparison(case, problems=(problem,))
        if not cancel.cancelled:
            result = CaseSegmentations(case.id, comparison, tuple(found), majority)
            self._case_done.emit(generation, result)

    def _on_case_done(self, generation: int, result: CaseSegmentations) -> None:
        loaded = self.window.loaded
        if (
            self._closed
            or generation != self._generation
            or loaded is None
            or loaded.case.id != result.case_id
        ):
            return  # the reader moved on
        started = time.perf_counter()
        self.current = result
        self.panel.show_comparison(result.comparison)
        self._fit_table()
        self._add_nodes(result)
        available = {item.name for item in result.loaded}
        if result.majority is not None:
            available.add(MAJORITY)
        self.start_bar.set_available(available)
        self._show_status(self._summary(result))
        index = self.window.current_index
        self._rank(index, result.comparison)
        self.window.views.render_all()
        self.last_show_seconds = time.perf_counter() - started
        log.info(
            "comparison of case %s: %.3f s in the worker, %.3f s on the GUI thread",
            loaded.case.label,
            result.comparison.seconds,
            self.last_show_seconds,
        )
        self.comparison_shown.emit(result.case_id)

    def _summary(self, result: CaseSegmentations) -> str:
        comparison = result.comparison
        missing = [n for n in self.spec.names if result.get(n) is None]
        if comparison.worst_dice is None:
            return "" if comparison.problems else "Nothing to compare in this case."
        return f"Not found: {', '.join(missing)}" if missing else ""

    def _fit_table(self) -> None:
        """Show every row without a scroll bar, up to a few rows (the panel stays compact)."""
        table = self.panel.table
        rows = min(table.rowCount(), 6)
        height = table.horizontalHeader().height() + 2 * table.frameWidth() + 4
        height += sum(table.rowHeight(r) for r in range(rows))
        table.setFixedHeight(max(height, 60))

    def _show_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _clear(self) -> None:
        """Forget the case on screen: nodes out of the scene, an empty table."""
        self._generation += 1
        self._cancel.cancel()
        self.current = None
        self._remove_nodes()
        self.panel.show_comparison(None)
        self.start_bar.set_available(set())
        self._show_status("")

    def _on_editing_changed(self) -> None:
        """The window opened another case (a new editing node) or closed it: drop ours."""
        if self._closed:
            return
        node = self.window.editing.node
        if node is not self._editing_node and self.nodes:
            self._remove_nodes()  # before the new case's first render: no stale overlay
            self.current = None
        self._editing_node = node

    # -- nodes in the scene ----------------------------------------------------------------

    def _add_nodes(self, result: CaseSegmentations) -> None:
        self._remove_nodes()
        scene = self.window.scene
        volume = scene.volume_node
        if volume is None:
            return
        # The reference last: it is drawn on top of the others (MRML order).
        for item in sorted(result.loaded, key=lambda x: x.name == self.spec.reference):
            display = self.panel.display(item.name)
            colored = _recolored(item.segmentation, display.color)
            try:
                node = segmentation_to_node(scene.scene, colored, volume, f"Compared: {item.name}")
            except ValueError as exc:  # not on the volume's grid: cannot happen after reading
                log.warning("compared segmentation %s not shown: %s", item.name, exc)
                continue
            node.SetSelectable(False)  # the tools never pick it
            self.nodes[item.name] = node
            self._apply_display(item.name)

    def _apply_display(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        display = self.panel.display(name)
        node_display = node.GetDisplayNode()
        node_display.SetVisibility3D(False)  # no surfaces: CPU stations
        node_display.SetOpacity2DFill(COMPARED_FILL_OPACITY)
        node_display.SetOpacity2DOutline(1.0)
        node_display.SetSliceIntersectionThickness(2)
        node_display.SetVisibility2DFill(not display.outline)
        node_display.SetVisibility2DOutline(True)
        node_display.SetVisibility(display.visible)
        segmentation = node.GetSegmentation()
        rgb = tuple(c / 255.0 for c in display.color)
        for segment_id in segmentation.GetSegmentIDs():
            segmentation.GetSegment(segment_id).SetColor(*rgb)

    def _remove_nodes(self) -> None:
        for node in self.nodes.values():
            self.window.scene.remove_node(node)
        self.nodes = {}

    def _on_color(self, name: str, _color: object) -> None:
        self._apply_display(name)
        self.window.views.render_all()

    def _on_outline(self, name: str, _outline: bool) -> None:
        self._apply_display(name)
        self.window.views.render_all()

    def _on_visibility(self, name: str, _visible: bool) -> None:
        self._apply_display(name)
        self.window.views.render_all()

    def jump_to_segment(self, segment: str) -> None:
        """Put the three views on the middle of ``segment`` (in any compared segmentation)."""
        import numpy as np

        if self.current is None:
            return
        union = None
        for item in self.current.loaded:
            seg = item.segmentation
            for index, candidate in enumerate(seg.segments):
                if candidate.name.casefold() == segment.casefold():
                    mask = seg.mask(index)
                    union = mask if union is None else union | mask
        if union is None or not union.any():
            return
        k, j, i = (float(np.mean(axis)) for axis in np.nonzero(union))
        geometry = self.current.loaded[0].segmentation.geometry
        ras = geometry.ijk_to_ras() @ np.array([i, j, k, 1.0])
        for name, _view in self.window.scene.iter_views():
            slice_node = self.window.scene.slice_logic(name).GetSliceNode()
            slice_node.JumpSliceByOffsetting(*(float(v) for v in ras[:3]))
        self.window.views.render_all()

    # -- starting the reader's result from one of them -------------------------------------

    def _on_start_chosen(self, key: str) -> None:
        if key == MAJORITY:
            self.start_from_majority()
        else:
            self.accept(key)

    def accept(self, name: str) -> bool:
        """Replace the reader's segments with segmentation ``name``'s, as unsaved edits.

        Returns whether it was done (the segmentation is there and the reader agreed to
        replace unsaved edits).
        """
        if self.current is None or (item := self.current.get(name)) is None:
            return False
        what = f"{name}'s segmentation"
        return self._start_from(item.segmentation, name, what)

    def start_from_majority(self) -> bool:
        """Replace the reader's segments with the majority vote of the segmentations."""
        if self.current is None or self.current.majority is None:
            return False
        rule = MajorityRule(len(self.current.loaded))
        return self._start_from(self.current.majority, "majority", f"the {rule.describe()}")

    def _start_from(self, segmentation: Segmentation, key: str, what: str) -> bool:
        window, editing = self.window, self.window.editing
        case = self.session.current_case
        if case is None or editing.node is None or self.current is None:
            return False
        if editing.modified and not self._confirm(case.name, what):
            return False
        node = editing.node
        vtk_segmentation = node.GetSegmentation()
        for segment_id in editing.segment_ids:
            vtk_segmentation.ClearSegment(segment_id)  # segments it lacks end up empty
        load_result = getattr(editing, "load_result", None)
        if load_result is not None:
            load_result(segmentation)  # matches the batch's segments by name, else by code
        else:
            fill_segments(node, editing.segment_ids, segmentation)
        editing.mark_saved()
        editing.undo_stack.reset_clean()  # unsaved: Save writes it, leaving asks first
        self._provenance[case.id] = self._describe(what)
        window.views.render_all()
        window.banner.show_message(
            f"Started from {what}",
            "It replaces your segments as unsaved edits: adjust it with the tools, then Save "
            "(the result notes what it was made from).",
            kind="info",
        )
        self.started_from.emit(key)
        return True

    def _describe(self, what: str) -> ResultProvenance:
        assert self.current is not None
        names = [
            f"{item.name} (reference)" if item.name == self.spec.reference else item.name
            for item in sorted(self.current.loaded, key=lambda x: x.name != self.spec.reference)
        ]
        headers = tuple(item.seg_header for item in self.current.loaded if item.seg_header)
        return ResultProvenance(f"Started from {what}; compared: {', '.join(names)}", headers)

    def provenance(self, case_id: str) -> ResultProvenance | None:
        """What the reader's result of case ``case_id`` was started from; None: their own work.

        Safe from the save worker thread too (one dict lookup of an immutable value).
        """
        return self._provenance.get(case_id)

    def _ask_replace(self, case_name: str, what: str) -> bool:
        box = QtWidgets.QMessageBox(self.window)
        box.setObjectName("replaceQuestion")
        box.setWindowTitle(APP_TITLE)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setText(f"Replace your unsaved edits of {case_name} with {what}?")
        box.setInformativeText("Your edits since the last save are lost.")
        replace_button = box.addButton("Replace", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep my edits", QtWidgets.QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is replace_button

    # -- the batch, worst agreement first --------------------------------------------------

    def _start_ranking(self) -> None:
        session = self.session
        self._job = ComparisonJob(
            session.source,
            self.spec,
            cases=list(session.cases),
            templates=session.batch.segments,
            workers=1,  # beside the prefetcher on a 2-core station
            on_case=self._batch_case.emit,
            on_done=self._batch_done.emit,
        ).start()

    def _on_batch_case(self, result: CaseComparison) -> None:
        if self._closed:
            return
        index = next((n for n, c in enumerate(self.session.cases) if c.id == result.case.id), -1)
        if index >= 0:
            self._rank(index, result)

    def _on_batch_done(self, error: object) -> None:
        if error is not None and not isinstance(error, OperationCancelled):
            log.warning("comparison of the batch stopped: %s", error)
        if not self._closed:
            self.ranking_finished.emit()

    def _rank(self, index: int, result: CaseComparison) -> None:
        worst = result.worst_dice
        self.worst_dice[index] = worst
        if worst is None:
            reason = "; ".join(p.message for p in result.problems) or "nothing to compare"
            self.window.case_list.set_badge(index, "—", f"not compared ({reason})")
        else:
            self.window.case_list.set_badge(
                index, f"Dice {worst:.2f}", f"lowest Dice {worst:.3f}", alert=worst < LOW_DICE
            )
        if self._order == "disagreement":
            self._resort.start()
        self.ranked.emit(index)

    def set_order(self, key: str) -> None:
        """Order the case list: ``"batch"`` or ``"disagreement"`` (worst agreement first)."""
        self._order = key if key in dict(ORDERS) else "batch"
        box = self.window.case_list.order_box
        row = box.findData(self._order)
        if row >= 0 and box.currentIndex() != row:
            box.setCurrentIndex(row)
        self._apply_order()

    def _apply_order(self) -> None:
        if self._closed:
            return
        if self._order == "disagreement":  # Next then goes to the next worst case too
            order = order_by_disagreement(self.worst_dice, self.session.count)
            self.window.set_reading_order(order)
        else:
            self.window.set_reading_order(None)

    # -- closing ---------------------------------------------------------------------------

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if watched is self.window and event.type() == QtCore.QEvent.Type.Close:
            # Whether the window really closes is decided after this filter (unsaved edits).
            QtCore.QTimer.singleShot(0, self._close_if_hidden)
        return False

    def _close_if_hidden(self) -> None:
        if not self.window.isVisible():
            self.close()

    def close(self) -> None:
        """Stop the workers (waited for), take the nodes out of the scene. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._resort.stop()
        self._cancel.cancel()
        if self._job is not None:
            self._job.cancel()
            self._job.wait()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._remove_nodes()
        self.current = None
        with contextlib.suppress(RuntimeError):  # the window may already be deleted
            self.window.removeEventFilter(self)
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                app.aboutToQuit.disconnect(self.close)

    @property
    def busy(self) -> bool:
        """Whether the case worker or the batch comparison is running."""
        running = self._future is not None and not self._future.done()
        return running or (self._job is not None and not self._job.wait(0))


def _majority(found: Sequence[LoadedSegmentation], reference: str) -> Segmentation | None:
    """The majority vote of ``found`` (the reference's segments first), None if not possible."""
    ordered = sorted(found, key=lambda item: item.name != reference)
    if len(ordered) < 2:
        return None
    try:
        return majority_vote(ordered)
    except ValueError:  # not on one grid: cannot happen after reading onto the image grid
        log.exception("majority vote not made")
        return None


def _colors(count: int) -> list[tuple[int, int, int]]:
    from .comparison_panel import DEFAULT_COLORS

    return [DEFAULT_COLORS[n % len(DEFAULT_COLORS)] for n in range(count)]


def _recolored(segmentation: Segmentation, color: tuple[int, int, int]) -> Segmentation:
    """``segmentation`` with every segment in ``color`` (one colour per segmentation)."""
    return segmentation.with_segments([replace(s, color=color) for s in segmentation.segments])


def _stretch_index(layout: QtWidgets.QBoxLayout) -> int:
    """Where the side panel's stretch is (the section goes above it), else the end."""
    for index in range(layout.count()):
        item = layout.itemAt(index)
        if item.spacerItem() is not None:
            return index
    return layout.count()


__all__ = [
    "MAJORITY",
    "CaseSegmentations",
    "ComparisonMode",
    "ResultProvenance",
    "order_by_disagreement",
]
