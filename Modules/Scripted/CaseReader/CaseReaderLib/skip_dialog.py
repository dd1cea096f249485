"""Asking why a case is skipped: common reasons one click away, or the reader's own words."""

from __future__ import annotations

from Qt import QtCore, QtWidgets

#: Offered reasons; the reader may also write their own.
COMMON_REASONS = (
    "Image quality too poor (motion, noise, artefacts)",
    "Structure of interest not in the field of view",
    "Wrong series or wrong body part",
    "Incomplete series",
)


class SkipDialog(QtWidgets.QDialog):
    """Modal dialog returning the skip reason (``reason()``) when accepted."""

    def __init__(self, case_name: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Skip case")
        self.setModal(True)
        self.setMinimumWidth(460)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(20, 18, 20, 16)
        layout.setSpacing(10)
        title = QtWidgets.QLabel("Skip this case?")
        title.setObjectName("dialogTitle")
        layout.addWidget(title)
        detail = QtWidgets.QLabel(f"{case_name}\nThe reason is kept with your progress.")
        detail.setProperty("role", "muted")
        detail.setWordWrap(True)
        layout.addWidget(detail)
        self._choices = QtWidgets.QButtonGroup(self)
        for number, text in enumerate((*COMMON_REASONS, "Other:")):
            button = QtWidgets.QRadioButton(text)
            self._choices.addButton(button, number)
            layout.addWidget(button)
        self.other = QtWidgets.QLineEdit()
        self.other.setPlaceholderText("Describe the reason")
        self.other.textEdited.connect(lambda _: self._choices.button(len(COMMON_REASONS)).click())
        layout.addWidget(self.other)
        buttons = QtWidgets.QDialogButtonBox()
        self.skip_button = buttons.addButton(
            "Skip case", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.skip_button.setProperty("primary", True)
        buttons.addButton("Keep reading", QtWidgets.QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._choices.idToggled.connect(lambda *_: self._refresh())
        self.other.textChanged.connect(lambda *_: self._refresh())
        self._refresh()

    def reason(self) -> str:
        """The chosen or written reason ("" when none)."""
        chosen = self._choices.checkedId()
        if chosen < 0:
            return ""
        if chosen == len(COMMON_REASONS):
            return self.other.text().strip()
        return COMMON_REASONS[chosen]

    def choose(self, text: str) -> None:
        """Select a common reason, or write ``text`` as the other reason (tests, keyboard)."""
        if text in COMMON_REASONS:
            self._choices.button(COMMON_REASONS.index(text)).setChecked(True)
        else:
            self._choices.button(len(COMMON_REASONS)).setChecked(True)
            self.other.setText(text)
        self._refresh()

    def _refresh(self) -> None:
        self.skip_button.setEnabled(bool(self.reason()))
        self.other.setEnabled(True)
        if self._choices.checkedId() == len(COMMON_REASONS):
            self.other.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
