"""Window/level presets a reader picks with one click or one key.

CT presets are in Hounsfield units (the values most reading rooms use). "Auto" is the window the
case was loaded with: the DICOM header's, or the 1st-99th percentile of the voxels (computed off
the GUI thread by the loader), which is the right choice for MR, whose intensities have no unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WindowPreset:
    """A named window.

    Attributes
    ----------
    key
        Stable identifier (``"soft-tissue"``).
    label
        What the reader sees.
    center, width
        Window centre and width; None for "Auto" (the case's own window).
    shortcut
        Keyboard shortcut, shown in the tooltip.
    """

    key: str
    label: str
    center: float | None
    width: float | None
    shortcut: str

    @property
    def is_auto(self) -> bool:
        """Whether this is the case's own window."""
        return self.center is None

    def tooltip(self) -> str:
        """Tooltip text with the values and the shortcut."""
        values = (
            "the case's own window" if self.is_auto else f"W {self.width:g} / L {self.center:g}"
        )
        return f"{self.label}: {values} ({self.shortcut})"


AUTO = WindowPreset("auto", "Auto", None, None, "1")
SOFT_TISSUE = WindowPreset("soft-tissue", "Soft tissue", 40.0, 400.0, "2")
LUNG = WindowPreset("lung", "Lung", -600.0, 1500.0, "3")
BONE = WindowPreset("bone", "Bone", 400.0, 1800.0, "4")
BRAIN = WindowPreset("brain", "Brain", 40.0, 80.0, "5")

#: Every preset, in toolbar order.
PRESETS: tuple[WindowPreset, ...] = (AUTO, SOFT_TISSUE, LUNG, BONE, BRAIN)


def presets_for(modality: str | None) -> tuple[WindowPreset, ...]:
    """The presets that make sense for ``modality``: HU presets only for CT (and unknown)."""
    if modality and modality.upper() not in ("CT", ""):
        return (AUTO,)
    return PRESETS


def apply_window(display_node: Any, center: float, width: float) -> None:
    """Set a scalar volume display node's window (auto window/level off: no histogram)."""
    was = display_node.StartModify()
    display_node.AutoWindowLevelOff()
    display_node.SetWindowLevel(float(width), float(center))
    display_node.EndModify(was)


def apply_preset(
    display_node: Any, preset: WindowPreset, case_window: tuple[float, float] | None
) -> None:
    """Apply ``preset``; "Auto" uses ``case_window`` (centre, width) when there is one."""
    if preset.is_auto:
        if case_window is None:
            return
        apply_window(display_node, case_window[0], case_window[1])
        return
    assert preset.center is not None and preset.width is not None
    apply_window(display_node, preset.center, preset.width)


def current_window(display_node: Any) -> tuple[float, float]:
    """``(centre, width)`` of a display node."""
    return float(display_node.GetLevel()), float(display_node.GetWindow())
