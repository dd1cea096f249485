"""The look of the reading application: Fusion style, a dark palette, the QSS and the icons.

Colours live in ``Resources/style/caseiterator.qss``; the palette here only matches it for the
few things Qt draws without the style sheet (dialog backgrounds, disabled text, links).
"""

from __future__ import annotations

from functools import cache

from Qt import QtGui, QtWidgets

from CaseIteratorResources import resource_path

#: Window title and application name.
APP_TITLE = "CaseIterator"

_PALETTE = {
    "Window": "#1b1e22",
    "WindowText": "#e3e6ea",
    "Base": "#16191c",
    "AlternateBase": "#23272c",
    "ToolTipBase": "#2d3238",
    "ToolTipText": "#e3e6ea",
    "Text": "#e3e6ea",
    "Button": "#2d3238",
    "ButtonText": "#e3e6ea",
    "BrightText": "#ffffff",
    "Highlight": "#2f5f86",
    "HighlightedText": "#ffffff",
    "Link": "#6fb1e4",
    "PlaceholderText": "#6b737d",
}


def style_sheet() -> str:
    """The application's style sheet (Resources/style/caseiterator.qss), icon paths filled in."""
    text = resource_path("style", "caseiterator.qss").read_text(encoding="utf-8")
    return text.replace("@ICONS@", resource_path("icons").as_posix())


@cache
def icon(name: str) -> QtGui.QIcon:
    """An icon of Resources/icons by name (``"tool-paint"``); cached."""
    return QtGui.QIcon(str(resource_path("icons", f"{name}.svg")))


@cache
def logo() -> QtGui.QIcon:
    """The CaseIterator logo."""
    return QtGui.QIcon(str(resource_path("branding", "logo.svg")))


def apply_style(app: QtWidgets.QApplication) -> None:
    """Give ``app`` the CaseIterator look: Fusion, the dark palette, the style sheet, the icon."""
    app.setStyle("Fusion")
    palette = QtGui.QPalette()
    for role, color in _PALETTE.items():
        palette.setColor(getattr(QtGui.QPalette.ColorRole, role), QtGui.QColor(color))
    disabled = QtGui.QPalette.ColorGroup.Disabled
    for role in ("WindowText", "Text", "ButtonText"):
        palette.setColor(disabled, getattr(QtGui.QPalette.ColorRole, role), QtGui.QColor("#5d656e"))
    app.setPalette(palette)
    app.setStyleSheet(style_sheet())
    app.setWindowIcon(logo())
