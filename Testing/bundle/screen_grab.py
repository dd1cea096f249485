"""Grab an X display (Xvfb) from outside the application under test.

``python screen_grab.py OUT.png`` with ``DISPLAY`` set writes the whole screen as PNG and the
same pixels as ``OUT.npy`` (rows x columns x RGB, uint8). ``load_rgb`` reads a PNG back.
Run with the venv's Python (PySide6); the application grabbed is the frozen bundle.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def image_to_rgb(image) -> np.ndarray:
    """A QImage as a (rows, columns, 3) uint8 array."""
    from PySide6 import QtGui

    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    rows, cols, stride = image.height(), image.width(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=rows * stride)
    return data.reshape(rows, stride)[:, : cols * 3].reshape(rows, cols, 3).copy()


def load_rgb(path: Path) -> np.ndarray:
    """A PNG file as a (rows, columns, 3) uint8 array."""
    from PySide6 import QtGui

    image = QtGui.QImage(str(path))
    if image.isNull():
        raise FileNotFoundError(f"cannot read the image {path}")
    return image_to_rgb(image)


def save_rgb(array: np.ndarray, path: Path) -> None:
    """Write a (rows, columns, 3) uint8 array as PNG."""
    from PySide6 import QtGui

    array = np.ascontiguousarray(array, dtype=np.uint8)
    rows, cols = array.shape[:2]
    image = QtGui.QImage(array.data, cols, rows, cols * 3, QtGui.QImage.Format.Format_RGB888)
    if not image.copy().save(str(path)):
        raise OSError(f"cannot write {path}")


def grab(out: Path) -> np.ndarray:
    """Grab the whole screen of ``$DISPLAY``; write ``out`` (PNG) and ``out.npy``."""
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    from PySide6 import QtGui

    app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication(sys.argv[:1])
    screen = app.primaryScreen()
    pixmap = screen.grabWindow(0)
    if pixmap.isNull():
        raise RuntimeError(f"could not grab the screen of DISPLAY={os.environ.get('DISPLAY')}")
    rgb = image_to_rgb(pixmap.toImage())
    pixmap.save(str(out))
    np.save(out.with_suffix(".npy"), rgb)
    return rgb


if __name__ == "__main__":
    shape = grab(Path(sys.argv[1])).shape
    print(f"{sys.argv[1]}: {shape[1]}x{shape[0]}")
