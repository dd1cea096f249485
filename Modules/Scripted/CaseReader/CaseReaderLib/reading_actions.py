"""The reading window's commands with their keyboard shortcuts (shown in every tooltip).

SlicerCaseIterator readers know Ctrl+N (next) and Ctrl+P (previous); they keep working here.
"""

from __future__ import annotations

from dataclasses import dataclass

from Qt import QtCore, QtGui, QtWidgets

from .style import icon


@dataclass(frozen=True)
class ActionSpec:
    """A command: name, text, icon, shortcuts, what it does."""

    key: str
    text: str
    icon: str | None
    shortcuts: tuple[str, ...]
    tip: str


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("previous", "Previous", "nav-previous", ("Ctrl+P",), "Go to the previous case"),
    ActionSpec("next", "Next", "nav-next", ("Ctrl+N",), "Go to the next case without saving"),
    ActionSpec("skip", "Skip…", "nav-skip", ("Ctrl+K",), "Skip this case, giving a reason"),
    ActionSpec("save", "Save", "save", ("Ctrl+S",), "Save the segmentation; the case is done"),
    ActionSpec(
        "save_next",
        "Save && Next",
        "save-next",
        ("Ctrl+Return", "Ctrl+Enter"),
        "Save the segmentation and open the next case",
    ),
    ActionSpec("undo", "Undo", "undo", ("Ctrl+Z",), "Undo the last edit"),
    ActionSpec("redo", "Redo", "redo", ("Ctrl+Y", "Ctrl+Shift+Z"), "Redo the undone edit"),
    ActionSpec("reset_views", "Reset views", "reset-view", ("Ctrl+0",), "Fit the views again"),
    ActionSpec(
        "view_3d",
        "3D view",
        None,
        ("Ctrl+3",),
        "Show the segments' surfaces in 3D (slow on computers without a graphics card)",
    ),
)

#: Actions that switch something on and off.
CHECKABLE = frozenset({"view_3d"})


def shortcut_text(shortcuts: tuple[str, ...]) -> str:
    """The first shortcut as the platform writes it (Ctrl+N, ⌘N)."""
    if not shortcuts:
        return ""
    sequence = QtGui.QKeySequence(shortcuts[0])
    return sequence.toString(QtGui.QKeySequence.SequenceFormat.NativeText)


def make_actions(window: QtWidgets.QWidget) -> dict[str, QtGui.QAction]:
    """Create the actions on ``window`` (shortcuts work anywhere in it); keyed by name."""
    actions: dict[str, QtGui.QAction] = {}
    for spec in ACTIONS:
        action = QtGui.QAction(spec.text, window)
        if spec.icon:
            action.setIcon(icon(spec.icon))
        action.setShortcuts([QtGui.QKeySequence(s) for s in spec.shortcuts])
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(spec.key in CHECKABLE)
        keys = shortcut_text(spec.shortcuts)
        action.setToolTip(f"{spec.tip} ({keys})" if keys else spec.tip)
        window.addAction(action)
        actions[spec.key] = action
    return actions
