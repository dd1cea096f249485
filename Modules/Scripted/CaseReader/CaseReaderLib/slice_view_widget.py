"""A Qt widget showing one trame-slicer slice view: offscreen VTK render, blitted as an image.

Why not ``QVTKRenderWindowInteractor``: trame-slicer initialises its render windows offscreen,
and embedding them natively segfaults (DESIGN.md); a native GL widget also cannot be grabbed
for screenshots. Here VTK renders offscreen (EGL works with no X server, under
``QT_QPA_PLATFORM=offscreen`` too), the pixels are read back into a ``QImage`` and painted;
Qt's mouse, wheel and key events are forwarded to the view's VTK interactor, so Slicer's own
interaction (slice scrolling, window/level, zoom, pan, segment editor effects) works unchanged.

Rendering happens only when needed: trame-slicer's render requests become ``QWidget.update()``
calls, which Qt coalesces into one paint per event-loop turn, and a hidden or minimised widget
does not paint at all.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np
from Qt import QtCore, QtGui, QtWidgets
from trame_slicer.views.render_scheduler import ScheduledRenderStrategy

from .orientation_labels import EdgeLabels, edge_labels

_BUTTON_EVENTS = {
    QtCore.Qt.MouseButton.LeftButton: ("LeftButtonPressEvent", "LeftButtonReleaseEvent"),
    QtCore.Qt.MouseButton.MiddleButton: ("MiddleButtonPressEvent", "MiddleButtonReleaseEvent"),
    QtCore.Qt.MouseButton.RightButton: ("RightButtonPressEvent", "RightButtonReleaseEvent"),
}

# Qt keys to the X11 key symbols VTK's interactor styles test for.
_KEY_SYMBOLS = {
    QtCore.Qt.Key.Key_Left: "Left",
    QtCore.Qt.Key.Key_Right: "Right",
    QtCore.Qt.Key.Key_Up: "Up",
    QtCore.Qt.Key.Key_Down: "Down",
    QtCore.Qt.Key.Key_PageUp: "Prior",
    QtCore.Qt.Key.Key_PageDown: "Next",
    QtCore.Qt.Key.Key_Home: "Home",
    QtCore.Qt.Key.Key_End: "End",
    QtCore.Qt.Key.Key_Escape: "Escape",
    QtCore.Qt.Key.Key_Delete: "Delete",
    QtCore.Qt.Key.Key_Backspace: "BackSpace",
    QtCore.Qt.Key.Key_Space: "space",
}

_TEXT_COLOR = QtGui.QColor("#e6e9ed")
_SHADOW_COLOR = QtGui.QColor(0, 0, 0, 200)
_LETTER_COLOR = QtGui.QColor("#f2c14e")
_PLACEHOLDER_COLOR = QtGui.QColor("#8a929c")


class _QtRenderRequest(ScheduledRenderStrategy):
    """trame-slicer's render requests become (coalesced) repaints of the Qt widget."""

    def __init__(self, widget: SliceViewWidget) -> None:
        super().__init__()
        self._widget = weakref.ref(widget)

    def schedule_render(self) -> None:
        widget = self._widget()
        if widget is not None:
            widget.request_render()


