"""The DICOM browser: find studies and series, and turn a selection into a batch to read.

One tab for the local DICOM database ("This computer", with "Import folder…") and one per
DICOMweb server of the site settings. "Start batch from selection" writes a new batch file
into the user's data folder; "Add to batch" adds the selection to an earlier batch of the same
source (:mod:`CaseIteratorCoreLib.batch_from_selection`). Either way ``batch_created(Path)``
is emitted and the dialog closes; the reading window then opens that batch.

Searches, listings, thumbnails and imports run in a :class:`~.browser_tasks.TaskRunner`; the
dialog waits for its threads when it closes, so nothing is left running.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.batch_from_selection import (
    BatchOrigin,
    BatchWritten,
    SelectionError,
    add_to_batch,
    batches_for,
    write_batch,
)
from CaseIteratorCoreLib.dicom_search import (
    DEFAULT_PAGE_SIZE,
    DicomSearch,
    LocalDatabaseSearch,
    searches_for,
)
from CaseIteratorCoreLib.errors import CaseIteratorError
from CaseIteratorCoreLib.server_settings import ServerSettings

from .browser_import import ImportBar
from .browser_tab import BrowserTab
from .browser_tables import BROWSER_QSS
from .browser_tasks import TaskRunner
from .message_banner import MessageBanner
from .style import APP_TITLE

log = logging.getLogger(__name__)


class DicomBrowserDialog(QtWidgets.QDialog):
    """Find images in the local database and on the site's DICOMweb servers; make a batch.

    Parameters
    ----------
    servers
        The configured DICOMweb servers (``load_site_settings().servers``); read from the site
        settings when None.
    database_dir
        The local DICOM database; the user's (``dicom-db`` in the data folder) when None.
    allowed_folders
        Folders the import's folder dialog may show (site settings).
    kiosk
        Reading-station mode: without allowed folders, no folder dialog (no import).
    current_batch
        The batch being read: offered first by "Add to batch" when it is of the same source.
    batches_dir
        Where new batch files go; ``batches`` in the user's data folder when None.
    page_size
        Studies listed per search; "Show more" lists the next ones.

    Signals
    -------
    batch_created(object)
        A batch file was written or extended: its :class:`~pathlib.Path`. Also kept in
        :attr:`created_batch`.
    """

    batch_created = QtCore.Signal(object)

    def __init__(
        self,
        servers: Mapping[str, ServerSettings] | None = None,
        *,
        database_dir: Path | None = None,
        allowed_folders: Sequence[Path] = (),
        kiosk: bool = False,
        current_batch: Path | None = None,
        batches_dir: Path | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("dicomBrowser")
        self.setWindowTitle(f"{APP_TITLE} — DICOM browser")
        self.setStyleSheet(BROWSER_QSS)
        self.current_batch = current_batch
        self.batches_dir = batches_dir
        self.created_batch: Path | None = None
        self.runner = TaskRunner(self)
        self._closed = False
        settings_problem = None
        local = True
        if servers is None:
            servers, local, settings_problem = _site_servers()
        self.searches: list[DicomSearch] = searches_for(servers, database_dir, local=local)
        #: The local database's import bar (None when the site allows no dicom-db batch).
        self.import_bar: ImportBar | None = None
        self._build(allowed_folders, kiosk, page_size)
        if settings_problem:
            self.banner.show_message("The site's servers cannot be shown", settings_problem)
        elif not self.searches:
            self.banner.show_message(
                "Nothing to browse on this station",
                "The site settings allow neither the local DICOM database nor a DICOMweb "
                "server as a batch source; ask your site admin.",
                kind="info",
            )
        self.resize(1320, 820)

    # -- construction ----------------------------------------------------------------------

    def _build(self, allowed_folders: Sequence[Path], kiosk: bool, page_size: int) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(10)
        title = QtWidgets.QLabel("DICOM browser")
        title.setObjectName("dialogTitle")
        layout.addWidget(title)
        hint = QtWidgets.QLabel(
            "Find studies on this computer or on your PACS, select studies or series, and "
            "start reading them as a batch."
        )
        hint.setProperty("role", "muted")
        layout.addWidget(hint)
        self.banner = MessageBanner()
        layout.addWidget(self.banner)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.tabBar().setDrawBase(False)
        self.tab_pages: list[BrowserTab] = []
        for search in self.searches:
            tab = BrowserTab(search, self.runner, page_size=page_size)
            tab.selection_changed.connect(self._update_buttons)
            if isinstance(search, LocalDatabaseSearch):
                self.import_bar = ImportBar(
                    search.folder, self.runner, allowed_folders=allowed_folders, kiosk=kiosk
                )
                self.import_bar.imported.connect(lambda _report, t=tab: t.run_search())
                self.import_bar.failed.connect(
                    lambda text, t=tab: t.banner.show_message("The import stopped", text)
                )
                tab.top.addWidget(self.import_bar)
            self.tabs.addTab(tab, search.name)
            self.tabs.setTabToolTip(self.tabs.count() - 1, search.describe())
            self.tab_pages.append(tab)
        self.tabs.currentChanged.connect(self._tab_shown)
        layout.addWidget(self.tabs, 1)

        buttons = QtWidgets.QHBoxLayout()
        buttons.setSpacing(8)
        self.selection_label = QtWidgets.QLabel("")
        self.selection_label.setProperty("role", "muted")
        buttons.addWidget(self.selection_label, 1)
        self.add_button = QtWidgets.QPushButton("Add to batch…")
        self.add_button.setToolTip("Add the selection to an earlier batch of the same source")
        self.add_menu = QtWidgets.QMenu(self.add_button)
        self.add_menu.aboutToShow.connect(self._fill_add_menu)
        self.add_button.setMenu(self.add_menu)
        buttons.addWidget(self.add_button)
        self.start_button = QtWidgets.QPushButton("Start batch from selection")
        self.start_button.setProperty("primary", True)
        self.start_button.setToolTip(
            "Write a new batch of the selected series (or of every series of the selected "
            "studies) and start reading it"
        )
        self.start_button.clicked.connect(self.start_batch)
        buttons.addWidget(self.start_button)
        self.close_button = QtWidgets.QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self._update_buttons()

    # -- tabs --------------------------------------------------------------------------------

    @property
    def current_tab(self) -> BrowserTab:
        """The tab on show."""
        return self.tab_pages[self.tabs.currentIndex()]

    def tab(self, name: str) -> BrowserTab:
        """The tab called ``name`` ("This computer" or a server's name)."""
        for page in self.tab_pages:
            if page.search.name == name:
                return page
        raise KeyError(f"no tab {name!r}; tabs: {[p.search.name for p in self.tab_pages]}")

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        self._tab_shown(self.tabs.currentIndex())

    def _tab_shown(self, index: int) -> None:
        if not 0 <= index < len(self.tab_pages):
            return
        tab = self.tab_pages[index]
        # The local database is searched at once (it is quick); a PACS only when asked.
        if isinstance(tab.search, LocalDatabaseSearch) and not tab.searched_once and not tab.busy:
            tab.run_search()
        self._update_buttons()

    # -- batches -----------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        if not self.tab_pages:  # nothing the site allows to browse: nothing to start
            self.start_button.setEnabled(False)
            self.add_button.setEnabled(False)
            return
        tab = self.current_tab
        summary = tab.selection_summary()
        self.start_button.setEnabled(bool(summary))
        self.add_button.setEnabled(bool(summary))
        self.selection_label.setText(
            f"Selected: {summary}" if summary else "Select studies or series to read them"
        )

    def _origin(self) -> BatchOrigin:
        return BatchOrigin.of(self.current_tab.search)

    def start_batch(self) -> Path | None:
        """Write a new batch of the current tab's selection; emit ``batch_created``."""
        tab = self.current_tab
        try:
            written = write_batch(
                self._origin(),
                tab.selected_items(),
                name=tab.suggested_name(),
                folder=self.batches_dir,
            )
        except (CaseIteratorError, OSError) as exc:
            self._batch_failed(exc)
            return None
        return self._created(written)

    def add_to(self, batch: Path) -> Path | None:
        """Add the current tab's selection to ``batch``; emit ``batch_created``."""
        try:
            written = add_to_batch(batch, self._origin(), self.current_tab.selected_items())
        except (CaseIteratorError, OSError) as exc:
            self._batch_failed(exc)
            return None
        return self._created(written)

    def addable_batches(self) -> list[Path]:
        """Batches "Add to batch" offers: the one being read (when of this source), then the
        browser's earlier ones, newest first."""
        origin = self._origin()
        found = batches_for(origin, self.batches_dir)
        current = self.current_batch
        if current is not None and current not in found:
            try:
                batch = load_batch(current)
                if origin.matches(batch) and "uid_list" in batch.source.options:
                    found.insert(0, current)
            except CaseIteratorError:
                pass
        return found

    def _fill_add_menu(self) -> None:
        self.add_menu.clear()
        batches = self.addable_batches()
        if not batches:
            action = self.add_menu.addAction("No earlier batch of this source")
            action.setEnabled(False)
            return
        for path in batches[:15]:
            label = path.stem + ("  (being read)" if path == self.current_batch else "")
            action = self.add_menu.addAction(label)
            action.setToolTip(str(path))
            action.triggered.connect(lambda _checked=False, p=path: self.add_to(p))

    def _batch_failed(self, exc: BaseException) -> None:
        title = (
            "This selection cannot become a batch"
            if isinstance(exc, SelectionError)
            else "The batch could not be written"
        )
        self.banner.show_message(title, str(exc)[:1].upper() + str(exc)[1:])

    def _created(self, written: BatchWritten) -> Path:
        self.created_batch = written.path
        log.info("batch %s: %d added, %d already there", written.path, written.added,
                 written.already_there)  # fmt: skip
        self.batch_created.emit(written.path)
        self.accept()
        return written.path

    # -- closing ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the background work and release the servers' connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.runner.shutdown()
        for search in self.searches:
            search.close()

    def done(self, result: int) -> None:
        self.shutdown()
        super().done(result)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def _site_servers() -> tuple[Mapping[str, ServerSettings], bool, str | None]:
    """The site's servers batches may read from ([sources] servers), whether the local
    database may be a batch source ([sources] types), or no server and why (a broken site file
    must not hide the browser)."""
    from CaseIteratorCoreLib.site_policy import site_policy
    from CaseIteratorCoreLib.site_settings import load_site_settings

    try:
        settings = load_site_settings()
        policy = site_policy(settings)
        local = policy.types is None or "dicom-db" in policy.types
        return policy.allowed_servers(settings.servers), local, None
    except CaseIteratorError as exc:
        return {}, True, str(exc)


__all__ = ["DicomBrowserDialog"]
