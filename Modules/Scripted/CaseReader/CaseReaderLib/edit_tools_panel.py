"""The editing tools: effect buttons, the brush size, per-tool options, Undo and Redo.

It drives :class:`~.segment_editing.SegmentEditing` and follows its changes (tool, undo state,
brush size changed with Shift+wheel in a view, the active segment's lock). The Threshold
preview pulses on a QTimer (:mod:`.threshold_preview`); its range starts at Otsu's threshold.
"""

from __future__ import annotations

from collections.abc import Iterable

from Qt import QtCore, QtGui, QtWidgets

from .segment_editing import BRUSH_RANGE_MM, EFFECTS, EffectInfo, SegmentEditing
from .style import icon
from .threshold_preview import ThresholdPreviewPulse

#: Keys that make the brush smaller / larger (as in many paint programs), and the factor.
BRUSH_KEYS = ("[", "]")
BRUSH_STEP = 1.2

_HINTS = {
    "navigate": "Left-drag: window/level · Wheel: slices · Right-drag: zoom · "
    "Middle-drag: pan · Double-click: reset window",
    "draw": "Hold the left button and draw around the region: the inside is filled in this slice.",
    "scissors": "Hold the left button and encircle what to cut away in this slice.",
}


def _hint(text: str) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text)
    label.setProperty("role", "muted")
    label.setWordWrap(True)
    return label


