"""One search API over the local DICOM database and each DICOMweb server (no Qt).

The DICOM browser asks the same questions of every place images live: which studies match
these filters (a page at a time), which patients they belong to, which series a study holds.
:class:`LocalDatabaseSearch` answers from the local DICOM database (:mod:`.dicom_database`),
:class:`DicomWebSearch` with QIDO-RS queries to a configured server; both return the same
plain records (:class:`StudyRow`, :class:`SeriesRow`, :class:`PatientRow`), so the browser
never knows which one it talks to.

Filters (:class:`SearchFilters`) follow what readers type, not QIDO-RS syntax:

- name and description match *anywhere* unless the text holds a wildcard (``*`` any run,
  ``?`` one character), in which case it matches as written; names match case-insensitively
  (as PACS do);
- the patient ID matches exactly unless it holds a wildcard;
- a date range has either end optional;
- modality keeps the studies that hold a series of that modality (``ModalitiesInStudy``).

Calls block (network, disk): run them off the GUI thread. Every call may raise
:class:`~.dicomweb_connection.ServerError` (a server: the message names it and what to check),
:class:`~.dicom_database.DicomDatabaseError` (the local database) or
:class:`SearchFilterError` (a filter that is not usable).
"""

from __future__ import annotations

import abc
import datetime as dt
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydicom.dataset import Dataset

from .dicom_database import INDEX_NAME, LocalDicomDatabase, default_database_dir
from .dicom_files import int_of, text_of
from .dicomweb_connection import open_client, server_errors
from .errors import CaseIteratorError
from .series_selection import SeriesSummary
from .server_settings import ServerSettings
from .tasks import CancelToken, check_cancel

#: Studies per page when the caller does not say.
DEFAULT_PAGE_SIZE = 50
#: Studies read at most to gather one page of patients from a server (QIDO-RS has no patients).
MAX_STUDIES_FOR_PATIENTS = 2000

_STUDY_FIELDS = [
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]
_SERIES_FIELDS = [
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesDate",
    "NumberOfSeriesRelatedInstances",
]
_WILDCARD = re.compile(r"[*?]")
_NAME_SEPARATORS = re.compile(r"[\^ ]+")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")

T = TypeVar("T")


class SearchFilterError(CaseIteratorError, ValueError):
    """A search filter cannot be used; the message names the field, the value and the fix."""


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientRow:
    """One patient among the studies found."""

    patient_id: str
    patient_name: str
    birth_date: str = ""
    n_studies: int = 0
    latest_study_date: str = ""


@dataclass(frozen=True)
class StudyRow:
    """One study as a search lists it."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None


@dataclass(frozen=True)
class SeriesRow:
    """One series of a study; ``files`` is filled for the local database only."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: int | None = None
    n_images: int | None = None
    series_date: str = ""
    files: tuple[Path, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of results: ``items`` from position ``offset``; ``has_more`` when more follow."""

    items: tuple[T, ...]
    offset: int = 0
    has_more: bool = False

    @property
    def next_offset(self) -> int:
        """The offset of the following page."""
        return self.offset + len(self.items)


# -- filters -------------------------------------------------------------------------------


def _as_date(value: str | dt.date | None, name: str) -> str:
    """``YYYYMMDD`` from a date, ``YYYYMMDD`` or ``YYYY-MM-DD``; ``""`` for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "").replace(".", "").replace("/", "")
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise SearchFilterError(
            f"{name} {value!r} is not a date; write it as YYYY-MM-DD (for example 2026-01-31)."
        ) from None
    return text


def contains(text: str) -> str:
    """``*text*`` unless ``text`` already holds a wildcard (then as written); ``""`` stays."""
    text = text.strip()
    if not text or _WILDCARD.search(text):
        return text
    return f"*{text}*"


