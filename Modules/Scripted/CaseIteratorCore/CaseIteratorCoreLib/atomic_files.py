"""Files written whole or not at all: a result, an outbox item or a cached instance is never
seen half-written, whatever moment the process is killed at.

Every writer writes a temporary file beside the target (``.<name>.<random>.partial``), flushes
and fsyncs it, then renames or links it into place; the folder is fsynced so the rename itself
survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Suffix of temporary files; a kill can leave them behind, and cleaners look for it.
PARTIAL_SUFFIX = ".partial"


def temp_beside(target: Path, content: bytes, *, mode: int = 0o644) -> Path:
    """Write ``content`` to a synced temporary file in ``target``'s folder; return its path."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    # os.open rather than mkstemp: mkstemp makes 0600 files, shared folders need 0644.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def replace_file(
    target: Path, content: bytes, *, mode: int = 0o644, sync_folder: bool = True
) -> None:
    """Replace (or create) ``target`` atomically with ``content``.

    ``sync_folder=False`` leaves the folder fsync to the caller (batches of files).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_beside(target, content, mode=mode)
    try:
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync_folder:
        fsync_folder(target.parent)


def create_file(target: Path, content: bytes, *, mode: int = 0o644) -> None:
    """Write a new file complete or not at all.

    Raises
    ------
    FileExistsError
        When ``target`` exists: it is never overwritten.
    """
    temp = temp_beside(target, content, mode=mode)
    try:
        try:
            os.link(temp, target)  # fails if the target exists
        except FileExistsError:
            raise
        except OSError:
            # File systems without hard links (some network shares): exclusive create instead.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        temp.unlink(missing_ok=True)
    fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Sync a folder's entries (a rename is durable only then); no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
