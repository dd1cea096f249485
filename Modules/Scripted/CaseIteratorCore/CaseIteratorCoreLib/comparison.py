"""Comparison mode: agreement between the segmentations a batch names for each case.

For every case, each segmentation of the batch's ``[compare]`` table is compared with the
reference one, segment by segment (:func:`.comparison_metrics.match_segments`), with the
metrics of :mod:`.comparison_metrics`. The same API serves the command line and the reading
app:

* :func:`compare_case` compares one case (the case on screen);
* :func:`iter_comparisons` yields the cases of a batch in order, computed by a pool of
  background workers (``concurrent.futures``) a few cases ahead; it takes a progress callback
  and a :class:`~.tasks.CancelToken`;
* :class:`ComparisonJob` runs that in a background thread and calls back per case (for a UI,
  which moves the results to its GUI thread itself);
* :func:`summarize`, :func:`csv_rows` and :func:`report_json` make the per-segment summary
  (mean, median, worst case), one CSV row per case and segment, and JSON.

A bad case never stops the batch: it comes back with its problems and no rows.
"""

from __future__ import annotations

import csv
import io
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batch_file import CompareSpec, SegmentTemplate
from .cases import Case
from .comparison_inputs import LoadedSegmentation, image_grid, load_segmentations
from .comparison_metrics import MatchedBy, SegmentMetrics, match_segments, segment_metrics
from .errors import CaseIteratorError, OperationCancelled
from .problems import Problem, ProblemCode, has_errors
from .sources.base import BatchSource
from .tasks import CancelToken, ProgressCallback, check_cancel, no_progress

#: Metrics summarised per segment, and which way is worse.
SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("dice", "low"),
    ("jaccard", "low"),
    ("hd95_mm", "high"),
    ("hd_max_mm", "high"),
    ("msd_mm", "high"),
    ("volume_diff_ml", "abs"),
)

#: Source types whose connection is not shared between threads (see :func:`iter_comparisons`).
SHARED_CONNECTION_SOURCES = ("dicomweb", "dicom-db", "slicer-db")

#: Columns of the CSV, one row per case, compared segmentation and segment.
CSV_COLUMNS = (
    "case_id",
    "case_name",
    "segment",
    "code",
    "matched_by",
    "reference",
    "other",
    "dice",
    "jaccard",
    "hd95_mm",
    "hd_max_mm",
    "msd_mm",
    "volume_reference_ml",
    "volume_other_ml",
    "volume_diff_ml",
    "voxels_reference",
    "voxels_other",
    "empty",
    "resampled",
)


@dataclass(frozen=True)
class SegmentComparison:
    """One segment of one case: the reference against one other segmentation."""

    segment: str
    code: str | None
    matched_by: MatchedBy
    reference: str
    other: str
    metrics: SegmentMetrics