@dataclass(frozen=True)
class SearchFilters:
    """What the reader typed in the browser's search fields (all optional).

    Parameters
    ----------
    patient_name
        Matches anywhere in the name, case-insensitively; ``*``/``?`` wildcards as written.
    patient_id
        Exact, unless it holds ``*`` or ``?``.
    date_from, date_to
        Study date range, either end open: a :class:`datetime.date`, ``YYYYMMDD`` or
        ``YYYY-MM-DD``.
    modality
        Studies holding a series of this modality (``CT``, ``MR``...).
    description
        Matches anywhere in the study description; wildcards as written.

    Raises
    ------
    SearchFilterError
        For a date that is not a date, a range that ends before it starts, or a modality that
        is not a DICOM modality code.
    """

    patient_name: str = ""
    patient_id: str = ""
    date_from: str | dt.date | None = None
    date_to: str | dt.date | None = None
    modality: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        low = _as_date(self.date_from, "the first date")
        high = _as_date(self.date_to, "the last date")
        if low and high and low > high:
            raise SearchFilterError(
                f"the date range ends ({high}) before it starts ({low}); swap the two dates."
            )
        modality = self.modality.strip().upper()
        if modality and not _MODALITY.match(modality):
            raise SearchFilterError(
                f"modality {self.modality!r} is not a DICOM modality code; use one such as CT, "
                "MR, PT or US."
            )
        object.__setattr__(self, "date_from", low)
        object.__setattr__(self, "date_to", high)
        object.__setattr__(self, "modality", modality)

    @property
    def date_range(self) -> str:
        """The QIDO-RS ``StudyDate`` value: ``""``, a day, or a range with optional ends."""
        low, high = str(self.date_from or ""), str(self.date_to or "")
        if not low and not high:
            return ""
        if low and low == high:
            return low
        return f"{low}-{high}"

    def study_query(self) -> dict[str, str]:
        """The QIDO-RS study-level filters (QIDO-RS keywords); empty ones are left out."""
        query = {
            "PatientName": contains(self.patient_name),
            "PatientID": self.patient_id.strip(),
            "StudyDate": self.date_range,
            "ModalitiesInStudy": self.modality,
            "StudyDescription": contains(self.description),
        }
        return {k: v for k, v in query.items() if v}

    def is_empty(self) -> bool:
        """Whether no filter is set (the search lists everything)."""
        return not self.study_query()


# -- the search interface --------------------------------------------------------------------


