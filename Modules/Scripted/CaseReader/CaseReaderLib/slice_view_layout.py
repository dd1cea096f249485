"""The three slice views arranged for reading: axial large, sagittal and coronal beside it."""

from __future__ import annotations

from Qt import QtWidgets

from .reading_scene import SLICE_VIEWS, ReadingScene
from .slice_view_widget import SliceViewWidget


class SliceViewLayout(QtWidgets.QWidget):
    """Axial on the left (two thirds), sagittal above coronal on the right.

    Attributes
    ----------
    views
        The :class:`SliceViewWidget` of each view by name.
    """

    def __init__(self, scene: ReadingScene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.views: dict[str, SliceViewWidget] = {}
        for name, color in SLICE_VIEWS:
            self.views[name] = SliceViewWidget(
                name, scene.views[name], scene.slice_logic(name), color, self
            )
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        grid.addWidget(self.views["Axial"], 0, 0, 2, 1)
        grid.addWidget(self.views["Sagittal"], 0, 1)
        grid.addWidget(self.views["Coronal"], 1, 1)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)

    def set_placeholder(self, text: str) -> None:
        """Show ``text`` in every view instead of the image ("" to show images again)."""
        for view in self.views.values():
            view.set_placeholder(text)

    def render_all(self) -> None:
        """Render every view now (a case switch is measured up to here)."""
        for view in self.views.values():
            view.render_now()
