"""Where a case's result goes, and where a reader resumes from.

Saving (:meth:`ResultStore.save`): the batch's ``[output] destination`` decides.

``destination = "<folder>"``
    The files go into that folder: ``<stem>_<reader>.seg.nrrd`` (this reader's file, replaced
    at each save) and, for DICOM cases, a DICOM SEG ``<stem>_<reader>.seg.dcm`` per save
    (``<stem>_<reader>.2.seg.dcm``... : a SEG is never overwritten, each save is a new series).
``destination = "source"`` (the default), by input mode:

    ========== ===========================================================================
    dicomweb   the SEG goes into the :class:`~.outbox.Outbox`, bound for the server the case
               came from (``case.result.origin``), and is sent from there (STOW-RS).
    dicom-db   the SEG is stored into the local DICOM database the case came from (it is
               ours: crash-safe writes, found again by a search).
    slicer-db  a 3D Slicer database is read strictly read-only: results go to a results folder
               of this batch, ``user_data_dir()/results/<batch>/`` (``results_dir`` moves it).
    dicom-folder  beside the series' files (the folder scan lists them as skipped: not images).
    csv        ``<stem>_<reader>.seg.nrrd`` beside the image, as SlicerCaseIterator did; a SEG
               beside it too when the image is a DICOM series.
    ========== ===========================================================================

Never overwriting another reader's file: a ``.seg.nrrd`` saved here carries two header fields,
``CaseIterator_Reader`` and ``CaseIterator_Case``. The file ``<stem>_<reader>.seg.nrrd`` is
replaced only when those fields say it is this reader's result of this case; otherwise (a file
of another reader whose name maps to the same file name, a file of another case with the same
stem, a file written by another program) the save goes to ``<stem>_<reader>.2.seg.nrrd``, then
``.3``... Files are written to a temporary file, fsynced, then linked or renamed into place.

Resuming (:meth:`ResultStore.find_latest`): the newest result of *this* reader for the case,
wherever it is (its own files, the outbox, the local DICOM database, the DICOMweb server: a
QIDO-RS search for SEG series of the study whose instances reference the case's series and
name the reader as ContentCreatorName), newest by the SEG's series (else content) date and
time, then SeriesNumber; a ``.seg.nrrd`` by its modification time. Failing that, the batch's
pre-segmentation (``case.masks``: a mask file or an existing SEG such as an AI result).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pydicom
import pydicom.datadict
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .atomic_files import create_file, replace_file
from .batch_file import BatchDefinition
from .cases import Case, DicomSeriesRef, ImageFileRef
from .dicom_files import dataset_bytes
from .dicomweb_connection import open_client, server_errors
from .errors import CaseIteratorError
from .outbox import Outbox, OutboxItem, OutboxState
from .paths import user_data_dir
from .seg_nrrd import safe_reader_name
from .server_settings import ServerSettings

logger = logging.getLogger(__name__)

#: Header fields of a ``.seg.nrrd`` that say whose result of which case it is.
NRRD_READER_KEY = "CaseIterator_Reader"
NRRD_CASE_KEY = "CaseIterator_Case"
SEG_NRRD_SUFFIX = ".seg.nrrd"
SEG_DICOM_SUFFIX = ".seg.dcm"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: Header tags read to judge a SEG file without its pixels (whose, of which series, when).
SEG_HEADER_TAGS = [
    "Modality",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "ContentDate",
    "ContentTime",
    "ContentCreatorName",
    "FrameOfReferenceUID",
    "ReferencedSeriesSequence",
]
#: The same tags as JSON keys: a SEG's metadata is filtered to them before decoding, because
#: decoding its per-frame functional groups takes ~0.4 s for a 512x512x100 SEG of 3 segments.
SEG_HEADER_JSON_KEYS = frozenset(
    f"{pydicom.datadict.tag_for_keyword(k):08X}" for k in SEG_HEADER_TAGS
)
_NRRD_HEADER_MAX = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: What a QIDO-RS series search returns to order SEG series without reading them.
#: Sorts before any real time (a SEG without date and time is taken as the oldest).
_NO_TIME = datetime.min.replace(tzinfo=UTC)
_SERIES_FIELDS = ["SeriesNumber", "SeriesDate", "SeriesTime", "ContentDate", "ContentTime"]


class ResultStoreError(CaseIteratorError):
    """A result cannot be stored or looked up; the message names the case, place and fix."""


class ResumeLookupError(ResultStoreError):
    """The server could not be searched for the reader's results.

    Attributes
    ----------
    fallback
        The best starting point found without the server (a local result or the
        pre-segmentation), or None: the UI may offer it, saying the server's copy may be newer.
    """

    def __init__(self, message: str, fallback: ResumePoint | None) -> None:
        self.fallback = fallback
        super().__init__(message)


class ResultKind(StrEnum):
    """The file format of a result or starting point."""

    DICOM_SEG = "dicom-seg"
    SEG_NRRD = "seg.nrrd"
    #: Any label image SimpleITK reads (a CSV mask column: NRRD, NIfTI...).
    LABELMAP = "labelmap"


class ResumeOrigin(StrEnum):
    """Where a starting point came from, for the reader to see."""

    FILE = "file"
    OUTBOX = "outbox"
    DATABASE = "database"
    SERVER = "server"
    PRESEGMENTATION = "presegmentation"


@dataclass(frozen=True)
class ResumePoint:
    """What to load when a case opens, and where it came from.

    Attributes
    ----------
    path
        The file to load (for a SEG found on the server: its copy in the local cache).
    kind
        Its format.
    origin
        Where it was found.
    saved_at
        When it was saved (aware, local time), when known.
    reader
        Whose result it is (None for a pre-segmentation).
    place
        Where it is, in words: the folder, the server, the outbox.
    series_number, sop_instance_uid
        For DICOM SEG results.
    """

    path: Path
    kind: ResultKind
    origin: ResumeOrigin
    saved_at: datetime | None = None
    reader: str | None = None
    place: str = ""
    series_number: int | None = None
    sop_instance_uid: str | None = None

    def describe(self) -> str:
        """One line for the reader: ``resumed from your save of 14:02 on server 'pacs'``."""
        if self.origin is ResumeOrigin.PRESEGMENTATION:
            return f"starting from the pre-segmentation {self.path.name} ({self.place})"
        when = ""
        if self.saved_at is not None:
            today = datetime.now().astimezone().date()
            stamp = self.saved_at.astimezone()
            when = f" of {stamp:%H:%M}" if stamp.date() == today else f" of {stamp:%Y-%m-%d %H:%M}"
        where = f" ({self.place})" if self.place else ""
        return f"resumed from your save{when}{where}"


@dataclass(frozen=True)
class SavedResult:
    """Where :meth:`ResultStore.save` put a result.

    Attributes
    ----------
    case_id, reader
        Whose result of which case.
    files
        The files written (the ``.seg.nrrd``, the SEG file, its copy in the outbox or in the
        local DICOM database).
    place
        Where it went, in words ("sent to server 'pacs' (https://...) via the outbox").
    outbox_item
        The outbox item when the result goes to a server (its state says whether it is sent).
    sop_instance_uid
        The SEG's SOP Instance UID, when a SEG was saved.
    """

    case_id: str
    reader: str
    files: tuple[Path, ...]
    place: str
    outbox_item: OutboxItem | None = None
    sop_instance_uid: str | None = None

    @property
    def refs(self) -> tuple[str, ...]:
        """References to record in the progress store: file paths, then the SOP Instance UID."""
        refs = tuple(str(p) for p in self.files)
        return (*refs, self.sop_instance_uid) if self.sop_instance_uid else refs


@dataclass(frozen=True)
class _Candidate:
    point: ResumePoint
    order: tuple  # larger is newer
    series_uid: str = ""


class ResultStore:
    """Stores a reader's results of a batch and finds the newest one to resume from.

    Parameters
    ----------
    batch
        The batch (its ``[output]`` and source type decide where results go).
    reader
        The reader's name (file names, ContentCreatorName).
    outbox
        The outbox for results bound to a DICOMweb server; the default outbox when None and
        one is needed.
    servers
        The DICOMweb servers cases may come from (the source's server); a case's
        ``result.origin`` is matched to their URL. The site settings are searched otherwise.
    results_dir
        The results folder of batches whose source must not be written to (slicer-db);
        ``user_data_dir()/results/<batch>`` by default.
    cache
        Where SEGs found on a server are retrieved to (a
        :class:`~.dicom_database.LocalDicomDatabase`; the source's cache); the default local
        DICOM database when None.
    """

    def __init__(
        self,
        batch: BatchDefinition,
        reader: str,
        *,
        outbox: Outbox | None = None,
        servers: Iterable[ServerSettings] = (),
        results_dir: Path | None = None,
        cache: Any = None,
    ) -> None:
        if not reader or not reader.strip():
            raise ValueError("reader must be a non-empty name")
        self.batch = batch
        self.reader = reader.strip()
        self._outbox = outbox
        self._servers = list(servers)
        self._results_dir = results_dir
        self._cache = cache

    # -- where ---------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The outbox results for servers go through."""
        if self._outbox is None:
            self._outbox = Outbox()
        return self._outbox

    @property
    def results_dir(self) -> Path:
        """The results folder used when the source must not be written to."""
        if self._results_dir is None:
            self._results_dir = user_data_dir() / "results" / _safe_folder_name(self.batch.key)
        return self._results_dir

    @property
    def reader_tag(self) -> str:
        """The reader's name as it appears in file names."""
        return safe_reader_name(self.reader)

    def folder_for(self, case: Case) -> Path | None:
        """The folder this case's result files go to (None: into the outbox or a database)."""
        output = self.batch.output
        if output.folder is not None:
            return output.folder
        kind = self.batch.source.type
        if kind in ("dicomweb", "dicom-db"):
            return None
        if kind == "slicer-db":
            return self.results_dir
        if case.result.folder is None:
            return self.results_dir
        return case.result.folder

    def server_for(self, case: Case) -> ServerSettings:
        """The server a DICOMweb case came from (its ``result.origin``).

        Raises
        ------
        ResultStoreError
            When no configured server has that URL.
        """
        origin = (case.result.origin or "").rstrip("/")
        candidates = list(self._servers)
        if not any(s.url.rstrip("/") == origin for s in candidates):
            from .site_settings import load_site_settings

            with contextlib.suppress(CaseIteratorError):
                candidates += list(load_site_settings().servers.values())
        for settings in candidates:
            if settings.url.rstrip("/") == origin or settings.safe_url.rstrip("/") == origin:
                return settings
        raise ResultStoreError(
            f"case {case.label} came from {origin or 'an unknown place'}, but no DICOMweb "
            "server with that URL is configured, so its result cannot be sent back; add the "
            "server to the site settings or set [output] destination to a folder"
        )

    # -- saving --------------------------------------------------------------------------

    def save(
        self,
        case: Case,
        *,
        seg_dataset: Dataset | None = None,
        seg_nrrd_path: Path | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> SavedResult:
        """Store a result of ``case`` where the batch says (see the module notes).

        Parameters
        ----------
        case
            The case.
        seg_dataset
            The DICOM SEG (for DICOM cases): written to a file, the local database or the
            outbox. Never overwrites an earlier SEG (each save is a new series).
        seg_nrrd_path
            A ``.seg.nrrd`` already written somewhere (a temporary file): copied into place
            as ``<stem>_<reader>.seg.nrrd``; the given file is left as it is.
        provenance
            More header fields for the ``.seg.nrrd`` (:func:`provenance_fields`), beside the
            reader and case fields it always gets; a SEG carries the same in its attributes.

        Returns
        -------
        SavedResult
            The files written and where the result went.

        Raises
        ------
        ResultStoreError
            When neither result is given, the SEG does not reference the case's series, the
            destination cannot take this format, or a folder cannot be written (the message
            names the case, the folder or server, and the fix).
        OutboxError
            When the outbox cannot store the SEG.
        """
        if seg_dataset is None and seg_nrrd_path is None:
            raise ResultStoreError(
                f"nothing to save for case {case.label}: give a DICOM SEG or a .seg.nrrd file"
            )
        if seg_dataset is not None:
            self._check_references(case, seg_dataset)
        files: list[Path] = []
        places: list[str] = []
        item = None
        folder = self.folder_for(case)
        kind = self.batch.source.type
        if seg_nrrd_path is not None:
            # A .seg.nrrd cannot go into a server or a DICOM database: the results folder.
            nrrd_folder = folder if folder is not None else self.results_dir
            files.append(self._place_nrrd(case, Path(seg_nrrd_path), nrrd_folder, provenance or {}))
            places.append(f"folder {nrrd_folder}")
        if seg_dataset is not None:
            if folder is not None:
                files.append(self._write_seg_file(case, seg_dataset, folder))
                if f"folder {folder}" not in places:
                    places.append(f"folder {folder}")
            elif kind == "dicomweb":
                server = self.server_for(case)
                item = self.outbox.enqueue(
                    seg_dataset, server, case_id=case.id, reader=self.reader, label=case.name
                )
                files.append(item.path)
                places.append(f"server {server.describe()} (through the outbox)")
            else:  # dicom-db: into the database the case came from
                files.append(self._store_in_database(case, seg_dataset))
                places.append(f"the local DICOM database {case.result.origin}")
        sop = str(seg_dataset.SOPInstanceUID) if seg_dataset is not None else None
        return SavedResult(case.id, self.reader, tuple(files), "; ".join(places), item, sop)

    def _check_references(self, case: Case, ds: Dataset) -> None:
        series = case.result.series_uid
        referenced = _referenced_series(ds)
        if series and referenced and series not in referenced:
            raise ResultStoreError(
                f"the SEG to save for case {case.label} references series "
                f"{', '.join(sorted(referenced))}, not the case's series {series}; it was not "
                "saved (it belongs to another case)"
            )
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            if not str(ds.get(keyword, "") or ""):
                raise ResultStoreError(
                    f"the SEG to save for case {case.label} has no {keyword}; it was not saved"
                )

    def _writable(self, folder: Path, case: Case) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultStoreError(
                f"cannot create the results folder {folder} for case {case.label}: "
                f"{exc.strerror}. Fix: set [output] destination to a folder you can write to."
            ) from exc

    def _place_nrrd(
        self, case: Case, given: Path, folder: Path, provenance: Mapping[str, str]
    ) -> Path:
        self._writable(folder, case)
        try:
            content = given.read_bytes()
        except OSError as exc:
            raise ResultStoreError(
                f"cannot read the segmentation file {given} of case {case.label}: {exc.strerror}"
            ) from exc
        owner = {NRRD_READER_KEY: self.reader, NRRD_CASE_KEY: case.id}
        content = with_nrrd_fields(content, {**provenance, **owner})
        stem = case.result.stem
        for n in range(1, 10_000):
            target = folder / _numbered(f"{stem}_{self.reader_tag}", n, SEG_NRRD_SUFFIX)
            if target.exists():
                if self._owns(target, case):
                    _keep_previous(target)  # no result is ever lost
                    replace_file(target, content)
                    return target
                continue  # someone else's: never touched
            try:
                create_file(target, content)
            except FileExistsError:
                continue  # created meanwhile by another writer
            return target
        raise ResultStoreError(f"too many result files for case {case.label} in {folder}")

    def _owns(self, path: Path, case: Case) -> bool:
        fields = nrrd_fields(path)
        return fields.get(NRRD_READER_KEY) == self.reader and fields.get(NRRD_CASE_KEY) == case.id

    def _write_seg_file(self, case: Case, ds: Dataset, folder: Path) -> Path:
        self._writable(folder, case)
        content = dataset_bytes(ds)
        base = f"{case.result.stem}_{self.reader_tag}"
        for n in range(1, 10_000):
            target = folder / _numbered(base, n, SEG_DICOM_SUFFIX)
            if target.exists():
                continue
            try:
                create_file(target, content)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ResultStoreError(
                    f"cannot write the SEG of case {case.label} into {folder}: {exc.strerror}. "
                    "Fix: free disk space or set [output] destination to a writable folder."
                ) from exc
            return target
        raise ResultStoreError(f"too many result files for case {case.label} in {folder}")

    def _store_in_database(self, case: Case, ds: Dataset) -> Path:
        from .dicom_database import DicomDatabaseError, LocalDicomDatabase

        folder = Path(case.result.origin or "")
        try:
            with LocalDicomDatabase(folder) as database:
                database.store_datasets([ds])
                stored = {
                    p
                    for p in database.series_files(
                        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
                    )
                    if p.name == str(ds.SOPInstanceUID)
                }
        except DicomDatabaseError as exc:
            raise ResultStoreError(
                f"cannot store the SEG of case {case.label} in the DICOM database: {exc}"
            ) from exc
        if not stored:
            raise ResultStoreError(
                f"the SEG of case {case.label} was not found in the DICOM database {folder} "
                "after storing it; check the disk"
            )
        return stored.pop()

    # -- resuming ------------------------------------------------------------------------

    def find_latest(self, case: Case) -> ResumePoint | None:
        """The newest result of this reader for ``case``, else the batch's pre-segmentation.

        Returns
        -------
        ResumePoint or None
            What to load and where it came from; None when there is nothing to start from.

        Raises
        ------
        ResumeLookupError
            When the case's DICOMweb server cannot be searched; ``fallback`` holds the best
            starting point found without it.
        """
        candidates: list[_Candidate] = []
        kind = self.batch.source.type
        # Its own folder, and the results folder (where a .seg.nrrd of a DICOM batch goes).
        for folder in {self.folder_for(case), self.results_dir}:
            if folder is not None and folder.is_dir():
                candidates += self._nrrd_candidates(case, folder)
                candidates += self._seg_file_candidates(case, folder)
        problem = None
        if kind == "dicomweb":
            candidates += self._outbox_candidates(case)
            try:
                candidates += self._server_candidates(
                    case, {c.point.sop_instance_uid for c in candidates}
                )
            except CaseIteratorError as exc:  # server down, refused, no such server, cache...
                problem = exc
        elif kind == "dicom-db":
            candidates += self._database_candidates(case)
        best = max(candidates, key=lambda c: c.order).point if candidates else None
        if best is None:
            best = self._presegmentation(case)
        if problem is not None:
            fallback = f"; {best.describe()}" if best else ""
            raise ResumeLookupError(
                f"your earlier results of case {case.label} could not be looked up on the "
                f"server: {problem}{fallback}",
                best,
            )
        return best

    def _nrrd_candidates(self, case: Case, folder: Path) -> list[_Candidate]:
        pattern = re.compile(
            re.escape(f"{case.result.stem}_{self.reader_tag}")
            + r"(?:\.(\d+))?"
            + re.escape(SEG_NRRD_SUFFIX)
            + "$"
        )
        found = []
        for path in _listdir(folder):
            match = pattern.match(path.name)
            if not match:
                continue
            fields = nrrd_fields(path)
            # Files of ours say whose they are; a file without the fields goes by its name.
            if fields.get(NRRD_READER_KEY, self.reader) != self.reader:
                continue
            if fields.get(NRRD_CASE_KEY, case.id) != case.id:
                continue
            try:
                saved = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
            except OSError:
                continue
            point = ResumePoint(
                path=path,
                kind=ResultKind.SEG_NRRD,
                origin=ResumeOrigin.FILE,
                saved_at=saved,
                reader=self.reader,
                place=f"file {path}",
            )
            found.append(_Candidate(point, (saved, int(match.group(1) or 1))))
        return found

    def _seg_file_candidates(self, case: Case, folder: Path) -> list[_Candidate]:
        prefix = f"{case.result.stem}_{self.reader_tag}"
        found = []
        for path in _listdir(folder):
            if not (path.name.startswith(prefix) and path.name.endswith(SEG_DICOM_SUFFIX)):
                continue
            header = _read_seg_header(path)
            if header is None or not self._is_mine(header, case):
                continue
            found.append(self._seg_candidate(header, path, ResumeOrigin.FILE, f"file {path}"))
        return found

    def _outbox_candidates(self, case: Case) -> list[_Candidate]:
        found = []
        for item in self.outbox.items():
            if item.case_id != case.id or item.reader != self.reader:
                continue
            if item.destination.url.rstrip("/") != (case.result.origin or "").rstrip("/"):
                continue
            header = _read_seg_header(item.path)
            if header is None or not self._is_mine(header, case):
                continue
            state = "sent" if item.state is OutboxState.SENT else "not yet sent"
            place = f"outbox, {state} to server {item.destination.describe()}"
            found.append(self._seg_candidate(header, item.path, ResumeOrigin.OUTBOX, place))
        return found

    def _server_candidates(self, case: Case, known: set[str | None]) -> list[_Candidate]:
        study, series = case.result.study_uid, case.result.series_uid
        if not study or not series:
            return []
        settings = self.server_for(case)
        client = open_client(settings)
        try:
            with server_errors(settings, f"the QIDO-RS search for results of case {case.label}"):
                listed = [
                    Dataset.from_json(entry)
                    for entry in client.search_for_series(
                        study,
                        search_filters={"Modality": "SEG"},
                        fields=_SERIES_FIELDS,
                    )
                ]
            # Newest first by what QIDO-RS says, so usually one metadata request is enough.
            listed.sort(key=lambda ds: _order(ds), reverse=True)
            best: _Candidate | None = None
            for entry in listed:
                seg_series = str(entry.get("SeriesInstanceUID", ""))
                if best is not None and _dated(entry) and _order(entry) < best.order:
                    break
                with server_errors(settings, f"the metadata request of SEG series {seg_series}"):
                    metadata = [
                        Dataset.from_json({k: v for k, v in m.items() if k in SEG_HEADER_JSON_KEYS})
                        for m in client.retrieve_series_metadata(study, seg_series)
                    ]
                for header in metadata:
                    if not self._is_mine(header, case):
                        continue
                    candidate = self._seg_candidate(
                        header, Path(), ResumeOrigin.SERVER, f"server {settings.describe()}"
                    )
                    if best is None or candidate.order > best.order:
                        best = candidate
            if best is None:
                return []
            if best.point.sop_instance_uid in known:
                return []  # the same SEG is already at hand locally (outbox copy)
            path = self._retrieve(client, settings, study, best)
            return [replace(best, point=replace(best.point, path=path))]
        finally:
            client._session.close()

    def _retrieve(
        self, client: Any, settings: ServerSettings, study: str, found: _Candidate
    ) -> Path:
        """Copy a SEG from the server into the local cache (once) and return its file."""
        cache = self._cache
        if cache is None:
            from .dicom_database import LocalDicomDatabase, default_database_dir

            cache = self._cache = LocalDicomDatabase(default_database_dir())
        sop, series = str(found.point.sop_instance_uid), found.series_uid
        cached = [p for p in cache.series_files(study, series) if p.name == sop]
        if not cached:
            with server_errors(settings, f"the WADO-RS retrieval of SEG {sop}"):
                ds = client.retrieve_instance(study, series, sop)
            cache.store_datasets([ds])
            cached = [p for p in cache.series_files(study, series) if p.name == sop]
        if not cached:
            raise ResultStoreError(
                f"the SEG {sop} retrieved from server {settings.describe()} could not be kept "
                f"in the local cache {cache.folder}; check the disk"
            )
        return cached[0]

    def _database_candidates(self, case: Case) -> list[_Candidate]:
        from .dicom_database import DicomDatabaseError, LocalDicomDatabase

        study = case.result.study_uid
        if not study or not case.result.origin:
            return []
        found = []
        try:
            with LocalDicomDatabase(Path(case.result.origin), readonly=True) as database:
                for summary in database.series_summaries(
                    {"StudyInstanceUID": study, "Modality": "SEG"}
                ):
                    for path in database.series_files(study, summary.series_uid):
                        header = _read_seg_header(path)
                        if header is not None and self._is_mine(header, case):
                            found.append(
                                self._seg_candidate(
                                    header,
                                    path,
                                    ResumeOrigin.DATABASE,
                                    f"local DICOM database {case.result.origin}",
                                )
                            )
        except DicomDatabaseError as exc:
            logger.warning("results of case %s not searched: %s", case.label, exc)
        return found

    def _is_mine(self, header: Dataset, case: Case) -> bool:
        if str(header.get("Modality", "")) != "SEG":
            return False
        if case.result.series_uid and case.result.series_uid not in _referenced_series(header):
            return False
        return same_reader(header.get("ContentCreatorName"), self.reader)

    def _seg_candidate(
        self, header: Dataset, path: Path, origin: ResumeOrigin, place: str
    ) -> _Candidate:
        sop = str(header.get("SOPInstanceUID", ""))
        point = ResumePoint(
            path=path,
            kind=ResultKind.DICOM_SEG,
            origin=origin,
            saved_at=_seg_time(header),
            reader=self.reader,
            place=place,
            series_number=_int(header.get("SeriesNumber")),
            sop_instance_uid=sop,
        )
        return _Candidate(point, _order(header), str(header.get("SeriesInstanceUID", "")))

    def _presegmentation(self, case: Case) -> ResumePoint | None:
        for mask in case.masks:
            path = None
            if isinstance(mask, ImageFileRef):
                path = mask.path
            elif isinstance(mask, DicomSeriesRef) and mask.files:
                path = mask.files[0]
            if path is None or not path.exists():
                continue
            if path.name.lower().endswith(SEG_NRRD_SUFFIX):
                kind = ResultKind.SEG_NRRD
            elif path.is_file() and _read_seg_header(path) is not None:
                kind = ResultKind.DICOM_SEG
            else:
                kind = ResultKind.LABELMAP
            return ResumePoint(
                path=path,
                kind=kind,
                origin=ResumeOrigin.PRESEGMENTATION,
                place=f"the batch's {mask.role} {path}",
            )
        return None


# -- helpers ---------------------------------------------------------------------------------


def same_reader(creator: object, reader: str) -> bool:
    """Whether a SEG's ContentCreatorName names ``reader``.

    The SEG writer stores the reader as a person name whose family name is the whole reader
    name (``alice^``; ``^``, ``=`` and ``\\`` become spaces). Trailing empty components,
    repeated spaces and case are ignored; other producers' names (``Doe^Jane``) compare as
    written.
    """
    if creator is None:
        return False
    text = _person_key(str(creator))
    return bool(text) and text == _person_key(reader)


def _person_key(name: str) -> str:
    name = name.strip().rstrip("^")
    return " ".join(name.replace("=", " ").replace("\\", " ").replace("^", " ").split()).casefold()


def _safe_folder_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "batch"


def _keep_previous(path: Path) -> None:
    """Give the version of ``path`` on disk a second, dated name before it is replaced.

    ``<base>.<saved time>.seg.nrrd`` as the ``.seg.nrrd`` writer names earlier versions.
    """
    base = path.name[: -len(SEG_NRRD_SUFFIX)]
    saved = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%dT%H%M%S")
    candidate, number = path.with_name(f"{base}.{saved}{SEG_NRRD_SUFFIX}"), 2
    while True:
        try:
            os.link(path, candidate)
            return
        except FileExistsError:
            candidate = path.with_name(f"{base}.{saved}-{number}{SEG_NRRD_SUFFIX}")
            number += 1
        except OSError:  # no hard links here: a copy
            create_file(candidate, path.read_bytes())
            return


def _numbered(base: str, n: int, suffix: str) -> str:
    return f"{base}{suffix}" if n == 1 else f"{base}.{n}{suffix}"


def _listdir(folder: Path) -> Iterator[Path]:
    try:
        yield from sorted(folder.iterdir())
    except OSError:
        return


def _referenced_series(ds: Dataset) -> set[str]:
    found = set()
    for item in ds.get("ReferencedSeriesSequence", None) or []:
        uid = item.get("SeriesInstanceUID")
        if uid:
            found.add(str(uid))
    return found


def _read_seg_header(path: Path) -> Dataset | None:
    """The header of a DICOM SEG file (no pixels), None for anything else."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=SEG_HEADER_TAGS)
    except (OSError, InvalidDicomError, ValueError, TypeError, AttributeError):
        return None
    if str(header.get("SOPClassUID", "")) != SEG_SOP_CLASS and header.get("Modality") != "SEG":
        return None
    return header


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _seg_time(ds: Dataset) -> datetime | None:
    """When a SEG was made: SeriesDate/Time, else ContentDate/Time (local time, aware)."""
    for date_key, time_key in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")):
        date = str(ds.get(date_key, "") or "")
        if len(date) != 8 or not date.isdigit():
            continue
        clock = str(ds.get(time_key, "") or "").split(".")[0].ljust(6, "0")[:6]
        try:
            return datetime.strptime(date + clock, "%Y%m%d%H%M%S").astimezone()
        except ValueError:
            continue
    return None


def _dated(ds: Dataset) -> bool:
    return _seg_time(ds) is not None


def _order(ds: Dataset) -> tuple:
    """Sort key, larger is newer: time (unknown first), then SeriesNumber."""
    stamp = _seg_time(ds)
    return (stamp or _NO_TIME, _int(ds.get("SeriesNumber")) or 0)


def _nrrd_header(content: bytes) -> tuple[bytes, bytes] | None:
    """Split an attached-header NRRD into (header, rest); None when it is not one."""
    if not content.startswith(b"NRRD"):
        return None
    end = content.find(b"\n\n", 0, _NRRD_HEADER_MAX)
    if end < 0:
        return None
    return content[: end + 1], content[end + 1 :]


def nrrd_fields(path: Path) -> dict[str, str]:
    """The ``key:=value`` fields of a NRRD header (read up to the blank line only)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_NRRD_HEADER_MAX)
    except OSError:
        return {}
    split = _nrrd_header(head)
    if split is None:
        return {}
    fields = {}
    for line in split[0].decode("latin-1").splitlines():
        key, sep, value = line.partition(":=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def with_nrrd_fields(content: bytes, fields: Mapping[str, str]) -> bytes:
    """``content`` with ``fields`` set in its NRRD header (earlier lines of those keys go).

    Slicer keeps and ignores such fields. Line breaks in values become spaces; a file that is
    not an attached-header NRRD stays as it is.

    Raises
    ------
    ValueError
        For a key other than letters, digits and ``_``.
    """
    for key in fields:
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ValueError(f"NRRD header key {key!r}: use letters, digits and _ only")
    split = _nrrd_header(content)
    if split is None:
        return content
    header, rest = split
    keys = tuple(key.encode() for key in fields)
    keep = [line for line in header.split(b"\n") if line and not line.startswith(keys)]
    for key, value in fields.items():
        clean = str(value).replace("\n", " ").replace("\r", " ")
        keep.append(f"{key}:={clean}".encode())
    return b"\n".join(keep) + b"\n" + rest


def provenance_fields(
    case: Case, *, derived_from: str | None = None, saved_at: datetime | None = None
) -> dict[str, str]:
    """The ``.seg.nrrd`` header fields that say when a result of ``case`` was made, of which
    image, by what, and what it was started from (the reader and case fields are the store's).

    A DICOM SEG says the same in its ContentDate/Time, references, software and
    DerivationDescription.
    """
    from . import __version__

    image = case.image
    fields = {
        "CaseIterator_SavedAt": (saved_at or datetime.now().astimezone()).isoformat(
            timespec="seconds"
        ),
        "CaseIterator_SourceImage": "" if image is None else image.describe(),
        "CaseIterator_Software": f"CaseIterator {__version__}",
    }
    if derived_from:
        fields["CaseIterator_DerivedFrom"] = derived_from
    return fields


__all__ = [
    "NRRD_CASE_KEY",
    "NRRD_READER_KEY",
    "ResultKind",
    "ResultStore",
    "ResultStoreError",
    "ResumeLookupError",
    "ResumeOrigin",
    "ResumePoint",
    "SavedResult",
    "nrrd_fields",
    "provenance_fields",
    "safe_reader_name",
    "same_reader",
    "with_nrrd_fields",
]
