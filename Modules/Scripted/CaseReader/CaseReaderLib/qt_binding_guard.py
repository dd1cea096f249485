"""Guard against PySide6 6.12's reference-count bug on ``None`` (Python 3.11).

Measured here: with PySide6-Essentials 6.12.0 on CPython 3.11, every call of a void Qt method
(``QWidget.update()``, ``QLabel.setText()``...) leaves ``None`` with one reference fewer. After
~50,000 such calls (a few minutes of painting: each mouse move repaints) ``None``'s count
reaches zero and the interpreter aborts with "none_dealloc: deallocating None". PySide6 6.11.2
does not have the bug, and from Python 3.12 on ``None`` is immortal, so it cannot happen there.

The fix is to pin PySide6 6.11.2 (or run Python 3.12+). Until then, :func:`protect_none_refcount`
makes ``None`` effectively immortal, as Python 3.12 does: it adds 2**40 to its count, which no
session can use up.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

#: References added to ``None``: ~10**12 void calls before it could reach zero again.
_BALLAST = 1 << 40

_protected = False


def binding_leaks_none() -> bool:
    """Whether this interpreter and Qt binding have the ``None`` reference leak."""
    if sys.version_info >= (3, 12):
        return False  # None is immortal
    try:
        import PySide6
    except ImportError:
        return False
    major, minor = (int(part) for part in PySide6.__version__.split(".")[:2])
    return (major, minor) >= (6, 12)


def protect_none_refcount() -> bool:
    """Make ``None`` immortal when the binding leaks its references; True when applied.

    Idempotent. Checks that the count it raised is the one ``sys.getrefcount`` reports (the
    object header layout of this CPython build), and leaves it alone otherwise.
    """
    global _protected
    if _protected or not binding_leaks_none():
        return _protected
    refcount = ctypes.c_ssize_t.from_address(id(None))
    before = sys.getrefcount(None)
    if refcount.value not in (before, before - 1):  # not the ob_refcnt we expect
        log.warning("cannot guard None's reference count on this Python build")
        return False
    refcount.value += _BALLAST
    _protected = sys.getrefcount(None) >= before + _BALLAST - 16
    log.info("PySide6 None reference leak guarded (pin PySide6 6.11.2 to remove this)")
    return _protected
