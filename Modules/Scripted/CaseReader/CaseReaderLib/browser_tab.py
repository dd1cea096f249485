"""One tab of the DICOM browser: the local database or one DICOMweb server.

Search fields on top; patients on the left (choosing one narrows the studies); studies and
the series of the selected studies, with thumbnails, on the right. Every search, listing and
thumbnail runs in the browser's :class:`~.browser_tasks.TaskRunner`; a failure shows in the
tab's banner, naming the server or database and what to check, and the tab stays usable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.batch_from_selection import SelectedItem
from CaseIteratorCoreLib.dicom_database import DicomDatabaseError
from CaseIteratorCoreLib.dicom_search import (
    DEFAULT_PAGE_SIZE,
    DicomSearch,
    DicomWebSearch,
    Page,
    SearchFilterError,
    SearchFilters,
    SeriesRow,
    StudyRow,
    patients_of,
)
from CaseIteratorCoreLib.dicomweb_connection import ServerAuthError, ServerError
from CaseIteratorCoreLib.errors import CaseIteratorError, OperationCancelled
from CaseIteratorCoreLib.series_thumbnail import series_thumbnail

from .browser_search_bar import SearchBar
from .browser_tables import (
    ALL_PATIENTS,
    PatientsTable,
    SeriesTable,
    StudiesTable,
    display_date,
    display_name,
    placeholder_icon,
    thumbnail_icon,
)
from .browser_tasks import TaskRunner
from .message_banner import MessageBanner

log = logging.getLogger(__name__)


def _section(text: str) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text.upper())
    label.setProperty("role", "sectionTitle")
    return label


def problem_text(search: DicomSearch, exc: BaseException) -> tuple[str, str]:
    """A calm title and explanation for a failed search (never a traceback)."""
    title, text = _problem_text(search, exc)
    return title, text[:1].upper() + text[1:]


def _problem_text(search: DicomSearch, exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, SearchFilterError):
        return "Check the search fields", str(exc)
    if isinstance(exc, ServerAuthError):
        return f"{search.name} refused the search", str(exc)
    if isinstance(exc, ServerError):
        return f"{search.name} cannot be searched", str(exc)
    if isinstance(exc, DicomDatabaseError):
        return "The local DICOM database cannot be read", str(exc)
    if isinstance(exc, CaseIteratorError):
        return f"Searching {search.name} failed", str(exc)
    log.error("search of %s failed", search.describe(), exc_info=exc)
    return f"Searching {search.name} failed", f"{type(exc).__name__}: {exc}"


class BrowserTab(QtWidgets.QWidget):
    """The search and tables of one place images live.

    Parameters
    ----------
    search
        What this tab searches.
    runner
        The browser's background runner.
    page_size
        Studies per page ("Show more" asks for the next page).

    Signals
    -------
    selection_changed()
        The selected studies or series changed.
    searched()
        A search (or a further page) was shown.
    """

    selection_changed = QtCore.Signal()
    searched = QtCore.Signal()

    def __init__(
        self,
        search: DicomSearch,
        runner: TaskRunner,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.search = search
        self.runner = runner
        self.page_size = page_size
        self._key = f"tab{id(self)}"
        self._filters = SearchFilters()
        self._studies: list[StudyRow] = []
        self._next_offset = 0
        self._has_more = False
        self._series: dict[str, list[SeriesRow]] = {}
        self._thumbnails: dict[str, object] = {}
        self.searched_once = False
        self._build()
        if isinstance(search, DicomWebSearch):
            self.count_label.setText("Type what you are looking for and press Search")

    # -- construction ----------------------------------------------------------------------

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 12, 0, 0)
        layout.setSpacing(10)
        self.top = QtWidgets.QVBoxLayout()  # the local tab adds its import bar here
        self.top.setSpacing(10)
        layout.addLayout(self.top)
        self.banner = MessageBanner()
        layout.addWidget(self.banner)
        self.search_bar = SearchBar()
        self.search_bar.search_requested.connect(self.run_search)
        layout.addWidget(self.search_bar)

        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(4)
        left_layout.addWidget(_section("Patients"))
        self.patients = PatientsTable()
        self.patients.itemSelectionChanged.connect(self._patient_chosen)
        left_layout.addWidget(self.patients)
        split.addWidget(left)

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.setChildrenCollapsible(False)
        studies_box = QtWidgets.QWidget()
        studies_layout = QtWidgets.QVBoxLayout(studies_box)
        studies_layout.setContentsMargins(0, 0, 0, 0)
        studies_layout.setSpacing(4)
        heading = QtWidgets.QHBoxLayout()
        heading.addWidget(_section("Studies"))
        heading.addStretch(1)
        self.count_label = QtWidgets.QLabel("")
        self.count_label.setProperty("role", "muted")
        heading.addWidget(self.count_label)
        self.more_button = QtWidgets.QPushButton("Show more")
        self.more_button.setToolTip("List the next studies that match")
        self.more_button.clicked.connect(self.load_more)
        self.more_button.hide()
        heading.addWidget(self.more_button)
        studies_layout.addLayout(heading)
        self.studies = StudiesTable()
        self.studies.itemSelectionChanged.connect(self._studies_chosen)
        studies_layout.addWidget(self.studies)
        right.addWidget(studies_box)

        series_box = QtWidgets.QWidget()
        series_layout = QtWidgets.QVBoxLayout(series_box)
        series_layout.setContentsMargins(0, 0, 0, 0)
        series_layout.setSpacing(4)
        series_heading = QtWidgets.QHBoxLayout()
        series_heading.addWidget(_section("Series"))
        series_heading.addStretch(1)
        self.series_hint = QtWidgets.QLabel("Select a study to see its series")
        self.series_hint.setProperty("role", "muted")
        series_heading.addWidget(self.series_hint)
        series_layout.addLayout(series_heading)
        self.series = SeriesTable()
        self.series.itemSelectionChanged.connect(self.selection_changed)
        series_layout.addWidget(self.series)
        right.addWidget(series_box)
        right.setSizes([320, 360])
        split.addWidget(right)
        split.setSizes([280, 900])
        layout.addWidget(split, 1)

    # -- searching -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a search or series listing is under way."""
        return self.runner.busy(f"{self._key}:search") or self.runner.busy(f"{self._key}:series")

    def run_search(self) -> None:
        """Search with the fields as typed (off the GUI thread); the first page replaces all."""
        try:
            filters = self.search_bar.filters()
        except SearchFilterError as exc:
            self._show_problem(exc)
            return
        self._filters = filters
        self.banner.clear()
        self.count_label.setText("Searching…")
        self.search_bar.search_button.setEnabled(False)
        search, size = self.search, self.page_size
        self.runner.start(
            f"{self._key}:search",
            lambda cancel: search.search_studies(filters, 0, size, cancel),
            lambda page: self._show_page(page, replace=True),
            self._search_failed,
        )

    def load_more(self) -> None:
        """Add the next page of studies."""
        filters, offset, search, size = (
            self._filters,
            self._next_offset,
            self.search,
            self.page_size,
        )
        self.more_button.setEnabled(False)
        self.count_label.setText("Searching…")
        self.runner.start(
            f"{self._key}:search",
            lambda cancel: search.search_studies(filters, offset, size, cancel),
            lambda page: self._show_page(page, replace=False),
            self._search_failed,
        )

    def _search_failed(self, exc: BaseException) -> None:
        self.search_bar.search_button.setEnabled(True)
        self.more_button.setEnabled(True)
        self.count_label.setText("")
        if not isinstance(exc, OperationCancelled):
            self._show_problem(exc)

    def _show_problem(self, exc: BaseException) -> None:
        title, text = problem_text(self.search, exc)
        actions = [] if isinstance(exc, SearchFilterError) else [("Try again", self.run_search)]
        self.banner.show_message(title, text, actions)

    def _show_page(self, page: Page[StudyRow], *, replace: bool) -> None:
        self.searched_once = True
        self.search_bar.search_button.setEnabled(True)
        self.more_button.setEnabled(True)
        known = set() if replace else {s.study_uid for s in self._studies}
        new = [s for s in page.items if s.study_uid not in known]
        self._studies = new if replace else self._studies + new
        self._next_offset, self._has_more = page.next_offset, page.has_more
        if replace:
            self._series.clear()
        self.patients.show_patients(patients_of(self._studies), len(self._studies))
        self._show_studies(self._studies)
        self.more_button.setVisible(page.has_more)
        count = len(self._studies)
        noun = "study" if count == 1 else "studies"
        self.count_label.setText(
            f"{count} {noun}" + (" shown, more match" if page.has_more else "")
            if count
            else "No studies match"
        )
        self.searched.emit()

    def _show_studies(self, studies: Sequence[StudyRow]) -> None:
        self.studies.show_studies(studies)
        self.series.show_series([], {})
        self.series_hint.setText("Select a study to see its series" if studies else "")
        self.selection_changed.emit()

    def _patient_chosen(self) -> None:
        chosen = self.patients.selected_records()
        patient = chosen[0] if chosen else ALL_PATIENTS
        if patient == ALL_PATIENTS:
            self._show_studies(self._studies)
            return
        self._show_studies(
            [
                s
                for s in self._studies
                if (s.patient_id, s.patient_name) == (patient.patient_id, patient.patient_name)
            ]
        )
        if self.studies.rowCount() == 1:
            self.studies.selectRow(0)

    # -- series and thumbnails -------------------------------------------------------------

    def _studies_chosen(self) -> None:
        chosen: list[StudyRow] = self.studies.selected_records()
        self.selection_changed.emit()
        if not chosen:
            self.series.show_series([], {})
            self.series_hint.setText("Select a study to see its series")
            return
        missing = [s.study_uid for s in chosen if s.study_uid not in self._series]
        if not missing:
            self._show_series(chosen)
            return
        self.series_hint.setText("Listing series…")
        search = self.search

        def list_series(cancel) -> dict[str, list[SeriesRow]]:
            return {uid: search.search_series(uid, cancel=cancel) for uid in missing}

        self.runner.start(
            f"{self._key}:series",
            list_series,
            lambda found: self._series_listed(found, chosen),
            self._series_failed,
        )

    def _series_listed(self, found: dict[str, list[SeriesRow]], chosen: list[StudyRow]) -> None:
        self._series.update(found)
        if self.studies.selected_records() == chosen:
            self._show_series(chosen)

    def _series_failed(self, exc: BaseException) -> None:
        self.series_hint.setText("")
        if not isinstance(exc, OperationCancelled):
            self._show_problem(exc)

    def _show_series(self, chosen: list[StudyRow]) -> None:
        rows = [row for study in chosen for row in self._series.get(study.study_uid, [])]
        self.series.show_series(rows, {s.study_uid: s for s in chosen})
        count = len(rows)
        self.series_hint.setText(
            f"{count} series · select series to read only those"
            if count
            else "This study has no series here"
        )
        for row in rows:
            self._request_thumbnail(row)
        self.selection_changed.emit()

    def _request_thumbnail(self, row: SeriesRow) -> None:
        uid = row.series_uid
        if uid in self._thumbnails:
            icon, tip = self._thumbnails[uid]  # type: ignore[misc]
            self.series.set_thumbnail(uid, icon, tip)
            return
        search = self.search

        def done(pixels) -> None:
            self._thumbnails[uid] = (thumbnail_icon(pixels), "")
            self.series.set_thumbnail(uid, *self._thumbnails[uid])  # type: ignore[misc]

        def failed(exc: BaseException) -> None:
            if isinstance(exc, OperationCancelled):
                return
            # A missing preview is not worth a banner: the tile says it in its tooltip.
            tip = f"No preview: {exc}"
            self._thumbnails[uid] = (placeholder_icon(), tip)
            self.series.set_thumbnail(uid, *self._thumbnails[uid])  # type: ignore[misc]

        self.runner.start(
            f"{self._key}:thumb:{uid}",
            lambda cancel: series_thumbnail(search, row, cancel=cancel),
            done,
            failed,
            priority=-1,  # after searches and listings
        )

    @property
    def thumbnails_shown(self) -> int:
        """How many listed series show their thumbnail (tests)."""
        shown = {uid for uid, (_, tip) in self._thumbnails.items() if not tip}  # type: ignore[misc]
        return sum(1 for r in self.series.records() if r.series_uid in shown)

    # -- selection -------------------------------------------------------------------------

    def selected_items(self) -> list[SelectedItem]:
        """The selected series; when none, the selected studies (each with all its series)."""
        series = self.series.selected_records()
        if series:
            return [SelectedItem(s.study_uid, s.series_uid) for s in series]
        return [SelectedItem(s.study_uid) for s in self.studies.selected_records()]

    def selection_summary(self) -> str:
        """``2 series`` / ``1 study`` / ``""`` for the batch buttons."""
        series = len(self.series.selected_records())
        if series:
            return f"{series} series"
        studies = len(self.studies.selected_records())
        if studies:
            return f"{studies} {'study' if studies == 1 else 'studies'}"
        return ""

    def suggested_name(self) -> str:
        """A batch name from the selection: patient and date, or how many studies."""
        studies: list[StudyRow] = self.studies.selected_records()
        series: list[SeriesRow] = self.series.selected_records()
        uids = {s.study_uid for s in series} or {s.study_uid for s in studies}
        chosen = [s for s in self._studies if s.study_uid in uids]
        if len(chosen) == 1:
            study = chosen[0]
            who = display_name(study.patient_name) or study.patient_id or "Study"
            parts = [who, display_date(study.study_date)]
            if len(series) == 1:
                parts.append(series[0].description)
            return " · ".join(p for p in parts if p)
        patients = {(s.patient_id, s.patient_name) for s in chosen}
        return f"{len(chosen)} studies of {len(patients)} patients"
