"""Giving memory that was freed back to the system after a case is retrieved or decoded.

glibc's ``malloc`` serves blocks up to its (adaptive, up to 32 MB) mmap threshold from per-thread
arenas and keeps them when they are freed. Loading a case allocates many such blocks on worker
threads (received files of ~0.5 MB, each file read again and decoded slice by slice): without
a trim every worker's arena keeps its high-water mark, and the process holds tens to hundreds of
MB above the cases it really has. ``malloc_trim(0)`` returns the free pages of every arena,
and importing this module caps the arenas at :data:`ARENA_MAX` (``$MALLOC_ARENA_MAX`` wins).

Elsewhere (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable

#: ``mallopt`` parameter: most arenas threads may get (glibc's default is 8 per core).
_M_ARENA_MAX = -8
#: Arenas allowed: the GUI thread and the workers share them. Each arena keeps its own free
#: memory and fragments on its own; the workers' big blocks are few, so sharing costs nothing.
ARENA_MAX = 2


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


_LIBC = _glibc()
_MALLOC_TRIM: Callable[[int], int] | None = _LIBC.malloc_trim if _LIBC is not None else None
if _LIBC is not None and "MALLOC_ARENA_MAX" not in os.environ:  # the user's choice wins
    # Set on import, before the loaders' threads exist (it applies to arenas made later).
    _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (a few ms; call off the GUI thread)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


__all__ = ["release_free_memory"]
