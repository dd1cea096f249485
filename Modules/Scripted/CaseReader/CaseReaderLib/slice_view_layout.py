"""The slice views arranged for reading: axial large, sagittal and coronal beside it.

An optional 3D view (segment surfaces; off by default) joins the right column when shown.
"""

from __future__ import annotations

from Qt import QtWidgets

from .reading_scene import SLICE_VIEWS, ReadingScene
from .slice_view_widget import SliceViewWidget
from .three_d_view_widget import ThreeDViewWidget


class SliceViewLayout(QtWidgets.QWidget):
    """Axial on the left (two thirds), sagittal above coronal on the right.

    Attributes
    ----------
    views
        The :class:`SliceViewWidget` of each view by name.
    three_d
        The 3D view's widget once it was shown (:meth:`set_3d_visible`), else None.
    """

    def __init__(self, scene: ReadingScene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = scene
        self.three_d: ThreeDViewWidget | None = None
        self.views: dict[str, SliceViewWidget] = {}
        for name, color in SLICE_VIEWS:
            self.views[name] = SliceViewWidget(
                name, scene.views[name], scene.slice_logic(name), color, self
            )
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(4)
        self._grid.setColumnStretch(0, 2)
        self._grid.setColumnStretch(1, 1)
        self._arrange(False)

    def _arrange(self, with_3d: bool) -> None:
        grid = self._grid
        rows = 3 if with_3d else 2
        grid.addWidget(self.views["Axial"], 0, 0, rows, 1)
        grid.addWidget(self.views["Sagittal"], 0, 1)
        grid.addWidget(self.views["Coronal"], 1, 1)
        if self.three_d is not None:
            if with_3d:
                grid.addWidget(self.three_d, 2, 1)
            else:
                grid.removeWidget(self.three_d)
            self.three_d.setVisible(with_3d)
        for row in range(3):
            grid.setRowStretch(row, 1 if row < rows else 0)

    @property
    def is_3d_visible(self) -> bool:
        """Whether the 3D view is shown."""
        return self.three_d is not None and not self.three_d.isHidden()

    def set_3d_visible(self, visible: bool) -> None:
        """Show the 3D view under sagittal and coronal, or hide it (made on first show).

        Segment surfaces are computed only while the editor is asked to (see
        ``SegmentEditing.set_surfaces_visible``); the 3D view renders only while shown.
        """
        first = visible and self.three_d is None
        if first:
            self.three_d = ThreeDViewWidget(self._scene.three_d_view(), self)
        if self.three_d is None:
            return
        self._arrange(visible)
        if first:
            # Surfaces are made on the first render: fit the camera to them after it.
            self.three_d.render_now()
            self.three_d.view.fit_view_to_content()
        if visible:
            self.three_d.request_render()

    def set_placeholder(self, text: str) -> None:
        """Show ``text`` in every view instead of the image ("" to show images again)."""
        for view in self._all_views():
            view.set_placeholder(text)

    def render_all(self) -> None:
        """Render every view now (a case switch is measured up to here)."""
        for view in self._all_views():
            view.render_now()

    def _all_views(self) -> list[SliceViewWidget]:
        shown_3d = [self.three_d] if self.three_d is not None and self.is_3d_visible else []
        return [*self.views.values(), *shown_3d]
