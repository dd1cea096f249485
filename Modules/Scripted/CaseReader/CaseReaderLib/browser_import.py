"""Importing a folder into the local DICOM database from the browser, with progress.

The folder dialog stays inside the site's allowed folders (as "Open batch" does); in kiosk
mode without allowed folders there is no folder dialog, so no import either. The import
itself (:meth:`~CaseIteratorCoreLib.dicom_database.LocalDicomDatabase.import_paths`) runs in
the browser's task runner and can be cancelled; what was imported before stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.dicom_database import ImportReport, LocalDicomDatabase
from CaseIteratorCoreLib.errors import OperationCancelled

from .batch_picker import BatchFileDialog
from .browser_tasks import TaskRunner


class ImportFolderDialog(BatchFileDialog):
    """A folder dialog held inside ``allowed`` folders (anywhere when empty)."""

    def __init__(self, allowed: Sequence[Path], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(allowed, parent)
        self.setWindowTitle("Import a folder of DICOM files")
        self.setNameFilter("")
        self.setFileMode(QtWidgets.QFileDialog.FileMode.Directory)
        self.setOption(QtWidgets.QFileDialog.Option.ShowDirsOnly, True)
        self.setLabelText(QtWidgets.QFileDialog.DialogLabel.Accept, "Import")


def choose_import_folder(
    parent: QtWidgets.QWidget | None, allowed: Sequence[Path], *, kiosk: bool
) -> Path | None:
    """Ask for a folder to import; None when cancelled or when no dialog may be shown."""
    if kiosk and not allowed:
        return None
    dialog = ImportFolderDialog(allowed, parent)
    try:
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return None
        files = dialog.selectedFiles()
        return Path(files[0]) if files else None
    finally:
        dialog.deleteLater()


def _short(folder: Path) -> str:
    """``folder`` with the home folder written ``~``."""
    try:
        return "~/" + folder.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(folder)


def import_summary(report: ImportReport) -> str:
    """One line for the reader: what came in, what was there, what was left out."""
    parts = [f"{report.imported} images imported"]
    if report.already_present:
        parts.append(f"{report.already_present} were already there")
    if report.skipped:
        first = report.skipped[0]
        parts.append(
            f"{len(report.skipped)} files left out (for example {Path(first.path).name}: "
            f"{first.reason})"
        )
    return "; ".join(parts) + "."


class ImportBar(QtWidgets.QFrame):
    """The local database's folder, "Import folder…", and the import's progress.

    Signals
    -------
    imported(object)
        An import finished: its :class:`ImportReport`.
    failed(str)
        An import failed: what to tell the reader (a cancel is only said in the bar).
    """

    imported = QtCore.Signal(object)
    failed = QtCore.Signal(str)

    def __init__(
        self,
        folder: Path,
        runner: TaskRunner,
        *,
        allowed_folders: Sequence[Path] = (),
        kiosk: bool = False,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("importBar")
        self.folder = Path(folder)
        self.runner = runner
        self.allowed_folders = tuple(allowed_folders)
        self.kiosk = kiosk
        self._key = f"import{id(self)}"
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(10)
        self.label = QtWidgets.QLabel(f"DICOM database on this computer · {_short(self.folder)}")
        self.label.setToolTip(str(self.folder))
        layout.addWidget(self.label, 1)
        self.progress = QtWidgets.QProgressBar()
        self.progress.hide()
        layout.addWidget(self.progress)
        self.status = QtWidgets.QLabel("")
        layout.addWidget(self.status)
        self.cancel_button = QtWidgets.QPushButton("Cancel import")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        layout.addWidget(self.cancel_button)
        self.import_button = QtWidgets.QPushButton("Import folder…")
        self.import_button.setToolTip(
            "Copy the DICOM files of a folder (and its subfolders) into this computer's database"
        )
        self.import_button.clicked.connect(self.choose_and_import)
        # In kiosk mode without allowed folders, no folder may be chosen: no import.
        self.import_button.setVisible(not kiosk or bool(self.allowed_folders))
        layout.addWidget(self.import_button)

    @property
    def running(self) -> bool:
        """Whether an import is under way."""
        return self.runner.busy(self._key)

    def choose_and_import(self) -> None:
        """Ask for a folder (inside the allowed ones) and import it."""
        folder = choose_import_folder(self, self.allowed_folders, kiosk=self.kiosk)
        if folder is not None:
            self.start_import(folder)

    def start_import(self, folder: Path) -> None:
        """Import ``folder`` in the background, showing progress."""
        database_folder, runner = self.folder, self.runner

        def work(cancel) -> ImportReport:
            with LocalDicomDatabase(database_folder) as database:
                return database.import_paths(folder, runner.progress_callback(cancel), cancel)

        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.import_button.setEnabled(False)
        self.status.setText(f"Importing {folder.name}…")
        self.runner.start(self._key, work, self._done, self._failed, self._progress)

    def cancel(self) -> None:
        """Stop the import; what was imported stays in the database."""
        self.runner.cancel(self._key)
        self._finish()
        self.status.setText("Import cancelled; the images imported before stay in the database.")

    def _progress(self, done: int, total: int | None, message: str) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.status.setText(f"{done} of {total} files")

    def _finish(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.import_button.setEnabled(True)

    def _done(self, report: ImportReport) -> None:
        self._finish()
        self.status.setText(import_summary(report))
        self.imported.emit(report)

    def _failed(self, exc: BaseException) -> None:
        self._finish()
        if isinstance(exc, OperationCancelled):
            return
        self.status.setText("Import failed")
        self.failed.emit(str(exc))
