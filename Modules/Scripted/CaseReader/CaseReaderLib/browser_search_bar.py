"""The browser's search fields: name, ID, date range, modality, description."""

from __future__ import annotations

from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.dicom_search import SearchFilters

#: Modalities offered in the list (any other can be typed).
MODALITIES = ("CT", "MR", "PT", "US", "CR", "DX", "MG", "NM", "XA", "RF", "OT")
ANY = "Any"
ANY_MODALITY = "Any modality"
#: Date meaning "no limit" (shown as "Any").
_NO_DATE = QtCore.QDate(1900, 1, 1)


def _date_edit(tooltip: str) -> QtWidgets.QDateEdit:
    edit = QtWidgets.QDateEdit()
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setMinimumDate(_NO_DATE)
    edit.setSpecialValueText(ANY)  # shown at the minimum date: no limit
    edit.setDate(_NO_DATE)
    edit.setToolTip(tooltip)
    edit.setFixedWidth(118)
    return edit


class SearchBar(QtWidgets.QFrame):
    """Search fields and buttons; ``search_requested`` when the reader asks to search.

    Names and descriptions match anywhere in the text (any case); ``*`` and ``?`` are
    wildcards. The patient ID matches exactly unless it holds a wildcard.
    """

    search_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchBar")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(8)

        self.name = QtWidgets.QLineEdit()
        self.name.setPlaceholderText("Patient name")
        self.name.setToolTip("Part of the name, any case; * and ? are wildcards")
        self.patient_id = QtWidgets.QLineEdit()
        self.patient_id.setPlaceholderText("Patient ID")
        self.patient_id.setToolTip("The exact ID, or with wildcards: PAT-00*")
        self.patient_id.setFixedWidth(130)
        self.date_from = _date_edit("Studies from this day (Any: no limit)")
        self.date_to = _date_edit("Studies up to this day (Any: no limit)")
        self.modality = QtWidgets.QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems([ANY_MODALITY, *MODALITIES])
        self.modality.setToolTip("Studies holding a series of this modality")
        self.modality.setFixedWidth(140)
        self.description = QtWidgets.QLineEdit()
        self.description.setPlaceholderText("Study description")
        self.description.setToolTip("Part of the study description, any case")
        self.clear_button = QtWidgets.QPushButton("Clear")
        self.clear_button.setToolTip("Empty the search fields")
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.setProperty("primary", True)
        self.search_button.setToolTip("Search (Enter)")

        layout.addWidget(self.name, 3)
        layout.addWidget(self.patient_id, 0)
        dates = QtWidgets.QLabel("Date")
        layout.addWidget(dates)
        layout.addWidget(self.date_from)
        layout.addWidget(QtWidgets.QLabel("–"))
        layout.addWidget(self.date_to)
        layout.addWidget(self.modality)
        layout.addWidget(self.description, 3)
        layout.addWidget(self.clear_button)
        layout.addWidget(self.search_button)

        for edit in (self.name, self.patient_id, self.description):
            edit.returnPressed.connect(self.search_requested)
        self.modality.lineEdit().returnPressed.connect(self.search_requested)
        self.search_button.clicked.connect(self.search_requested)
        self.clear_button.clicked.connect(self.clear)

    def _date(self, edit: QtWidgets.QDateEdit) -> str:
        date = edit.date()
        return "" if date <= _NO_DATE else date.toString("yyyyMMdd")

    def filters(self) -> SearchFilters:
        """The filters as typed.

        Raises
        ------
        SearchFilterError
            When a field cannot be used (the message says which and the fix).
        """
        modality = self.modality.currentText().strip()
        return SearchFilters(
            patient_name=self.name.text(),
            patient_id=self.patient_id.text(),
            date_from=self._date(self.date_from),
            date_to=self._date(self.date_to),
            modality="" if modality.lower() in (ANY.lower(), ANY_MODALITY.lower()) else modality,
            description=self.description.text(),
        )

    def set_filters(
        self,
        *,
        name: str = "",
        patient_id: str = "",
        date_from: QtCore.QDate | None = None,
        date_to: QtCore.QDate | None = None,
        modality: str = "",
        description: str = "",
    ) -> None:
        """Fill the fields (tests, screenshots)."""
        self.name.setText(name)
        self.patient_id.setText(patient_id)
        self.date_from.setDate(date_from or _NO_DATE)
        self.date_to.setDate(date_to or _NO_DATE)
        self.modality.setCurrentText(modality or ANY_MODALITY)
        self.description.setText(description)

    def clear(self) -> None:
        """Empty every field."""
        self.set_filters()
