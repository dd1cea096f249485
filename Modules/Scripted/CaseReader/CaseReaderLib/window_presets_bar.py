"""Window/level preset buttons (Auto, Soft tissue, Lung, Bone, Brain)."""

from __future__ import annotations

from collections.abc import Sequence

from Qt import QtCore, QtWidgets

from .window_level import PRESETS, WindowPreset


class WindowPresetsBar(QtWidgets.QWidget):
    """A row of exclusive preset buttons.

    Signals
    -------
    preset_chosen(object)
        The :class:`WindowPreset` the reader picked.
    """

    preset_chosen = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        title = QtWidgets.QLabel("WINDOW")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)
        self._grid = QtWidgets.QGridLayout()
        self._grid.setSpacing(4)
        layout.addLayout(self._grid)
        self._group = QtWidgets.QButtonGroup(self)
        self._group.setExclusive(True)
        self.buttons: dict[str, QtWidgets.QToolButton] = {}
        for number, preset in enumerate(PRESETS):
            button = QtWidgets.QToolButton()
            button.setObjectName("presetButton")
            button.setText(preset.label)
            button.setToolTip(preset.tooltip())
            button.setCheckable(True)
            button.setSizePolicy(
                QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed
            )
            button.clicked.connect(lambda _=False, p=preset: self.preset_chosen.emit(p))
            self._group.addButton(button)
            self._grid.addWidget(button, number // 3, number % 3)
            self.buttons[preset.key] = button

    def set_available(self, presets: Sequence[WindowPreset]) -> None:
        """Enable only ``presets`` (CT presets make no sense on MR)."""
        keys = {p.key for p in presets}
        for key, button in self.buttons.items():
            button.setVisible(key in keys)

    def set_checked(self, key: str | None) -> None:
        """Mark preset ``key`` as current (None: a hand-adjusted window)."""
        self._group.setExclusive(False)
        for button_key, button in self.buttons.items():
            button.setChecked(button_key == key)
        self._group.setExclusive(True)
