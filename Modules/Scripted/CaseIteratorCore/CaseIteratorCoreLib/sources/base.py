"""The :class:`BatchSource` interface every input mode implements."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from typing import ClassVar

from ..batch_file import BatchDefinition
from ..cases import Case, ImageRef, SkippedItem
from ..tasks import CancelToken, ProgressCallback, no_progress


class BatchSource(abc.ABC):
    """Lists the cases of a batch and makes their images available as local files.

    One subclass per input mode (CSV table, DICOM folder, local DICOM database, Slicer DICOM
    database, DICOMweb server). Cases come lazily from :meth:`iter_cases`, in a stable order;
    :meth:`locate` turns an image reference into one whose files are on this machine (a no-op
    for local sources, a download for network ones), so loading and checking are shared.

    Parameters
    ----------
    batch
        The batch definition whose ``source`` spec this source reads (already key-checked by
        :meth:`from_batch`).
    """

    #: The ``[source] type`` this class implements.
    type: ClassVar[str]

    def __init__(self, batch: BatchDefinition) -> None:
        self.batch = batch
        self._skipped: list[SkippedItem] = []

    @classmethod
    @abc.abstractmethod
    def from_batch(cls, batch: BatchDefinition) -> BatchSource:
        """Check the ``[source]`` keys of ``batch`` and build the source.

        Raises
        ------
        BatchDefinitionError
            Naming the bad key, its line and the fix.
        """

    @abc.abstractmethod
    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        """Yield the cases in batch order; files and series left out go to :attr:`skipped`."""

    def locate(
        self,
        ref: ImageRef,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImageRef:
        """Return a reference whose files are local (local sources return ``ref`` unchanged)."""
        return ref

    @property
    def skipped(self) -> list[SkippedItem]:
        """Files and series left out so far, each with the reason."""
        return list(self._skipped)

    def _skip(self, path: object, reason: str) -> None:
        self._skipped.append(SkippedItem(str(path), reason))

    def describe(self) -> str:
        """One line naming the source for headers and logs (never holds secrets)."""
        return f"{self.type} {self.batch.source.options.get('path', '')}".strip()

    def close(self) -> None:  # noqa: B027 - optional hook for sources holding connections
        """Release connections and files; the default has nothing to release."""

    def __enter__(self) -> BatchSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unique_id(wanted: str, taken: set[str]) -> str:
    """Return ``wanted`` or ``wanted-2``, ``wanted-3``... so ids stay unique and stable."""
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}-{n}"
    taken.add(candidate)
    return candidate


def safe_stem(text: str) -> str:
    """Make ``text`` usable as a file name stem on every platform."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return stem or "case"
