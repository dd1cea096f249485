"""How each case status looks in the case list: icon and words."""

from __future__ import annotations

from Qt import QtGui

from CaseIteratorCoreLib.progress_store import CaseStatus

from .style import icon

#: Words shown for each status (tooltips, counters).
STATUS_LABELS: dict[CaseStatus, str] = {
    CaseStatus.TODO: "To do",
    CaseStatus.IN_PROGRESS: "In progress",
    CaseStatus.DONE: "Done",
    CaseStatus.SKIPPED: "Skipped",
    CaseStatus.FAILED: "Could not be opened",
}


def status_icon(status: CaseStatus) -> QtGui.QIcon:
    """The case-list icon of ``status`` (Resources/icons/status-*.svg)."""
    return icon(f"status-{status.value}")