class EditToolsPanel(QtWidgets.QWidget):
    """Tool buttons and options for the current segment.

    Parameters
    ----------
    editing
        The segment editing of the reading window.
    effects
        Keys of the tools to offer (site settings may hide some); default all.
    """

    def __init__(
        self,
        editing: SegmentEditing,
        effects: Iterable[str] | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._editing = editing
        allowed = set(effects) if effects is not None else {e.key for e in EFFECTS}
        allowed.add("navigate")
        self._infos = [e for e in EFFECTS if e.key in allowed]
        #: The Threshold preview's pulse (replaces trame-slicer's asyncio one).
        self.threshold_pulse = ThresholdPreviewPulse.install(editing.threshold_effect(), self)
        self._threshold_case: object | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        title = QtWidgets.QLabel("TOOLS")
        title.setProperty("role", "sectionTitle")
        layout.addWidget(title)

        grid = QtWidgets.QGridLayout()
        grid.setSpacing(4)
        self._group = QtWidgets.QButtonGroup(self)
        self._group.setExclusive(True)
        self.buttons: dict[str, QtWidgets.QToolButton] = {}
        for number, info in enumerate(self._infos):
            button = self._effect_button(info)
            grid.addWidget(button, number // 4, number % 4)
            self._group.addButton(button)
            self.buttons[info.key] = button
        layout.addLayout(grid)

        undo_row = QtWidgets.QHBoxLayout()
        undo_row.setSpacing(6)
        self.undo_button = QtWidgets.QPushButton(icon("undo"), "Undo")
        self.undo_button.setToolTip("Undo the last edit (Ctrl+Z)")
        self.undo_button.clicked.connect(editing.undo)
        self.redo_button = QtWidgets.QPushButton(icon("redo"), "Redo")
        self.redo_button.setToolTip("Redo the undone edit (Ctrl+Y)")
        self.redo_button.clicked.connect(editing.redo)
        undo_row.addWidget(self.undo_button)
        undo_row.addWidget(self.redo_button)
        layout.addLayout(undo_row)

        self.lock_hint = _hint("")
        self.lock_hint.setObjectName("lockHint")
        self.lock_hint.hide()
        layout.addWidget(self.lock_hint)

        self.options = QtWidgets.QStackedWidget()
        self.options.setObjectName("toolOptions")
        # Frames and plain widgets paint the style sheet's window colour: show the side panel.
        self.options.setStyleSheet("#toolOptions, #toolPage, QSlider { background: transparent; }")
        self._pages: dict[str, QtWidgets.QWidget] = {}
        self._add_page("navigate", _hint(_HINTS["navigate"]))
        self._add_page("brush", self._brush_page())
        self._add_page("draw", _hint(_HINTS["draw"]))
        self._add_page("scissors", _hint(_HINTS["scissors"]))
        self._add_page("threshold", self._threshold_page())
        self._add_page("islands", self._islands_page())
        self._add_page("smoothing", self._smoothing_page())
        layout.addWidget(self.options)
        editing.add_listener(self.refresh)
        self.refresh()

    # -- construction ----------------------------------------------------------------------

    def _effect_button(self, info: EffectInfo) -> QtWidgets.QToolButton:
        button = QtWidgets.QToolButton()
        button.setObjectName("effectButton")
        button.setText(info.label)
        button.setIcon(icon(info.icon))
        button.setIconSize(QtCore.QSize(22, 22))
        button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setCheckable(True)
        button.setToolTip(f"{info.label}: {info.tooltip} ({info.shortcut})")
        button.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed
        )
        button.clicked.connect(lambda _=False, key=info.key: self.choose(key))
        return button

    def shortcuts(self) -> list[tuple[str, str]]:
        """``(tool key, shortcut)`` pairs the window registers."""
        return [(info.key, info.shortcut) for info in self._infos]

    def _add_page(self, key: str, widget: QtWidgets.QWidget) -> None:
        if type(widget) is QtWidgets.QWidget:  # plain widgets paint the window colour
            widget.setObjectName("toolPage")
        self._pages[key] = widget
        self.options.addWidget(widget)

    def _brush_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Brush"))
        self.brush_label = QtWidgets.QLabel()
        self.brush_label.setAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        row.addWidget(self.brush_label, 1)
        layout.addLayout(row)
        self.brush_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.brush_slider.setRange(*(round(v) for v in BRUSH_RANGE_MM))
        self.brush_slider.setValue(round(self._editing.brush_mm))
        self.brush_slider.setToolTip(
            "Brush diameter in millimetres\n"
            f"Shift+wheel in a view, or {BRUSH_KEYS[0]} and {BRUSH_KEYS[1]}: smaller / larger"
        )
        self.brush_slider.valueChanged.connect(self._on_brush_changed)
        layout.addWidget(self.brush_slider)
        self.sphere_brush = QtWidgets.QCheckBox("Sphere brush (also paints nearby slices)")
        self.sphere_brush.setChecked(self._editing.sphere_brush)
        self.sphere_brush.toggled.connect(self._editing.set_sphere_brush)
        layout.addWidget(self.sphere_brush)
        self._on_brush_changed(self.brush_slider.value())
        return page

    def _threshold_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        layout = QtWidgets.QGridLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setHorizontalSpacing(8)
        layout.setVerticalSpacing(6)
        self.threshold_min = QtWidgets.QDoubleSpinBox()
        self.threshold_max = QtWidgets.QDoubleSpinBox()
        self.threshold_low_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.threshold_high_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        pairs = (
            (self.threshold_min, self.threshold_low_slider, 100.0, "Lowest value filled"),
            (self.threshold_max, self.threshold_high_slider, 3000.0, "Highest value filled"),
        )
        for row, (box, slider, value, tip) in enumerate(pairs):
            box.setRange(-100000.0, 100000.0)
            box.setDecimals(0)
            box.setValue(value)
            box.setToolTip(tip)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._on_threshold_changed)
            slider.setRange(-1024, 3071)
            slider.setToolTip(tip)
            slider.valueChanged.connect(self._on_threshold_slider)
            layout.addWidget(QtWidgets.QLabel(("From", "To")[row]), row, 0)
            layout.addWidget(slider, row, 1)
            layout.addWidget(box, row, 2)
        auto = QtWidgets.QPushButton("Otsu")
        auto.setToolTip("Start from Otsu's threshold of the image (the default)")
        auto.clicked.connect(self._on_threshold_auto)
        self.threshold_auto_button = auto
        self.threshold_apply_button = QtWidgets.QPushButton("Apply")
        self.threshold_apply_button.setProperty("primary", True)
        self.threshold_apply_button.setToolTip("Fill the pulsing voxels into the segment")
        self.threshold_apply_button.clicked.connect(self._on_threshold_apply)
        buttons = QtWidgets.QHBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(auto)
        buttons.addWidget(self.threshold_apply_button)
        layout.addLayout(buttons, 2, 0, 1, 3)
        layout.setColumnStretch(1, 1)
        return page

    def _islands_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        self.keep_largest_button = QtWidgets.QPushButton("Keep largest piece")
        self.keep_largest_button.clicked.connect(lambda: self._islands("keep"))
        layout.addWidget(self.keep_largest_button)
        row = QtWidgets.QHBoxLayout()
        self.island_size = QtWidgets.QSpinBox()
        self.island_size.setRange(1, 1_000_000)
        self.island_size.setValue(100)
        self.island_size.setSuffix(" voxels")
        remove = QtWidgets.QPushButton("Remove smaller")
        remove.clicked.connect(lambda: self._islands("remove"))
        row.addWidget(self.island_size, 1)
        row.addWidget(remove)
        layout.addLayout(row)
        return page

    def _smoothing_page(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget()
        layout = QtWidgets.QGridLayout(page)
        layout.setContentsMargins(0, 4, 0, 0)
        self.smoothing_mode = QtWidgets.QComboBox()
        self.smoothing_mode.addItems(
            ["Median", "Closing (fill holes)", "Opening (remove extrusions)", "Gaussian"]
        )
        self.smoothing_kernel = QtWidgets.QDoubleSpinBox()
        self.smoothing_kernel.setRange(0.5, 30.0)
        self.smoothing_kernel.setValue(3.0)
        self.smoothing_kernel.setSuffix(" mm")
        self.smoothing_apply_button = QtWidgets.QPushButton("Smooth whole segment")
        self.smoothing_apply_button.setProperty("primary", True)
        self.smoothing_apply_button.clicked.connect(self._on_smoothing_apply)
        layout.addWidget(self.smoothing_mode, 0, 0)
        layout.addWidget(self.smoothing_kernel, 0, 1)
        layout.addWidget(self.smoothing_apply_button, 1, 0, 1, 2)
        return page

    # -- behaviour -------------------------------------------------------------------------

    def choose(self, key: str) -> None:
        """Activate tool ``key`` (``"navigate"`` for none)."""
        if key not in self.buttons:
            return
        self._editing.set_effect(key)
        if key == "threshold":
            self._prepare_threshold()

    def refresh(self) -> None:
        """Follow the editing state: checked tool, its options, undo/redo availability."""
        key = self._editing.effect
        button = self.buttons.get(key)
        if button is not None and not button.isChecked():
            button.setChecked(True)
        has_case = self._editing.node is not None
        for tool, tool_button in self.buttons.items():
            tool_button.setEnabled(has_case or tool == "navigate")
        page = "brush" if key in ("paint", "erase") else key
        self.options.setCurrentWidget(self._pages.get(page, self._pages["navigate"]))
        self.undo_button.setEnabled(self._editing.can_undo())
        self.redo_button.setEnabled(self._editing.can_redo())
        if self.brush_slider.value() != round(self._editing.brush_mm):
            blocked = self.brush_slider.blockSignals(True)
            self.brush_slider.setValue(round(self._editing.brush_mm))
            self.brush_slider.blockSignals(blocked)
        self.brush_label.setText(f"{self._editing.brush_mm:.0f} mm")
        self._show_lock_hint()

    def _show_lock_hint(self) -> None:
        editing = self._editing
        index = editing.active_index
        locked = editing.node is not None and index >= 0 and editing.is_locked(index)
        if locked and editing.effect != "navigate":
            name = editing.segments[index].name
            self.lock_hint.setText(f"“{name}” is locked: unlock it to edit.")
        self.lock_hint.setVisible(locked and editing.effect != "navigate")

    def change_brush(self, steps: int) -> None:
        """Make the brush larger (``steps`` > 0) or smaller by :data:`BRUSH_STEP` per step."""
        self._editing.set_brush_mm(self._editing.brush_mm * BRUSH_STEP**steps)

    def _on_brush_changed(self, value: int) -> None:
        self.brush_label.setText(f"{value} mm")
        self._editing.set_brush_mm(float(value))

    def _threshold_effect(self):
        effect = self._editing.active_effect()
        return effect if self._editing.effect == "threshold" else None

    def _prepare_threshold(self) -> None:
        """Fit the sliders to the image; a new case starts from Otsu's threshold."""
        if self._editing.node is None:
            return
        if self._threshold_case is not self._editing.node:
            self._threshold_case = self._editing.node
            low, high = self._editing.image_range()
            for slider in (self.threshold_low_slider, self.threshold_high_slider):
                blocked = slider.blockSignals(True)
                slider.setRange(int(low), int(high) if high > low else int(low) + 1)
                slider.blockSignals(blocked)
            for box in (self.threshold_min, self.threshold_max):
                box.setRange(low, high if high > low else low + 1)
            self._on_threshold_auto()
        else:
            self._on_threshold_changed()

    def _on_threshold_slider(self, *_: object) -> None:
        low, high = self.threshold_low_slider.value(), self.threshold_high_slider.value()
        if self.sender() is self.threshold_low_slider and low > high:
            self.threshold_high_slider.setValue(low)
        elif self.sender() is self.threshold_high_slider and high < low:
            self.threshold_low_slider.setValue(high)
        self._set_threshold_boxes(
            self.threshold_low_slider.value(), self.threshold_high_slider.value()
        )
        self._on_threshold_changed()

    def _set_threshold_boxes(self, low: float, high: float) -> None:
        for box, value in ((self.threshold_min, low), (self.threshold_max, high)):
            blocked = box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(blocked)

    def _on_threshold_changed(self, *_: object) -> None:
        low, high = self.threshold_min.value(), self.threshold_max.value()
        for slider, value in ((self.threshold_low_slider, low), (self.threshold_high_slider, high)):
            blocked = slider.blockSignals(True)
            slider.setValue(round(value))
            slider.blockSignals(blocked)
        effect = self._threshold_effect()
        if effect is not None:
            effect.set_threshold_min_max_values((low, high))
            self.threshold_pulse.restart()

    def _on_threshold_auto(self) -> None:
        effect = self._threshold_effect()
        if effect is None:
            return
        self._set_threshold_boxes(*self._editing.otsu_range())
        self._on_threshold_changed()

    def _on_threshold_apply(self) -> None:
        effect = self._threshold_effect()
        if effect is not None:
            self._on_threshold_changed()
            effect.apply()

    def _islands(self, what: str) -> None:
        effect = self._editing.active_effect()
        if self._editing.effect != "islands" or effect is None:
            return
        if what == "keep":
            effect.keep_largest_island()
        else:
            effect.remove_small_islands(self.island_size.value())

    def _on_smoothing_apply(self) -> None:
        from trame_slicer.segmentation.segmentation_effect_smoothing import SmoothingEffectMode

        effect = self._editing.active_effect()
        if self._editing.effect != "smoothing" or effect is None:
            return
        modes = [
            SmoothingEffectMode.MEDIAN,
            SmoothingEffectMode.CLOSING,
            SmoothingEffectMode.OPENING,
            SmoothingEffectMode.GAUSSIAN,
        ]
        mode = modes[self.smoothing_mode.currentIndex()]
        size = self.smoothing_kernel.value()
        effect.set_kernel_size(size)
        effect.set_standard_deviation(size / 2.0)
        effect.set_smoothing_mode(mode)
        effect.apply_smoothing()


def register_tool_shortcuts(window: QtWidgets.QWidget, panel: EditToolsPanel) -> None:
    """Single-key shortcuts for the tools, active anywhere in ``window``."""
    for key, shortcut in panel.shortcuts():
        action = QtGui.QShortcut(QtGui.QKeySequence(shortcut), window)
        action.activated.connect(lambda k=key: panel.choose(k))
    for steps, keys in zip((-1, 1), BRUSH_KEYS, strict=True):
        action = QtGui.QShortcut(QtGui.QKeySequence(keys), window)
        action.activated.connect(lambda s=steps: panel.change_brush(s))