@dataclass(frozen=True, eq=False)
class CaseComparison:
    """The comparison of one case.

    Parameters
    ----------
    case
        The case.
    found
        ``name -> where`` of each segmentation read (file or SEG series).
    segments
        One entry per compared segmentation and segment (empty when the case could not be
        compared).
    problems
        What went wrong or should be looked at (missing, unreadable, off-grid segmentations).
    resampled
        Names of the segmentations resampled onto the image grid.
    seconds
        Time spent on the case (reading and computing).
    """

    case: Case
    found: dict[str, str] = field(default_factory=dict)
    segments: tuple[SegmentComparison, ...] = ()
    problems: tuple[Problem, ...] = ()
    resampled: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the case was compared (there are metrics and no error)."""
        return bool(self.segments) and not has_errors(list(self.problems))

    @property
    def worst_dice(self) -> float | None:
        """The lowest Dice of the case (to sort cases by disagreement); None if not compared."""
        return min((s.metrics.dice for s in self.segments), default=None)


def compare_loaded(
    reference: LoadedSegmentation, other: LoadedSegmentation
) -> list[SegmentComparison]:
    """Compare two segmentations on the same grid, segment by segment.

    A segment present on one side only is compared with an empty mask (Dice 0, distances
    undefined), so a segment a model missed counts as a miss.
    """
    ref_seg, other_seg = reference.segmentation, other.segmentation
    geometry = ref_seg.geometry
    results = []
    for pair in match_segments(ref_seg.segments, other_seg.segments):
        a = ref_seg.mask(pair.reference_index) if pair.reference_index is not None else None
        b = other_seg.mask(pair.other_index) if pair.other_index is not None else None
        if a is None:
            assert b is not None
            a = np.zeros_like(b)
        if b is None:
            b = np.zeros_like(a)
        results.append(
            SegmentComparison(
                segment=pair.name,
                code=pair.code,
                matched_by=pair.matched_by,
                reference=reference.name,
                other=other.name,
                metrics=segment_metrics(a, b, geometry),
            )
        )
    return results


def compare_case(
    source: BatchSource,
    case: Case,
    spec: CompareSpec,
    *,
    templates: Sequence[SegmentTemplate] | None = None,
    cancel: CancelToken | None = None,
    source_lock: AbstractContextManager[Any] | None = None,
) -> CaseComparison:
    """Compare the segmentations ``spec`` names for ``case`` with its reference.

    Parameters
    ----------
    source
        The batch's source (to find and fetch the image header and the segmentations).
    case
        The case.
    spec
        The batch's ``[compare]`` table.
    templates
        Names and codes of labelmap values; the batch's ``[[segments]]`` when None.
    cancel
        Stops the work at the next check (raises :class:`~.errors.OperationCancelled`).
    source_lock
        Held while the source is used, when several workers share one source (a database or
        server connection is not shared between threads).

    Returns
    -------
    CaseComparison
        Never raises for a bad case: problems are in the result.
    """
    started = time.perf_counter()
    if templates is None:
        templates = source.batch.segments
    lock = source_lock or nullcontext()
    problems = list(case.problems)
    if has_errors(problems):
        return CaseComparison(case, problems=tuple(problems))
    with lock:
        grid, info, found = image_grid(source, case, cancel)
        problems += found
        loaded: list[LoadedSegmentation] = []
        if grid is not None:
            loaded, found = load_segmentations(
                source, case, spec, grid, info, templates=templates, cancel=cancel
            )
            problems += found
    return compare_segmentations(
        case, spec, loaded, problems, grid_found=grid is not None, started=started, cancel=cancel
    )


def compare_segmentations(
    case: Case,
    spec: CompareSpec,
    loaded: Sequence[LoadedSegmentation],
    problems: Sequence[Problem] = (),
    *,
    grid_found: bool = True,
    started: float | None = None,
    cancel: CancelToken | None = None,
) -> CaseComparison:
    """Compare segmentations already read onto the case's image grid (see :func:`compare_case`).

    The reading app reads them itself (it shows them too) and calls this in its worker.

    Parameters
    ----------
    case
        The case.
    spec
        The batch's ``[compare]`` table (names and the reference).
    loaded
        The segmentations found, on the image grid (:func:`.comparison_inputs.load_segmentations`).
    problems
        What reading them reported (kept in the result).
    grid_found
        Whether the image grid was known (else no "reference missing" is added).
    started
        ``time.perf_counter()`` when the case's work began (for ``seconds``).
    cancel
        Stops the work between segmentations.
    """
    started = time.perf_counter() if started is None else started
    problems = list(problems)
    by_name = {item.name: item for item in loaded}
    reference = by_name.get(spec.reference)
    segments: list[SegmentComparison] = []
    if grid_found and reference is None and not any(spec.reference in p.message for p in problems):
        problems.append(
            Problem(ProblemCode.MISSING_FILE, f"the reference {spec.reference!r} is missing")
        )
    if reference is not None:
        for name in spec.names[1:]:
            check_cancel(cancel)
            other = by_name.get(name)
            if other is None:
                continue
            try:
                segments += compare_loaded(reference, other)
            except ValueError as exc:  # a sheared grid
                problems.append(Problem(ProblemCode.MASK_GEOMETRY_MISMATCH, f"{name}: {exc}"))
    if reference is not None and not segments and len(loaded) < 2 and not problems:
        problems.append(
            Problem(
                ProblemCode.MISSING_FILE,
                f"only {spec.reference!r} was found: nothing to compare it with",
            )
        )
    return CaseComparison(
        case,
        found={item.name: item.where for item in loaded},
        segments=tuple(segments),
        problems=tuple(problems),
        resampled=tuple(item.name for item in loaded if item.resampled),
        seconds=time.perf_counter() - started,
    )


def _failed(case: Case, exc: Exception) -> CaseComparison:
    return CaseComparison(
        case,
        problems=(Problem(ProblemCode.UNREADABLE_FILE, f"{type(exc).__name__}: {exc}"),),
    )


def iter_comparisons(
    source: BatchSource,
    spec: CompareSpec,
    cases: Iterable[Case] | None = None,
    *,
    templates: Sequence[SegmentTemplate] | None = None,
    workers: int = 2,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Iterator[CaseComparison]:
    """Compare the cases of a batch in background workers; yield the results in batch order.

    Parameters
    ----------
    source
        The batch's source; sources holding a connection (:data:`SHARED_CONNECTION_SOURCES`)
        are used by one worker at a time, files are read in parallel; the metrics are always
        computed in parallel.
    spec
        The batch's ``[compare]`` table.
    cases
        The cases (all of the source's, listed lazily, when None).
    templates
        Names and codes of labelmap values; the batch's ``[[segments]]`` when None.
    workers
        Background threads; at most ``2 * workers`` cases are in flight.
    progress
        Called after each case: ``(done, total or None, case name)``.
    cancel
        Stops listing and computing; the iterator then raises
        :class:`~.errors.OperationCancelled`.
    """
    listed = source.iter_cases(cancel=cancel) if cases is None else iter(cases)
    total = _count(source) if cases is None else len(cases) if isinstance(cases, Sequence) else None
    # Sources holding a connection (SQLite, HTTP session) are used by one worker at a time;
    # files (CSV cells, a scanned DICOM folder) are read in parallel.
    lock: AbstractContextManager[Any] = (
        threading.Lock() if source.type in SHARED_CONNECTION_SOURCES else nullcontext()
    )
    pending: deque[tuple[Case, Future[CaseComparison]]] = deque()
    done = 0

    def work(case: Case) -> CaseComparison:
        check_cancel(cancel)
        try:
            return compare_case(
                source, case, spec, templates=templates, cancel=cancel, source_lock=lock
            )
        except OperationCancelled:
            raise
        except Exception as exc:  # a bug or an odd file in one case must not stop the batch
            return _failed(case, exc)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="compare") as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * max(1, workers):
                    check_cancel(cancel)
                    with lock:  # listing uses the source too
                        case = next(listed, None)
                    if case is None:
                        exhausted = True
                        break
                    pending.append((case, pool.submit(work, case)))
                if not pending:
                    break
                case, future = pending.popleft()
                result = future.result()
                done += 1
                progress(done, total, case.name)
                yield result
        finally:
            for _, future in pending:
                future.cancel()


def _count(source: BatchSource) -> int | None:
    count = getattr(source, "count", None)
    if count is None or source.type == "dicomweb":  # a server query may list thousands
        return None
    try:
        return int(count())
    except CaseIteratorError:
        return None


class ComparisonJob:
    """A batch comparison running in a background thread, calling back per case.

    Parameters
    ----------
    source, spec, cases, templates, workers
        As :func:`iter_comparisons`.
    on_case
        Called with each :class:`CaseComparison` in batch order, from the background thread.
    on_done
        Called once at the end with None, or the exception that stopped the job
        (:class:`~.errors.OperationCancelled` after :meth:`cancel`).
    on_progress
        A progress callback ``(done, total, message)``, from the background thread.
    """

    def __init__(
        self,
        source: BatchSource,
        spec: CompareSpec,
        *,
        on_case: Callable[[CaseComparison], None],
        on_done: Callable[[BaseException | None], None] | None = None,
        on_progress: ProgressCallback = no_progress,
        cases: Sequence[Case] | None = None,
        templates: Sequence[SegmentTemplate] | None = None,
        workers: int = 2,
    ) -> None:
        self._args = (source, spec, cases)
        self._templates = templates
        self._workers = workers
        self._on_case = on_case
        self._on_done = on_done
        self._on_progress = on_progress
        self._cancel = CancelToken()
        self._thread = threading.Thread(target=self._run, name="comparison", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ComparisonJob:
        """Start the background thread; returns self."""
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._cancel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end; returns whether the job has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        source, spec, cases = self._args
        try:
            for result in iter_comparisons(
                source,
                spec,
                cases,
                templates=self._templates,
                workers=self._workers,
                progress=self._on_progress,
                cancel=self._cancel,
            ):
                self._on_case(result)
        except BaseException as exc:  # handed to on_done: the thread must not die silently
            self.error = exc
        if self._on_done is not None:
            self._on_done(self.error)


# --------------------------------------------------------------------------------------------
# Summary, CSV and JSON
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one segment over the cases: mean, median and the worst case.

    ``count`` values were defined; ``undefined`` cases had no value (one mask empty).
    """

    mean: float | None
    median: float | None
    worst: float | None
    worst_case: str | None
    count: int
    undefined: int


@dataclass(frozen=True)
class SegmentSummary:
    """The summary of one segment for one compared segmentation (against the reference)."""

    segment: str
    reference: str
    other: str
    cases: int
    metrics: dict[str, MetricSummary]


def _summary(values: list[tuple[float | None, str]], worse: str) -> MetricSummary:
    defined = [(v, case) for v, case in values if v is not None]
    if not defined:
        return MetricSummary(None, None, None, None, 0, len(values))
    numbers = [v for v, _ in defined]
    key = {"low": lambda p: p[0], "high": lambda p: -p[0], "abs": lambda p: -abs(p[0])}[worse]
    worst_value, worst_case = min(defined, key=key)
    return MetricSummary(
        mean=statistics.fmean(numbers),
        median=statistics.median(numbers),
        worst=worst_value,
        worst_case=worst_case,
        count=len(defined),
        undefined=len(values) - len(defined),
    )


def summarize(results: Iterable[CaseComparison]) -> list[SegmentSummary]:
    """Per segment and compared segmentation: mean, median and worst case of each metric.

    Worst is the lowest Dice/Jaccard, the largest distance, the largest absolute volume
    difference. Undefined distances (one mask empty) are left out and counted.
    """
    groups: dict[tuple[str, str, str], list[tuple[SegmentComparison, str]]] = {}
    for result in results:
        for item in result.segments:
            key = (item.segment, item.reference, item.other)
            groups.setdefault(key, []).append((item, result.case.id))
    summaries = []
    for (segment, reference, other), items in groups.items():
        metrics = {
            name: _summary([(getattr(i.metrics, name), case) for i, case in items], worse)
            for name, worse in SUMMARY_METRICS
        }
        summaries.append(SegmentSummary(segment, reference, other, len(items), metrics))
    return summaries


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def csv_rows(results: Iterable[CaseComparison]) -> list[dict[str, Any]]:
    """One row per case, compared segmentation and segment (keys: :data:`CSV_COLUMNS`)."""
    rows = []
    for result in results:
        for item in result.segments:
            values = item.metrics.as_dict()
            row = {
                "case_id": result.case.id,
                "case_name": result.case.name,
                "segment": item.segment,
                "code": item.code or "",
                "matched_by": str(item.matched_by),
                "reference": item.reference,
                "other": item.other,
                **{k: _cell(values[k]) for k in CSV_COLUMNS if k in values},
                "resampled": "yes" if item.other in result.resampled else "",
            }
            rows.append({k: row.get(k, "") for k in CSV_COLUMNS})
    return rows


def write_csv(results: Iterable[CaseComparison], handle: io.TextIOBase | Any) -> int:
    """Write :func:`csv_rows` with a header to ``handle``; returns the number of rows."""
    rows = csv_rows(results)
    writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def report_json(results: Sequence[CaseComparison]) -> dict[str, Any]:
    """The whole comparison as JSON-ready data (undefined values as null, never NaN)."""
    return {
        "cases": [
            {
                "id": r.case.id,
                "name": r.case.name,
                "ok": r.ok,
                "found": dict(r.found),
                "resampled": list(r.resampled),
                "problems": [
                    {"code": str(p.code), "severity": str(p.severity), "message": p.message}
                    for p in r.problems
                ],
                "segments": [
                    {
                        "segment": s.segment,
                        "code": s.code,
                        "matched_by": str(s.matched_by),
                        "reference": s.reference,
                        "other": s.other,
                        **s.metrics.as_dict(),
                    }
                    for s in r.segments
                ],
                "seconds": round(r.seconds, 4),
            }
            for r in results
        ],
        "summary": [
            {
                "segment": s.segment,
                "reference": s.reference,
                "other": s.other,
                "cases": s.cases,
                "metrics": {name: vars(m) for name, m in s.metrics.items()},
            }
            for s in summarize(results)
        ],
    }


__all__ = [
    "CSV_COLUMNS",
    "CaseComparison",
    "ComparisonJob",
    "MetricSummary",
    "SegmentComparison",
    "SegmentSummary",
    "compare_case",
    "compare_loaded",
    "compare_segmentations",
    "csv_rows",
    "iter_comparisons",
    "report_json",
    "summarize",
    "write_csv",
]
