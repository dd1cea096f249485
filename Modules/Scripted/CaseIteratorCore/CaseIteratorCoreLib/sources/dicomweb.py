"""DICOMweb batches: cases found with QIDO-RS, images retrieved with WADO-RS into the local cache.

``[source]`` keys (besides the server keys of :mod:`..server_settings`)::

    type = "dicomweb"
    server = "pacs"                 # a server of the site settings, or url = "..." and auth keys
    page_size = 100                 # studies per QIDO-RS page
    uid_list = "uids.csv"           # optional: StudyInstanceUID[,SeriesInstanceUID] per row
    cache = "/data/dicom-cache"     # optional: local DICOM database (default: the user's)

    [source.query]                  # QIDO-RS study filters
    Modality = "CT"                 # sent as ModalitiesInStudy; series of other modalities skip
    StudyDate = "20240101-20241231"
    StudyDescription = "*abdomen*"
    AccessionNumber = "A123"
    PatientID = "P1"

    [source.series]                 # which series of a study is the case (SeriesRule)

Studies are listed page by page (limit/offset), so a query matching 10,000 studies gives its
first case after one request. A case's series is retrieved on demand (``locate``) into the
local DICOM database, which is also the cache: a series already there is not downloaded again.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
from pydicom.dataset import Dataset

from ..background_store import BackgroundStore
from ..batch_file import BatchDefinition, SourceSpec
from ..cases import Case, DicomSeriesRef, ImageRef
from ..dicom_files import int_of, text_of
from ..dicomweb_connection import ServerError, ServerUnreachable, open_client, server_errors
from ..errors import BatchDefinitionError
from ..multipart_reader import CHUNK_BYTES, MultipartError, boundary_of, iter_parts
from ..series_selection import SeriesRule, SeriesSummary
from ..server_settings import SERVER_KEYS, ServerSettings, refuse_clear_secrets
from ..site_settings import load_site_settings
from ..tasks import CancelToken, ProgressCallback, check_cancel, no_progress
from .base import BatchSource
from .series_cases import case_from_series, select_image_series, series_sort_key

log = logging.getLogger(__name__)

KEYS = ("server", "page_size", "uid_list", "cache", "query", "series")
QUERY_KEYS = (
    "Modality",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "PatientID",
    "PatientName",
)
_STUDY_FIELDS = ["PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber"]
_SERIES_FIELDS = ["Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
#: What a series retrieval asks for: DICOM files in the transfer syntax the server holds them in
#: (PS3.18 ``transfer-syntax=*``): a PACS storing JPEG-LS or JPEG 2000 sends those bytes instead
#: of transcoding them to a 2-3 times larger uncompressed answer (what the bare media type
#: asks for by default); they are decoded here.
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: For servers that refuse the parameter (HTTP 400/406/415): their default transfer syntax.
WADO_ACCEPT_DEFAULT = 'multipart/related; type="application/dicom"'
_REFUSED_ACCEPT = (400, 406, 415)
#: Received instances between two progress reports.
_PROGRESS_EVERY = 16


class DicomWebSource(BatchSource):
    """Cases from a DICOMweb server (QIDO-RS), images retrieved with WADO-RS into the cache."""

    type = "dicomweb"

    def __init__(
        self,
        batch: BatchDefinition,
        server: ServerSettings,
        *,
        query: dict[str, str],
        rule: SeriesRule,
        page_size: int = 100,
        uid_list: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(batch)
        self.server = server
        self.query = query
        self.rule = rule
        self.page_size = page_size
        self.uid_list = uid_list
        self._cache_dir = cache_dir
        self._client: Any = None
        self._cache: Any = None
        self._accept = WADO_ACCEPT

    @classmethod
    def from_batch(cls, batch: BatchDefinition) -> DicomWebSource:
        spec: SourceSpec = batch.source
        refuse_clear_secrets(spec.options, spec.error)
        spec.check_keys(KEYS + SERVER_KEYS)
        server = _server_of(spec)
        query = spec.options.get("query", {})
        if not isinstance(query, dict):
            raise spec.error("query", "query must be a table: write [source.query].")
        spec.check_keys(QUERY_KEYS, table="query")
        for key, value in query.items():
            if not isinstance(value, str) or not value:
                raise spec.error(f"query.{key}", f"{key} must be a non-empty string.")
        page_size = spec.options.get("page_size", 100)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not page_size >= 1:
            raise spec.error(
                "page_size", f"page_size must be a whole number >= 1, got {page_size!r}."
            )
        uid_list = spec.path("uid_list", required=False)
        cache = spec.path("cache", required=False, must_exist=False)
        rule = SeriesRule.from_spec(spec)
        if "Modality" in query and not rule.modalities:
            rule = replace(rule, modalities=(query["Modality"].upper(),))
        return cls(
            batch,
            server,
            query=dict(query),
            rule=rule,
            page_size=page_size,
            uid_list=uid_list,
            cache_dir=cache,
        )

    def describe(self) -> str:
        return f"DICOMweb server {self.server.describe()}"

    @property
    def client(self) -> Any:
        """The server's ``DICOMwebClient`` (made on first use)."""
        if self._client is None:
            self._client = open_client(self.server)
        return self._client

    @property
    def cache(self) -> Any:
        """The local DICOM database that holds retrieved series."""
        if self._cache is None:
            from ..dicom_database import LocalDicomDatabase, default_database_dir

            self._cache = LocalDicomDatabase(self._cache_dir or default_database_dir())
        return self._cache

    def close(self) -> None:
        if self._client is not None:
            self._client._session.close()
        if self._cache is not None:
            self._cache.close()

    # -- listing --------------------------------------------------------------------------
    def _search(self, what: str, call, *args: Any, **kwargs: Any) -> list[Dataset]:
        with server_errors(self.server, what):
            return [Dataset.from_json(item) for item in call(*args, **kwargs)]

    def _study_pages(self, cancel: CancelToken | None) -> Iterator[list[Dataset]]:
        filters = {
            ("ModalitiesInStudy" if k == "Modality" else k): v for k, v in self.query.items()
        }
        offset = 0
        while True:
            check_cancel(cancel)
            page = self._search(
                "the QIDO-RS study search",
                self.client.search_for_studies,
                search_filters=filters,
                fields=_STUDY_FIELDS,
                limit=self.page_size,
                offset=offset,
            )
            if not page:
                return  # an empty page, not a short one, ends the list (servers may cap pages)
            yield page
            offset += len(page)

    def _studies_from_list(self, cancel: CancelToken | None) -> Iterator[tuple[Dataset, str]]:
        assert self.uid_list is not None
        with self.uid_list.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        for number, row in enumerate(rows, start=2):
            check_cancel(cancel)
            keys = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            study = keys.get("studyinstanceuid", "")
            series = keys.get("seriesinstanceuid", "")
            if not study:
                self._skip(f"{self.uid_list}:{number}", "row has no StudyInstanceUID")
                continue
            found = self._search(
                f"the QIDO-RS search for study {study}",
                self.client.search_for_studies,
                search_filters={"StudyInstanceUID": study},
                fields=_STUDY_FIELDS,
            )
            if not found:
                self._skip(
                    f"{self.uid_list}:{number}",
                    f"study {study} is not on server {self.server.describe()}",
                )
                continue
            yield found[0], series

    def _series_of(self, study: Dataset, only_series: str = "") -> list[SeriesSummary]:
        study_uid = text_of(study, "StudyInstanceUID")
        filters = {"SeriesInstanceUID": only_series} if only_series else None
        found = self._search(
            f"the QIDO-RS series search of study {study_uid}",
            self.client.search_for_series,
            study_uid,
            search_filters=filters,
            fields=_SERIES_FIELDS,
        )
        if only_series and not found:
            self._skip(
                f"{self.server.safe_url} series {only_series}",
                f"series {only_series} is not on server {self.server.describe()}",
            )
        summaries = [
            SeriesSummary(
                study_uid=study_uid,
                series_uid=text_of(series, "SeriesInstanceUID"),
                modality=text_of(series, "Modality"),
                description=text_of(series, "SeriesDescription"),
                series_number=int_of(series, "SeriesNumber"),
                n_images=int_of(series, "NumberOfSeriesRelatedInstances") or 0,
                patient_id=text_of(study, "PatientID"),
                patient_name=text_of(study, "PatientName"),
                study_date=text_of(study, "StudyDate"),
                study_description=text_of(study, "StudyDescription"),
            )
            for series in found
        ]
        return sorted(summaries, key=series_sort_key)

    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        self._skipped.clear()
        if self.uid_list is not None:
            studies: Iterator[tuple[Dataset, str]] = self._studies_from_list(cancel)
        else:
            studies = ((s, "") for page in self._study_pages(cancel) for s in page)
        index = 0
        for done, (study, only_series) in enumerate(studies):
            progress(
                done, None, f"study {text_of(study, 'StudyDate')} {text_of(study, 'PatientID')}"
            )
            chosen = select_image_series(
                self._series_of(study, only_series),
                self.rule,
                self._skip,
                lambda s: f"{self.server.safe_url} series {s.series_uid}",
            )
            for summary in chosen:
                yield case_from_series(summary, index, self.server.url)
                index += 1

    # -- retrieval ------------------------------------------------------------------------
    def locate(
        self,
        ref: ImageRef,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImageRef:
        """Make sure the series is in the local cache (retrieving what is missing); return it.

        A series already complete in the cache is used without contacting the server. When
        the server cannot be reached, a complete cached copy still serves.

        Raises
        ------
        ServerError
            When the series cannot be retrieved; instances already received stay cached, so
            the next attempt fetches only the rest.
        """
        if not isinstance(ref, DicomSeriesRef) or ref.files:
            return ref
        study, series = ref.study_uid, ref.series_uid
        have = self.cache.instance_uids(study, series)
        if ref.n_instances and len(have) >= ref.n_instances:
            return replace(ref, files=self.cache.series_files(study, series))
        if ref.n_instances and not have:
            # Nothing cached and the count known from the series query: retrieve at once.
            # Listing the instances first costs a QIDO-RS round (0.3 s for 300 instances on
            # Orthanc, more over a slow link); it is asked only if fewer arrive than counted.
            self._retrieve(study, series, None, ref.n_instances, progress, cancel)
            if len(self.cache.instance_uids(study, series)) >= ref.n_instances:
                return replace(ref, files=self.cache.series_files(study, series))
        self._complete_series(study, series, ref.n_instances, progress, cancel)
        return replace(ref, files=self.cache.series_files(study, series))

    def _complete_series(
        self,
        study: str,
        series: str,
        n_instances: int | None,
        progress: ProgressCallback,
        cancel: CancelToken | None,
    ) -> None:
        """List the series' instances (QIDO-RS) and retrieve those not cached yet.

        Raises
        ------
        ServerError
            When the series is gone from the server, or fewer instances arrive than listed.
        """
        have = self.cache.instance_uids(study, series)
        try:
            listed = self._search(
                f"listing the instances of series {series}",
                self.client.search_for_instances,
                study,
                series,
                fields=["SOPInstanceUID"],
            )
        except ServerUnreachable:
            if have and n_instances is None:
                return  # offline: the cached copy serves
            raise
        wanted = {text_of(ds, "SOPInstanceUID") for ds in listed}
        if not wanted:
            raise ServerError(
                self.server.describe(),
                f"series {series} is no longer on server {self.server.describe()}",
            )
        missing = wanted - have
        if missing:
            self._retrieve(study, series, missing, len(wanted), progress, cancel)
        still = wanted - self.cache.instance_uids(study, series)
        if still:  # the stream ended early without an error: never load a partial series
            raise ServerUnreachable(
                self.server.describe(),
                f"retrieving series {series} from server {self.server.describe()} ended "
                f"early: {len(wanted) - len(still)} of {len(wanted)} instances received; "
                "try again (what arrived is kept)",
            )

    def _retrieve(
        self,
        study: str,
        series: str,
        missing: set[str] | None,
        total: int,
        progress: ProgressCallback,
        cancel: CancelToken | None,
    ) -> None:
        """Stream the series (WADO-RS) into the cache; keeps what arrived when it stops.

        Only the instances in ``missing`` are stored (None: all that arrive).

        The response is read part by part on this thread through the server's session (its
        auth, TLS, timeouts and retries) and each part, a DICOM file, is stored as received
        by a writer thread (:class:`~..background_store.BackgroundStore`): the download never
        waits for the disk, and nothing is decoded or encoded again.
        """
        done = 0 if missing is None else total - len(missing)
        progress(done, total, f"retrieving series {series}")
        operation = f"retrieving series {series} (WADO-RS)"
        url = f"{self.client.base_url}/studies/{study}/series/{series}"
        with server_errors(self.server, operation):
            response = self._get_instances(url)
            with response:
                response.raise_for_status()
                try:
                    boundary = boundary_of(response.headers.get("Content-Type", ""))
                    parts = iter_parts(response.iter_content(CHUNK_BYTES), boundary)
                    with BackgroundStore(self.cache, only=missing, cancel=cancel) as store:
                        for number, part in enumerate(parts, start=1):
                            check_cancel(cancel)
                            store.put(part)
                            del part
                            if number % _PROGRESS_EVERY == 0:
                                progress(done + store.stored, total, f"retrieving series {series}")
                except MultipartError as exc:
                    raise ServerError(
                        self.server.describe(),
                        f"server {self.server.describe()} sent a malformed answer while "
                        f"{operation}: {exc}; if it lasts, ask the PACS admin",
                    ) from None
        progress(total, total, f"retrieved series {series}")

    def _get_instances(self, url: str) -> requests.Response:
        """GET a WADO-RS URL as a stream, in the stored transfer syntax where the server allows
        (a server refusing ``transfer-syntax=*`` is asked once more without it, and from then
        on)."""
        response = self.client._session.get(
            url, headers={"Accept": self._accept}, stream=True, timeout=self.server.timeout_s
        )
        if response.status_code in _REFUSED_ACCEPT and self._accept != WADO_ACCEPT_DEFAULT:
            response.close()
            log.info(
                "server %s refuses transfer-syntax=* (HTTP %d); retrieving in its default "
                "transfer syntax",
                self.server.describe(),
                response.status_code,
            )
            self._accept = WADO_ACCEPT_DEFAULT
            response = self.client._session.get(
                url, headers={"Accept": self._accept}, stream=True, timeout=self.server.timeout_s
            )
        return response


def _server_of(spec: SourceSpec) -> ServerSettings:
    """The server of a ``[source]``: a named site server, or the keys written in place."""
    name = spec.options.get("server")
    server_keys = {k: v for k, v in spec.options.items() if k in SERVER_KEYS}
    if name is not None:
        if server_keys:
            raise spec.error(
                next(iter(server_keys)),
                'give either server = "name" or the server\'s url and keys, not both.',
            )
        try:
            return load_site_settings().server(str(name))
        except KeyError as exc:
            raise spec.error(
                "server",
                str(exc.args[0]) + ".",
                fix='add it to the site settings ([[servers]]) or write url = "..." instead.',
            ) from None
    if "url" not in server_keys:
        raise spec.error(
            "url",
            'a dicomweb source needs server = "name" or url = "...".',
            fix='add url = "https://host/dicom-web" under [source].',
        )

    def error(key: str, message: str, fix: str | None) -> BatchDefinitionError:
        return spec.error(key, message, fix)

    return ServerSettings.from_table(
        server_keys, name=spec.origin.stem, base_dir=spec.base_dir, error=error
    )
