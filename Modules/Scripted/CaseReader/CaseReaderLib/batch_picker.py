"""Choosing a batch file, only inside the folders the site allows (kiosk stations).

Qt's own (non-native) file dialog is used so that it can be held inside the allowed folders:
the sidebar lists only them, entering any other folder leads back, and a file typed by hand
outside them is refused. With no allowed folders the dialog is free, except in kiosk mode,
where no file dialog is offered at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from Qt import QtCore, QtWidgets

#: What a batch can be: a TOML batch file or a CSV table (DICOM folders: choose the folder).
BATCH_FILTER = "Batches (*.toml *.csv *.tsv)"


def is_inside(path: Path, folders: Sequence[Path]) -> bool:
    """Whether ``path`` is one of ``folders`` or below one (symbolic links resolved)."""
    resolved = Path(path).expanduser().resolve()
    for folder in folders:
        root = Path(folder).expanduser().resolve()
        if resolved == root or root in resolved.parents:
            return True
    return False


class BatchFileDialog(QtWidgets.QFileDialog):
    """A file dialog that stays inside ``allowed`` folders (anywhere when empty)."""

    def __init__(self, allowed: Sequence[Path], parent: QtWidgets.QWidget | None = None) -> None:
        start = str(Path(allowed[0]).expanduser()) if allowed else str(Path.home())
        super().__init__(parent, "Open a batch", start, BATCH_FILTER)
        self.allowed = tuple(Path(a).expanduser() for a in allowed)
        self.setOption(QtWidgets.QFileDialog.Option.DontUseNativeDialog, True)
        self.setFileMode(QtWidgets.QFileDialog.FileMode.ExistingFile)
        self.setAcceptMode(QtWidgets.QFileDialog.AcceptMode.AcceptOpen)
        if self.allowed:
            self.setSidebarUrls([QtCore.QUrl.fromLocalFile(str(a)) for a in self.allowed])
            self.setHistory([])
            self.directoryEntered.connect(self._keep_inside)

    def is_allowed(self, path: Path) -> bool:
        """Whether ``path`` may be shown or chosen."""
        return not self.allowed or is_inside(path, self.allowed)

    def _keep_inside(self, folder: str) -> None:
        if not self.is_allowed(Path(folder)):
            # Deferred: the dialog is still entering ``folder`` when it tells us.
            QtCore.QTimer.singleShot(0, self, lambda: self.setDirectory(str(self.allowed[0])))

    def accept(self) -> None:
        files = self.selectedFiles()
        if files and all(self.is_allowed(Path(f)) for f in files):
            super().accept()
        elif self.allowed:
            self.setDirectory(str(self.allowed[0]))


def choose_batch(
    parent: QtWidgets.QWidget | None, allowed: Sequence[Path], *, kiosk: bool
) -> Path | None:
    """Ask for a batch file; None when cancelled or when no dialog may be shown."""
    if kiosk and not allowed:
        return None
    dialog = BatchFileDialog(allowed, parent)
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return None
    files = dialog.selectedFiles()
    return Path(files[0]) if files else None
