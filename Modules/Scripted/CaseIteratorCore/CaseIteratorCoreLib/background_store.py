"""Storing received DICOM files on a writer thread, so that the network and the disk work at once.

A retrieval hands each received file to :meth:`BackgroundStore.put` and goes back to the
socket; the writer thread stores what has queued up, in batches
(:meth:`.dicom_database.LocalDicomDatabase.store_files`: written, synced, then indexed). The
queue is capped in bytes, so a disk slower than the link slows the download instead of filling
memory. Leaving the ``with`` block, for whatever reason, stores what was queued (a retry after a
cut fetches only the rest; a cancelled retrieval drops it) and joins the thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING

from .tasks import CancelToken, check_cancel

if TYPE_CHECKING:
    from .dicom_database import LocalDicomDatabase

#: Bytes waiting for the writer before ``put`` blocks (about 64 slices of 512x512x16 bit): the
#: socket keeps being read through an fsync round (8 MB queues stalled a 1 Gbit/s link: 2.2 s
#: against 1.7 s for 150 MB); memory is taken before the case's volume is decoded, not beside.
MAX_QUEUED_BYTES = 32 * 2**20
#: Bytes the writer takes per batch at most: one fsync round and one index transaction (each
#: round costs a journal commit, so fewer and larger rounds are faster).
BATCH_BYTES = 32 * 2**20


class BackgroundStore:
    """A writer thread that stores received DICOM files in a local database.

    Parameters
    ----------
    database
        Where to store.
    only
        SOPInstanceUIDs to store (the missing ones); others are skipped. None stores all.
    max_queued_bytes
        Cap of the queue; :meth:`put` waits while it is full.
    cancel
        Checked by the writer before each batch (a prefetcher's token also holds the writer
        while the reader switches cases); once cancelled, what is still queued is dropped.

    Raises
    ------
    DicomDatabaseError, OSError, OperationCancelled
        From :meth:`put` or on leaving the ``with`` block, when the writer failed (an instance
        that cannot be stored, a full disk) or was cancelled; what was queued before it is
        stored.
    """

    def __init__(
        self,
        database: LocalDicomDatabase,
        *,
        only: Collection[str] | None = None,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        cancel: CancelToken | None = None,
    ) -> None:
        self._database = database
        self._cancel = cancel
        self._only = only
        self._max_queued = max_queued_bytes
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._closing = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        #: Instances stored so far (read from any thread for progress).
        self.stored = 0
        self._thread = threading.Thread(target=self._run, name="dicom-store-writer", daemon=True)
        self._thread.start()

    def put(self, content: bytes) -> None:
        """Queue one received file; waits while the queue is full.

        Raises
        ------
        DicomDatabaseError, OSError
            The writer's failure, as soon as it happened.
        """
        with self._changed:
            while (
                self._error is None
                and self._queue
                and self._queued_bytes + len(content) > self._max_queued
            ):
                self._changed.wait()
            if self._error is not None:
                raise self._error
            self._queue.append(content)
            self._queued_bytes += len(content)
            self._changed.notify_all()

    def close(self) -> int:
        """Store what is queued, stop the writer; returns the number of instances stored.

        Raises
        ------
        DicomDatabaseError, OSError
            When the writer failed.
        """
        self._finish()
        if self._error is not None:
            raise self._error
        return self.stored

    def _finish(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def __enter__(self) -> BackgroundStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._finish()  # keep what arrived; the caller's exception wins
        else:
            self.close()

    def _take(self) -> list[bytes] | None:
        """The next batch (whatever is queued, up to BATCH_BYTES); None when done."""
        with self._changed:
            while not self._queue and not self._closing:
                self._changed.wait()
            if not self._queue:
                return None
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0]) <= BATCH_BYTES):
                content = self._queue.popleft()
                size += len(content)
                batch.append(content)
            self._queued_bytes -= size
            self._changed.notify_all()
            return batch

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                check_cancel(self._cancel)
                stored = self._database.store_files(batch, only=self._only)
                del batch  # the bytes go as soon as they are on disk
                with self._changed:
                    self.stored += stored
        except BaseException as exc:  # handed to the retrieving thread
            with self._changed:
                self._error = exc
                self._queue.clear()
                self._queued_bytes = 0
                self._changed.notify_all()
        finally:
            self._database.release_thread()


__all__ = ["BATCH_BYTES", "MAX_QUEUED_BYTES", "BackgroundStore"]
