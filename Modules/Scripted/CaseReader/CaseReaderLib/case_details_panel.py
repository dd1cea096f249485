"""Facts about the case on screen: patient, study, series, images, voxel size."""

from __future__ import annotations

from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.loading import LoadedCase

_ROWS = (
    ("patient", "Patient"),
    ("study", "Study"),
    ("series", "Series"),
    ("images", "Images"),
    ("voxels", "Voxel size"),
)


class ElidedLabel(QtWidgets.QLabel):
    """One line of text, cut with "…" when too long; the full text is the tooltip."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self._full = ""
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        """Set the text (elided when painted)."""
        self._full = text
        self.setToolTip(text if len(text) > 24 else "")
        self.setText(text)
        self.update()

    def full_text(self) -> str:
        """The text as given."""
        return self._full

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        metrics = painter.fontMetrics()
        text = metrics.elidedText(self._full, QtCore.Qt.TextElideMode.ElideRight, self.width())
        painter.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        painter.drawText(self.rect(), int(QtCore.Qt.AlignmentFlag.AlignVCenter), text)
        painter.end()


class CaseDetailsPanel(QtWidgets.QWidget):
    """A small table of the current case's facts (empty while none is shown)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("CASE")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        form = QtWidgets.QFormLayout()
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(4)
        form.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignLeft)
        self.values: dict[str, ElidedLabel] = {}
        for key, label in _ROWS:
            name = QtWidgets.QLabel(label)
            name.setProperty("role", "muted")
            value = ElidedLabel("–")
            form.addRow(name, value)
            self.values[key] = value
        layout.addLayout(form)

    def show_case(self, loaded: LoadedCase | None) -> None:
        """Fill in the facts of ``loaded`` (dashes when None)."""
        if loaded is None:
            for value in self.values.values():
                value.set_full_text("–")
            return
        details = loaded.case.details
        geometry = loaded.image.volume.geometry
        date = details.get("study_date", "")
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        study = " · ".join(p for p in (date, details.get("study_description", "")) if p)
        series = " · ".join(
            p for p in (details.get("modality", ""), details.get("series_description", "")) if p
        )
        size = " × ".join(str(n) for n in geometry.size)
        self.values["patient"].set_full_text(details.get("patient_id", "") or loaded.case.name)
        self.values["study"].set_full_text(study or "–")
        self.values["series"].set_full_text(series or loaded.image.ref.describe())
        self.values["images"].set_full_text(size)
        self.values["voxels"].set_full_text(
            " × ".join(f"{s:.2f}" for s in geometry.spacing) + " mm"
        )