class DicomSearch(abc.ABC):
    """Searches one place images live: the local database or one DICOMweb server.

    Safe to call from worker threads; one call at a time per thread.
    """

    #: ``"local"`` or ``"dicomweb"``.
    kind: str = ""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short name for a tab ("This computer", the server's name)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the search goes, for messages (never holds secrets)."""

    @abc.abstractmethod
    def search_studies(
        self,
        filters: SearchFilters,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        cancel: CancelToken | None = None,
    ) -> Page[StudyRow]:
        """One page of the studies matching ``filters``, newest first on the local database
        (servers answer in their own order, stable between pages)."""

    @abc.abstractmethod
    def search_series(
        self,
        study_uid: str,
        *,
        modality: str = "",
        description: str = "",
        cancel: CancelToken | None = None,
    ) -> list[SeriesRow]:
        """The series of one study, by series number; optionally only one modality and/or
        those whose description matches (anywhere, or as written with wildcards)."""

    def search_patients(
        self,
        filters: SearchFilters,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        cancel: CancelToken | None = None,
    ) -> Page[PatientRow]:
        """One page of the patients who have a study matching ``filters``.

        Gathered from the study search (QIDO-RS has no patient level), reading at most
        :data:`MAX_STUDIES_FOR_PATIENTS` studies.
        """
        studies: list[StudyRow] = []
        page_offset, wanted = 0, offset + limit + 1
        while len(studies) < MAX_STUDIES_FOR_PATIENTS:
            page = self.search_studies(filters, page_offset, 200, cancel)
            studies.extend(page.items)
            if len(patients_of(studies)) >= wanted or not page.has_more:
                break
            page_offset = page.next_offset
        patients = patients_of(studies)
        return Page(
            tuple(patients[offset : offset + limit]), offset, len(patients) > offset + limit
        )

    def iter_studies(
        self, filters: SearchFilters, page_size: int = 200, cancel: CancelToken | None = None
    ) -> Iterator[StudyRow]:
        """Every matching study, page by page."""
        offset = 0
        while True:
            page = self.search_studies(filters, offset, page_size, cancel)
            yield from page.items
            if not page.has_more or not page.items:
                return
            offset = page.next_offset

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> DicomSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def patients_of(studies: Iterable[StudyRow]) -> list[PatientRow]:
    """The patients of ``studies`` in order of first appearance, with study counts."""
    found: dict[tuple[str, str], list[StudyRow]] = {}
    for study in studies:
        found.setdefault((study.patient_id, study.patient_name), []).append(study)
    return [
        PatientRow(
            patient_id=pid,
            patient_name=name,
            birth_date=next((s.birth_date for s in rows if s.birth_date), ""),
            n_studies=len(rows),
            latest_study_date=max((s.study_date for s in rows), default=""),
        )
        for (pid, name), rows in found.items()
    ]


def _matches(pattern: str, value: str, *, ignore_case: bool) -> bool:
    if not pattern:
        return True
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def name_matches(pattern: str, name: str) -> bool:
    """Whether a DICOM name matches ``pattern`` (wildcards, any case, "^" as a space too)."""
    return any(
        _matches(pattern, n, ignore_case=True) for n in (name, name.replace("^", " ").strip())
    )


# -- local database --------------------------------------------------------------------------


class LocalDatabaseSearch(DicomSearch):
    """Searches the local DICOM database (read-only; a missing database finds nothing).

    Parameters
    ----------
    folder
        The database folder; the user's (``dicom-db`` in the data folder) when None.
    """

    kind = "local"

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_database_dir()

    @property
    def name(self) -> str:
        return "This computer"

    def describe(self) -> str:
        return f"the local DICOM database {self.folder}"

    @property
    def exists(self) -> bool:
        """Whether the database has been made (by an import or a retrieval)."""
        return (self.folder / INDEX_NAME).is_file()

    def _summaries(self, filters: Mapping[str, str]) -> list[SeriesSummary]:
        if not self.exists:
            return []
        # Opened per call: each worker thread gets (and closes) its own SQLite connection.
        with LocalDicomDatabase(self.folder, readonly=True) as database:
            return database.series_summaries(filters)

    def search_studies(
        self,
        filters: SearchFilters,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        cancel: CancelToken | None = None,
    ) -> Page[StudyRow]:
        check_cancel(cancel)
        query = filters.study_query()
        modality = query.pop("ModalitiesInStudy", "")
        # Names and descriptions match case-insensitively here, as PACS match names; a name
        # also matches with spaces for the DICOM "^" ("john smith" finds "Smith^John" too).
        name = query.pop("PatientName", "")
        description = query.pop("StudyDescription", "")
        by_study: dict[str, list[SeriesSummary]] = {}
        for summary in self._summaries(query):
            if name_matches(name, summary.patient_name) and _matches(
                description, summary.study_description, ignore_case=True
            ):
                by_study.setdefault(summary.study_uid, []).append(summary)
        check_cancel(cancel)
        rows = [
            _study_row(items)
            for items in by_study.values()
            if not modality or modality in {s.modality.upper() for s in items}
        ]
        rows.sort(key=lambda r: (r.study_date, r.study_time, r.study_uid), reverse=True)
        return Page(tuple(rows[offset : offset + limit]), offset, len(rows) > offset + limit)

    def search_series(
        self,
        study_uid: str,
        *,
        modality: str = "",
        description: str = "",
        cancel: CancelToken | None = None,
    ) -> list[SeriesRow]:
        check_cancel(cancel)
        rows = [
            SeriesRow(
                study_uid=s.study_uid,
                series_uid=s.series_uid,
                modality=s.modality,
                description=s.description,
                series_number=s.series_number,
                n_images=s.n_images,
                files=s.files,
            )
            for s in self._summaries({"StudyInstanceUID": study_uid})
        ]
        return _filter_series(rows, modality, description)

    def series_files(self, study_uid: str, series_uid: str) -> tuple[Path, ...]:
        """The complete instance files of a series (empty when unknown)."""
        if not self.exists:
            return ()
        with LocalDicomDatabase(self.folder, readonly=True) as database:
            return database.series_files(study_uid, series_uid)


def _study_row(items: Sequence[SeriesSummary]) -> StudyRow:
    first = items[0]
    modalities = sorted({s.modality for s in items if s.modality})
    return StudyRow(
        study_uid=first.study_uid,
        patient_id=first.patient_id,
        patient_name=first.patient_name,
        study_date=first.study_date,
        description=first.study_description,
        modalities=tuple(modalities),
        n_series=len(items),
        n_instances=sum(s.n_images for s in items),
    )


def _filter_series(rows: list[SeriesRow], modality: str, description: str) -> list[SeriesRow]:
    modality = modality.strip().upper()
    pattern = contains(description)
    kept = [
        r
        for r in rows
        if (not modality or r.modality.upper() == modality)
        and _matches(pattern, r.description, ignore_case=True)
    ]
    kept.sort(key=lambda r: (r.series_number is None, r.series_number or 0, r.series_uid))
    return kept


# -- DICOMweb server --------------------------------------------------------------------------


def _values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


class DicomWebSearch(DicomSearch):
    """Searches one DICOMweb server with QIDO-RS (session, auth and retries from its settings).

    Parameters
    ----------
    server
        The server as configured in the site settings.
    """

    kind = "dicomweb"

    def __init__(self, server: ServerSettings) -> None:
        self.server = server
        self._client: Any = None
        self._client_lock = threading.Lock()  # worker threads search at once

    @property
    def name(self) -> str:
        return self.server.name

    def describe(self) -> str:
        return f"server {self.server.describe()}"

    @property
    def client(self) -> Any:
        """The server's ``DICOMwebClient`` (made on first use)."""
        with self._client_lock:
            if self._client is None:
                self._client = open_client(self.server)
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client._session.close()
                self._client = None

    def _search(self, what: str, call: Any, *args: Any, **kwargs: Any) -> list[Dataset]:
        with server_errors(self.server, what):
            return [Dataset.from_json(item) for item in call(*args, **kwargs)]

    def search_studies(
        self,
        filters: SearchFilters,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
        cancel: CancelToken | None = None,
    ) -> Page[StudyRow]:
        check_cancel(cancel)
        query = filters.study_query()
        name = query.get("PatientName", "")
        if _NAME_SEPARATORS.search(name):
            # Some servers (Orthanc 1.10) never match a "^" or a space in a name: send a
            # wildcard in their place and keep only the exact matches below.
            query["PatientName"] = re.sub(r"\*+", "*", _NAME_SEPARATORS.sub("*", name))
        # One more than asked tells whether another page follows, without a count query.
        found = self._search(
            "the QIDO-RS study search",
            self.client.search_for_studies,
            search_filters=query,
            fields=_STUDY_FIELDS,
            limit=limit + 1,
            offset=offset,
        )
        rows = tuple(
            StudyRow(
                study_uid=text_of(ds, "StudyInstanceUID"),
                patient_id=text_of(ds, "PatientID"),
                patient_name=text_of(ds, "PatientName"),
                birth_date=text_of(ds, "PatientBirthDate"),
                study_date=text_of(ds, "StudyDate"),
                study_time=text_of(ds, "StudyTime"),
                description=text_of(ds, "StudyDescription"),
                accession_number=text_of(ds, "AccessionNumber"),
                modalities=_values(ds, "ModalitiesInStudy"),
                n_series=int_of(ds, "NumberOfStudyRelatedSeries"),
                n_instances=int_of(ds, "NumberOfStudyRelatedInstances"),
            )
            for ds in found[:limit]
        )
        if _NAME_SEPARATORS.search(name):
            rows = tuple(r for r in rows if name_matches(name, r.patient_name))
        return Page(rows, offset, len(found) > limit)

    def search_series(
        self,
        study_uid: str,
        *,
        modality: str = "",
        description: str = "",
        cancel: CancelToken | None = None,
    ) -> list[SeriesRow]:
        check_cancel(cancel)
        found = self._search(
            f"the QIDO-RS series search of study {study_uid}",
            self.client.search_for_series,
            study_uid,
            fields=_SERIES_FIELDS,
        )
        rows = [
            SeriesRow(
                study_uid=study_uid,
                series_uid=text_of(ds, "SeriesInstanceUID"),
                modality=text_of(ds, "Modality"),
                description=text_of(ds, "SeriesDescription"),
                series_number=int_of(ds, "SeriesNumber"),
                n_images=int_of(ds, "NumberOfSeriesRelatedInstances"),
                series_date=text_of(ds, "SeriesDate"),
            )
            for ds in found
        ]
        # Filtered here, not in the query: servers differ in matching descriptions' case.
        return _filter_series(rows, modality, description)

    def instance_uids(self, study_uid: str, series_uid: str) -> list[tuple[int | None, str]]:
        """``(InstanceNumber, SOPInstanceUID)`` of the series' instances, in number order."""
        found = self._search(
            f"listing the instances of series {series_uid}",
            self.client.search_for_instances,
            study_uid,
            series_uid,
            fields=["SOPInstanceUID", "InstanceNumber"],
        )
        items = [(int_of(ds, "InstanceNumber"), text_of(ds, "SOPInstanceUID")) for ds in found]
        return sorted(items, key=lambda item: (item[0] is None, item[0] or 0, item[1]))


def searches_for(
    servers: Mapping[str, ServerSettings],
    database_dir: Path | None = None,
    *,
    local: bool = True,
) -> list[DicomSearch]:
    """The local database's search (unless ``local`` is False: the site allows no dicom-db
    batch), then one per server (in the settings' order)."""
    searches: list[DicomSearch] = [LocalDatabaseSearch(database_dir)] if local else []
    return searches + [DicomWebSearch(s) for s in servers.values()]


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DicomSearch",
    "DicomWebSearch",
    "LocalDatabaseSearch",
    "Page",
    "PatientRow",
    "SearchFilterError",
    "SearchFilters",
    "SeriesRow",
    "StudyRow",
    "contains",
    "patients_of",
    "searches_for",
]
