"""Render the SVG logo to a square PNG icon: ``render_icon.py LOGO.svg OUT.png SIZE``."""

from __future__ import annotations

import sys

from PySide6 import QtCore, QtGui, QtSvg


def render(svg: str, out: str, size: int) -> None:
    """Write ``svg`` rendered at ``size`` x ``size`` pixels (transparent background) to ``out``."""
    QtGui.QGuiApplication.instance() or QtGui.QGuiApplication([])
    renderer = QtSvg.QSvgRenderer(svg)
    if not renderer.isValid():
        raise SystemExit(f"render_icon: {svg} is not a valid SVG file")
    image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32)
    image.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(image)
    renderer.render(painter)
    painter.end()
    if not image.save(out):
        raise SystemExit(f"render_icon: cannot write {out}")


if __name__ == "__main__":
    render(sys.argv[1], sys.argv[2], int(sys.argv[3]))
