"""Local DICOM database batches: the series of a database made by ``caseiterator import``.

Example::

    [source]
    type = "dicom-db"
    path = "~/.local/share/CaseIterator/dicom-db"   # the database folder

    [source.query]                  # optional, QIDO-RS style; all must match
    Modality = "CT"
    StudyDate = "20250101-20251231"
    StudyDescription = "*abdomen*"

    [source.series]                 # optional: which series of a study is the case
    per_study = "largest"

``uid_list = "uids.csv"`` (optional, as for a DICOMweb batch) keeps only the studies and series
named in a CSV table with a ``StudyInstanceUID`` and an optional ``SeriesInstanceUID`` column
(a row without a series takes the whole study); the DICOM browser writes such batches.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..batch_file import BatchDefinition
from ..cases import Case
from ..dicom_database import DicomDatabaseError, LocalDicomDatabase
from ..errors import BatchDefinitionError
from ..series_selection import SeriesRule, SeriesSummary
from ..tasks import CancelToken, ProgressCallback, check_cancel, no_progress
from .base import BatchSource
from .series_cases import case_from_series, select_image_series

KEYS = ("path", "series", "query", "uid_list")
#: The ``[source.query]`` filters (QIDO-RS keywords, as for a DICOMweb batch).
QUERY_KEYS = ("Modality", "StudyDate", "StudyDescription", "AccessionNumber", "PatientID")

_DATE = re.compile(r"^(\d{8}|\d{8}-\d{8}|\d{8}-|-\d{8})$")


class DicomDatabaseSource(BatchSource):
    """Every image series of a local DICOM database, filtered by ``[source.query]`` and chosen
    by ``[source.series]``.

    The same images give the same cases (ids, names, order) as a ``dicom-folder`` batch on the
    folder they were imported from. Series that are not images or not selected are listed in
    :attr:`skipped` with the reason. The instances are local files, so :meth:`locate` is the
    default no-op. The database is opened read-only.
    """

    type = "dicom-db"

    def __init__(
        self,
        batch: BatchDefinition,
        database: LocalDicomDatabase,
        rule: SeriesRule,
        query: Mapping[str, str] | None = None,
        uid_list: Path | None = None,
    ) -> None:
        super().__init__(batch)
        self.uid_list = uid_list
        self.database = database
        self.folder = database.folder
        self.rule = rule
        self.query = dict(query or {})
        self._series: list[SeriesSummary] | None = None
        #: (study, series) rows of the uid list that the database does not hold.
        self._not_found: list[tuple[str, str]] = []

    @classmethod
    def from_batch(cls, batch: BatchDefinition) -> DicomDatabaseSource:
        spec = batch.source
        spec.check_keys(KEYS)
        folder = spec.path("path", must_exist=False)
        assert folder is not None
        query = spec.options.get("query", {})
        if not isinstance(query, dict):
            raise spec.error("query", "query must be a table: write [source.query].")
        spec.check_keys(QUERY_KEYS, table="query")
        for key, value in query.items():
            if not isinstance(value, str):
                raise spec.error(
                    f"query.{key}",
                    f"{key} must be a string, got {value!r}.",
                    fix=f'write {key} = "..." (quoted).',
                )
            if key == "StudyDate" and value and not _DATE.match(value):
                raise spec.error(
                    "query.StudyDate",
                    f"StudyDate {value!r} is not a date or a date range.",
                    fix='write "YYYYMMDD", "YYYYMMDD-YYYYMMDD", "YYYYMMDD-" or "-YYYYMMDD".',
                )
        rule = SeriesRule.from_spec(spec)
        uid_list = spec.path("uid_list", required=False)
        try:
            database = LocalDicomDatabase(folder, readonly=True)
        except DicomDatabaseError as exc:
            raise spec.error(
                "path",
                f"{folder}: {exc.reason}",
                fix=f"run 'caseiterator import FOLDER --db {folder}' first (FOLDER holding the "
                "DICOM files), or point path at the database folder.",
            ) from exc
        return cls(batch, database, rule, query, uid_list)

    def describe(self) -> str:
        return f"DICOM database {self.folder}"

    def scan(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> list[SeriesSummary]:
        """The series matching the query, in batch order (cached)."""
        if self._series is None:
            check_cancel(cancel)
            progress(0, None, "reading the database")
            self._series = self.database.series_summaries(self.query)
            if self.uid_list is not None:
                self._series = self._listed(self._series)
            progress(len(self._series), len(self._series), "database read")
        return self._series

    def _listed(self, summaries: list[SeriesSummary]) -> list[SeriesSummary]:
        """The series the uid_list names (a row without a series names its whole study)."""
        assert self.uid_list is not None
        with self.uid_list.open(newline="", encoding="utf-8-sig") as handle:
            rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in
                    csv.DictReader(handle)]  # fmt: skip
        wanted = {(r.get("studyinstanceuid", ""), r.get("seriesinstanceuid", "")) for r in rows}
        kept = [
            s
            for s in summaries
            if (s.study_uid, s.series_uid) in wanted or (s.study_uid, "") in wanted
        ]
        found = {(s.study_uid, s.series_uid) for s in kept} | {(s.study_uid, "") for s in kept}
        self._not_found = sorted(w for w in wanted if w[0] and w not in found)
        return kept

    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        summaries = self.scan(progress, cancel)
        self._skipped.clear()
        for study, series in self._not_found:
            what = f"series {series} of study {study}" if series else f"study {study}"
            self._skip(self.uid_list, f"{what} is not in the DICOM database")
        chosen = select_image_series(summaries, self.rule, self._skip, _series_path)
        if not summaries and self.uid_list is not None:
            raise BatchDefinitionError(
                self.uid_list,
                f"none of the studies and series it lists is in the DICOM database {self.folder}.",
                fix=f"import them with 'caseiterator import FOLDER --db {self.folder}' (or "
                "retrieve them again), or list other series.",
            )
        if not summaries:
            matching = (
                " matching " + ", ".join(f"{k}={v}" for k, v in self.query.items())
                if self.query
                else ""
            )
            raise BatchDefinitionError(
                self.folder,
                f"the DICOM database holds no series{matching}.",
                fix=f"import images with 'caseiterator import FOLDER --db {self.folder}'"
                + (", or widen [source.query]." if self.query else "."),
            )
        for index, summary in enumerate(chosen):
            yield case_from_series(summary, index, str(self.folder))

    def count(self) -> int:
        """Number of cases."""
        return sum(1 for _ in self.iter_cases())

    def close(self) -> None:
        self.database.close()


def _series_path(summary: SeriesSummary) -> Path:
    return summary.files[0].parent if summary.files else Path()


__all__ = ["QUERY_KEYS", "DicomDatabaseSource"]
