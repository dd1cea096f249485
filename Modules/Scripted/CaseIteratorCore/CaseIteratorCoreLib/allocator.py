"""Giving memory that was freed back to the system after a case is retrieved or decoded.

glibc's ``malloc`` serves blocks up to its (adaptive, up to 32 MB) mmap threshold from per-thread
arenas and keeps them when they are freed. Loading a case allocates many such blocks on worker
threads (received files of ~0.5 MB, each file read again and decoded slice by slice): without
a trim every worker's arena keeps its high-water mark, and the process holds tens to hundreds of
MB above the cases it really has. ``malloc_trim(0)`` returns the free pages of every arena.

Elsewhere (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (a few ms; call off the GUI thread)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


__all__ = ["release_free_memory"]
