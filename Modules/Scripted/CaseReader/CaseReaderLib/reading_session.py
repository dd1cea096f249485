"""One reader working through one batch: the cases, where the reader is, what is finished.

Plain Python (no Qt, no MRML): the reading window shows it and calls it; it records progress in
the core's :class:`~CaseIteratorCoreLib.progress_store.BatchProgress`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from CaseIteratorCoreLib.batch_file import BatchDefinition
from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.progress_store import (
    BatchProgress,
    CaseProgress,
    CaseStatus,
    ProgressStore,
)
from CaseIteratorCoreLib.sources.base import BatchSource

#: Statuses that mean the reader is finished with a case.
FINISHED = (CaseStatus.DONE, CaseStatus.SKIPPED)


@dataclass
class ReadingSession:
    """A batch, its cases and one reader's progress in it.

    Parameters
    ----------
    batch
        The batch definition (segment templates, output).
    source
        Its source (the loader fetches images through it).
    cases
        The cases, in batch order.
    progress
        The reader's progress in this batch.
    """

    batch: BatchDefinition
    source: BatchSource
    cases: Sequence[Case]
    progress: BatchProgress
    current_index: int = -1
    #: The reading order (batch indices) when it is not the batch's, e.g. worst agreement
    #: first in comparison mode; Next and Previous follow it.
    order: Sequence[int] | None = None

    @classmethod
    def open(
        cls,
        batch: BatchDefinition,
        source: BatchSource,
        cases: Sequence[Case],
        store: ProgressStore,
        reader: str,
    ) -> ReadingSession:
        """A session for ``reader`` on ``batch`` (progress kept in ``store``)."""
        return cls(batch, source, tuple(cases), store.for_batch(batch.key, reader))

    @property
    def reader(self) -> str:
        """The reader's name."""
        return self.progress.reader

    @property
    def count(self) -> int:
        """Number of cases."""
        return len(self.cases)

    @property
    def current_case(self) -> Case | None:
        """The case on screen, or None before the first."""
        if 0 <= self.current_index < len(self.cases):
            return self.cases[self.current_index]
        return None

    def case_progress(self, index: int) -> CaseProgress:
        """The reader's progress on case ``index``."""
        return self.progress.get(self.cases[index].id)

    def status(self, index: int) -> CaseStatus:
        """Status of case ``index``."""
        return self.case_progress(index).status

    def statuses(self) -> list[CaseStatus]:
        """Status of every case, in order (one database read)."""
        known = self.progress.all()
        return [known[c.id].status if c.id in known else CaseStatus.TODO for c in self.cases]

    def finished_count(self) -> int:
        """Cases done or skipped."""
        return sum(status in FINISHED for status in self.statuses())

    def resume_index(self) -> int:
        """Where to start: the first case not finished (the last case when all are)."""
        for index, status in enumerate(self.statuses()):
            if status not in FINISHED:
                return index
        return max(0, len(self.cases) - 1)

    def next_unfinished_index(self, after: int, finishing: Collection[str] = ()) -> int | None:
        """The first unfinished case after ``after`` (wrapping around), or None when all are.

        ``finishing`` are ids of cases being saved: they count as finished.
        """
        statuses = self.statuses()
        order = self.reading_order()
        start = order.index(after) if after in order else -1
        for offset in range(1, len(order) + 1):
            index = order[(start + offset) % len(order)]
            if statuses[index] not in FINISHED and self.cases[index].id not in finishing:
                return index
        return None

    def reading_order(self) -> list[int]:
        """Batch indices in the order the reader goes through them."""
        if self.order is None:
            return list(range(len(self.cases)))
        return list(self.order)

    def neighbour(self, step: int) -> int | None:
        """The case ``step`` places after (negative: before) the current one in the reading
        order, or None when there is none."""
        order = self.reading_order()
        if self.current_index not in order:
            return None
        position = order.index(self.current_index) + step
        return order[position] if 0 <= position < len(order) else None

    def has_previous(self) -> bool:
        """Whether there is a case before the current one (in the reading order)."""
        return self.neighbour(-1) is not None

    def has_next(self) -> bool:
        """Whether there is a case after the current one (in the reading order)."""
        return self.neighbour(1) is not None