class SliceViewWidget(QtWidgets.QWidget):
    """One slice view (axial, sagittal or coronal) of the reading window.

    Parameters
    ----------
    name
        View name shown in its corner (``"Axial"``).
    view
        The trame-slicer ``SliceView`` (rendering offscreen).
    slice_logic
        Its ``vtkMRMLSliceLogic`` (slice index and window/level for the corner text).
    color
        The view's colour (Slicer's red/yellow/green), used for its name marker.
    parent
        Parent widget.

    Signals
    -------
    frame_rendered(float)
        Seconds the last VTK render and pixel read-back took.
    """

    frame_rendered = QtCore.Signal(float)

    def __init__(
        self,
        name: str,
        view: Any,
        slice_logic: Any,
        color: str,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        from vtkmodules.vtkCommonCore import vtkUnsignedCharArray

        self.setObjectName(f"sliceView{name}")
        self.name = name
        self._view = view
        self._slice_logic = slice_logic
        self._color = QtGui.QColor(color)
        self._pixels = vtkUnsignedCharArray()
        self._frame: QtGui.QImage | None = None
        self._dirty = True
        self._rendering = False
        self._wheel_remainder = 0
        self._placeholder = ""
        #: Number of VTK renders done (tests, measurements).
        self.render_count = 0
        #: Seconds taken by the last VTK render and read-back.
        self.last_render_seconds = 0.0
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMouseTracking(True)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(120, 120)
        self.setCursor(QtCore.Qt.CursorShape.CrossCursor)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding
        )
        view.set_scheduled_render(_QtRenderRequest(self))

    # -- public API ------------------------------------------------------------------------

    @property
    def view(self) -> Any:
        """The trame-slicer ``SliceView``."""
        return self._view

    def request_render(self) -> None:
        """Mark the image stale and schedule a repaint (coalesced by Qt)."""
        if self._rendering:
            return  # VTK modified events raised by the render itself
        self._dirty = True
        self.update()

    def set_placeholder(self, text: str) -> None:
        """Text shown instead of the image (e.g. while the first case loads); "" to clear."""
        self._placeholder = text
        self.update()

    def render_now(self) -> QtGui.QImage:
        """Render immediately and return the new frame (tests, screenshots)."""
        self._render_frame()
        self.repaint()
        return self.frame()

    def frame(self) -> QtGui.QImage:
        """The last rendered frame (a copy; a null image before the first render)."""
        return QtGui.QImage(self._frame) if self._frame is not None else QtGui.QImage()

    def frame_array(self) -> np.ndarray:
        """The last frame as an ``(height, width, 3)`` uint8 array (tests)."""
        image = self.frame().convertToFormat(QtGui.QImage.Format.Format_RGB888)
        if image.isNull():
            return np.zeros((0, 0, 3), dtype=np.uint8)
        pointer = image.constBits()
        array = np.frombuffer(pointer, dtype=np.uint8, count=image.sizeInBytes())
        return array.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
            image.height(), image.width(), 3
        )

    def grab_composited(self) -> QtGui.QImage:
        """The widget as shown (frame plus corner text), for screenshots."""
        if self._dirty:
            self._render_frame()
        return self.grab().toImage()

    # -- rendering -------------------------------------------------------------------------

    def _pixel_size(self) -> tuple[int, int]:
        ratio = self.devicePixelRatioF()
        return max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio))

    def _sync_size(self) -> None:
        width, height = self._pixel_size()
        if tuple(self._view.render_window().GetSize()) != (width, height):
            # Resizes the render window and the slice node (keeping mm per pixel isotropic).
            self._view.update_size(width, height)

    def _render_frame(self) -> None:
        from vtk.util.numpy_support import vtk_to_numpy

        started = time.perf_counter()
        self._sync_size()
        width, height = self._pixel_size()
        self._rendering = True
        try:
            self._view.render()
            window = self._view.render_window()
            window.GetRGBACharPixelData(0, 0, width - 1, height - 1, 0, self._pixels)
        finally:
            self._rendering = False
        pixels = vtk_to_numpy(self._pixels)
        if pixels.size != width * height * 4:
            return
        buffer = np.ascontiguousarray(pixels.reshape(height, width, 4)[::-1])
        image = QtGui.QImage(
            buffer.data, width, height, width * 4, QtGui.QImage.Format.Format_RGBX8888
        ).copy()  # own the pixels: ``buffer`` is freed when this method returns
        image.setDevicePixelRatio(self.devicePixelRatioF())
        self._frame = image
        self._dirty = False
        self.render_count += 1
        self.last_render_seconds = time.perf_counter() - started
        self.frame_rendered.emit(self.last_render_seconds)

    # -- Qt events -------------------------------------------------------------------------

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        if self._dirty and not self._placeholder and self.isVisible():
            self._render_frame()
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), QtGui.QColor("#000000"))
        if self._placeholder:
            self._paint_placeholder(painter)
        elif self._frame is not None:
            painter.drawImage(0, 0, self._frame)
            self._paint_overlay(painter)
        painter.end()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._sync_size()
        self.request_render()

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        self.request_render()

    def _interactor(self) -> Any:
        return self._view.interactor()

    def _set_mouse_info(self, event: QtGui.QMouseEvent | QtGui.QWheelEvent, repeat: int = 0):
        ratio = self.devicePixelRatioF()
        position = event.position()
        modifiers = event.modifiers()
        interactor = self._interactor()
        interactor.SetEventInformationFlipY(
            round(position.x() * ratio),
            round(position.y() * ratio),
            int(bool(modifiers & QtCore.Qt.KeyboardModifier.ControlModifier)),
            int(bool(modifiers & QtCore.Qt.KeyboardModifier.ShiftModifier)),
            "\0",
            repeat,
        )
        interactor.SetAltKey(int(bool(modifiers & QtCore.Qt.KeyboardModifier.AltModifier)))
        return interactor

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        names = _BUTTON_EVENTS.get(event.button())
        if names is None:
            return
        self.setFocus(QtCore.Qt.FocusReason.MouseFocusReason)
        getattr(self._set_mouse_info(event), names[0])()
        event.accept()

    def mouseDoubleClickEvent(self, event: QtGui.QMouseEvent) -> None:
        names = _BUTTON_EVENTS.get(event.button())
        if names is None:
            return
        # VTK reads a press with a repeat count as a double click (Slicer: reset window/level).
        getattr(self._set_mouse_info(event, repeat=1), names[0])()
        event.accept()

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:
        names = _BUTTON_EVENTS.get(event.button())
        if names is None:
            return
        getattr(self._set_mouse_info(event), names[1])()
        event.accept()

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        self._set_mouse_info(event).MouseMoveEvent()
        event.accept()

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        # Touchpads send small deltas: one VTK wheel event per notch (120) accumulated.
        delta = event.angleDelta()
        shift = bool(event.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        # Some platforms turn Shift+wheel into a horizontal wheel; Shift+wheel sizes the brush.
        self._wheel_remainder += delta.y() if delta.y() or not shift else delta.x()
        interactor = self._set_mouse_info(event)
        while abs(self._wheel_remainder) >= 120:
            if self._wheel_remainder > 0:
                interactor.MouseWheelForwardEvent()
                self._wheel_remainder -= 120
            else:
                interactor.MouseWheelBackwardEvent()
                self._wheel_remainder += 120
        event.accept()

    def enterEvent(self, event: QtGui.QEnterEvent) -> None:
        super().enterEvent(event)
        self._interactor().EnterEvent()

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        super().leaveEvent(event)
        self._interactor().LeaveEvent()

    def _forward_key(self, event: QtGui.QKeyEvent, press: bool) -> bool:
        symbol = _KEY_SYMBOLS.get(QtCore.Qt.Key(event.key()))
        text = event.text()
        if symbol is None and not (len(text) == 1 and text.isprintable()):
            return False
        modifiers = event.modifiers()
        interactor = self._interactor()
        interactor.SetKeyEventInformation(
            int(bool(modifiers & QtCore.Qt.KeyboardModifier.ControlModifier)),
            int(bool(modifiers & QtCore.Qt.KeyboardModifier.ShiftModifier)),
            text[:1] if text else "\0",
            int(event.isAutoRepeat()),
            symbol or text,
        )
        if press:
            interactor.KeyPressEvent()
            interactor.CharEvent()
        else:
            interactor.KeyReleaseEvent()
        return True

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if not self._forward_key(event, True):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QtGui.QKeyEvent) -> None:
        if not self._forward_key(event, False):
            super().keyReleaseEvent(event)

    # -- overlay ---------------------------------------------------------------------------

    def edge_labels(self) -> EdgeLabels:
        """The patient-direction letters at the view's edges."""
        matrix = self._view.get_view_node().GetSliceToRAS()
        values = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        return edge_labels(values)

    def slice_position(self) -> tuple[int, int] | None:
        """``(slice number from 1, number of slices)`` of the shown volume, or None."""
        low, high = self._view.get_slice_range()
        step = self._view.get_slice_step()
        if not step or self._slice_logic.GetBackgroundLayer().GetVolumeNode() is None:
            return None
        count = round((high - low) / step) + 1
        number = round((self._view.get_slice_value() - low) / step) + 1
        return min(max(number, 1), count), count

    def _window_text(self) -> str:
        volume = self._slice_logic.GetBackgroundLayer().GetVolumeNode()
        display = volume.GetDisplayNode() if volume is not None else None
        if display is None:
            return ""
        return f"W {display.GetWindow():.0f}   L {display.GetLevel():.0f}"

    @staticmethod
    def _text(
        painter: QtGui.QPainter,
        rect: QtCore.QRectF,
        flags: int,
        text: str,
        color: QtGui.QColor = _TEXT_COLOR,
    ) -> None:
        # A soft shadow keeps the text readable over bright bone and contrast.
        painter.setPen(_SHADOW_COLOR)
        painter.drawText(rect.translated(1, 1), flags, text)
        painter.setPen(color)
        painter.drawText(rect, flags, text)

    def _paint_name(self, painter: QtGui.QPainter) -> tuple[QtCore.QRectF, QtGui.QFont]:
        """The view's name with its colour marker, top left; returns the overlay's area and
        its (small) font."""
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        area = QtCore.QRectF(self.rect()).adjusted(8, 6, -8, -6)
        small = QtGui.QFont(self.font())
        small.setPointSizeF(max(9.0, self.font().pointSizeF() - 0.5))
        painter.setFont(small)
        metrics = painter.fontMetrics()
        marker = QtCore.QRectF(area.left(), area.top() + metrics.height() / 2 - 4, 8, 8)
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(self._color)
        painter.drawRoundedRect(marker, 2, 2)
        flags = int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)
        self._text(painter, area.adjusted(14, 0, 0, 0), flags, self.name)
        return area, small

    def _paint_overlay(self, painter: QtGui.QPainter) -> None:
        painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing)
        area, small = self._paint_name(painter)
        align = QtCore.Qt.AlignmentFlag
        position = self.slice_position()
        if position is not None:
            self._text(
                painter,
                area,
                int(align.AlignLeft | align.AlignBottom),
                f"Slice {position[0]} / {position[1]}",
            )
        self._text(painter, area, int(align.AlignRight | align.AlignBottom), self._window_text())
        # Patient directions at the middle of each edge.
        letters = self.edge_labels()
        bold = QtGui.QFont(small)
        bold.setBold(True)
        bold.setPointSizeF(small.pointSizeF() + 1)
        painter.setFont(bold)
        edges = QtCore.QRectF(self.rect()).adjusted(6, 4, -6, -4)
        for flags, letter in (
            (align.AlignLeft | align.AlignVCenter, letters.left),
            (align.AlignRight | align.AlignVCenter, letters.right),
            (align.AlignHCenter | align.AlignTop, letters.top),
            (align.AlignHCenter | align.AlignBottom, letters.bottom),
        ):
            self._text(painter, edges, int(flags), letter, _LETTER_COLOR)

    def _paint_placeholder(self, painter: QtGui.QPainter) -> None:
        painter.setPen(_PLACEHOLDER_COLOR)
        painter.drawText(self.rect(), int(QtCore.Qt.AlignmentFlag.AlignCenter), self._placeholder)
