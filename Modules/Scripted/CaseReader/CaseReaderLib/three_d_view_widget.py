"""The optional 3D view in Qt: the slice-view widget's blitting and mouse forwarding, no slices.

Left-drag rotates, right-drag zooms, middle-drag pans (VTK's camera interaction, as in Slicer).
"""

from __future__ import annotations

from typing import Any

from Qt import QtCore, QtGui, QtWidgets

from .slice_view_widget import SliceViewWidget

#: Colour of the 3D view's marker (Slicer's 3D views are blue-grey).
THREE_D_COLOR = "#8aa6c1"


class ThreeDViewWidget(SliceViewWidget):
    """Shows trame-slicer's ``ThreeDView`` (segment surfaces) rendered offscreen.

    Parameters
    ----------
    view
        The ``ThreeDView`` of :meth:`.reading_scene.ReadingScene.three_d_view`.
    """

    def __init__(self, view: Any, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("3D", view, None, THREE_D_COLOR, parent)
        self.setObjectName("threeDView")
        self.setCursor(QtCore.Qt.CursorShape.OpenHandCursor)

    def slice_position(self) -> tuple[int, int] | None:
        """A 3D view has no slices."""
        return None

    def _paint_overlay(self, painter: QtGui.QPainter) -> None:
        # Only the view's name and marker: no slice number, window or patient directions.
        self._paint_name(painter)
