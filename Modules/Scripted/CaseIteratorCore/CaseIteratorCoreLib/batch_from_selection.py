"""Batch files from what the reader selected in the DICOM browser (no Qt).

A selection (studies and series of one place: the local DICOM database or one DICOMweb server)
becomes a batch file the reading application opens like any other::

    name = "DEMO-001 · 2026-01-31"

    [source]
    type = "dicomweb"               # or "dicom-db" with path = "<database folder>"
    server = "pacs"                 # the site settings' server the browser searched
    uid_list = "DEMO-001_2026-01-31.uids.csv"

and beside it the uid list (``StudyInstanceUID,SeriesInstanceUID`` per row; a row without a
series takes every image series of the study). "Add to batch" appends rows to the uid list of
an existing batch of the same source; the batch file itself is not rewritten, so whatever
else it holds (segments, output) stays as written. Both files are replaced atomically and the
result is loaded back with :func:`.batch_file.load_batch` before it is reported written. A
batch the site policy (:mod:`.site_policy`) would refuse is neither written nor extended.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .atomic_files import replace_file
from .batch_file import BatchDefinition, SourceSpec, load_batch
from .dicom_search import DicomSearch, DicomWebSearch, LocalDatabaseSearch
from .errors import BatchDefinitionError, CaseIteratorError
from .paths import user_data_dir
from .site_policy import SitePolicy, load_site_batch, load_site_policy
from .sources.base import safe_stem

#: Columns of a uid list (the same as a DICOMweb batch's ``uid_list``).
UID_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID")
UID_LIST_SUFFIX = ".uids.csv"


class SelectionError(CaseIteratorError):
    """A selection cannot become (or join) a batch; the message says why and what to do."""


@dataclass(frozen=True)
class SelectedItem:
    """A selected study (``series_uid`` empty: all its image series) or one series."""

    study_uid: str
    series_uid: str = ""


@dataclass(frozen=True)
class BatchOrigin:
    """Where the selected images live: a configured DICOMweb server or a local database."""

    type: str
    server: str = ""
    database: Path | None = None

    @classmethod
    def of(cls, search: DicomSearch) -> BatchOrigin:
        """The origin of what ``search`` found."""
        if isinstance(search, DicomWebSearch):
            return cls("dicomweb", server=search.server.name)
        if isinstance(search, LocalDatabaseSearch):
            return cls("dicom-db", database=search.folder.expanduser().absolute())
        raise SelectionError(f"batches cannot be made from {search.describe()}")

    def describe(self) -> str:
        """``server 'pacs'`` or ``the local DICOM database /path``, for messages."""
        if self.type == "dicomweb":
            return f"server {self.server!r}"
        return f"the local DICOM database {self.database}"

    def source_table(self, uid_list: str) -> dict[str, str]:
        """The ``[source]`` table of a batch over this origin with ``uid_list``."""
        if self.type == "dicomweb":
            return {"type": "dicomweb", "server": self.server, "uid_list": uid_list}
        return {"type": "dicom-db", "path": str(self.database), "uid_list": uid_list}

    def matches(self, batch: BatchDefinition) -> bool:
        """Whether ``batch`` reads from this origin."""
        spec = batch.source
        if spec.type != self.type:
            return False
        if self.type == "dicomweb":
            return spec.options.get("server") == self.server
        path = spec.path("path", must_exist=False)
        return (
            path is not None
            and self.database is not None
            and (path.resolve() == self.database.resolve())
        )


@dataclass(frozen=True)
class BatchWritten:
    """What :func:`write_batch` / :func:`add_to_batch` did."""

    path: Path
    added: int
    already_there: int = 0


def batches_folder() -> Path:
    """Where the browser writes batch files: ``batches`` in the user's data folder (created)."""
    folder = user_data_dir() / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _uid_list_text(rows: Iterable[SelectedItem]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(UID_COLUMNS)
    for row in rows:
        writer.writerow((row.study_uid, row.series_uid))
    return buffer.getvalue()


def _read_uid_list(path: Path) -> list[SelectedItem]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = []
        for row in csv.DictReader(handle):
            keys = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if keys.get("studyinstanceuid"):
                rows.append(
                    SelectedItem(keys["studyinstanceuid"], keys.get("seriesinstanceuid", ""))
                )
        return rows


def _merge(
    existing: Sequence[SelectedItem], new: Iterable[SelectedItem]
) -> tuple[list[SelectedItem], int, int]:
    """``existing`` plus the new items not already covered; (rows, added, already there)."""
    rows = list(existing)
    whole = {r.study_uid for r in rows if not r.series_uid}
    seen = set(rows)
    added = already = 0
    for item in new:
        if item in seen or item.study_uid in whole:
            already += 1
            continue
        rows.append(item)
        seen.add(item)
        if not item.series_uid:
            whole.add(item.study_uid)
        added += 1
    return rows, added, already


def _checked(items: Iterable[SelectedItem]) -> list[SelectedItem]:
    items = list(items)
    if not items:
        raise SelectionError("nothing is selected; select studies or series first.")
    for item in items:
        if not item.study_uid.strip():
            raise SelectionError(f"a selected series ({item.series_uid}) has no study UID.")
    return items


def _verify(path: Path) -> BatchDefinition:
    """Load the batch back: what was written must open in the reader."""
    try:
        return load_batch(path)
    except BatchDefinitionError as exc:  # a defect here, not the reader's doing
        raise SelectionError(f"the batch written to {path} does not load: {exc}") from exc


def write_batch(
    origin: BatchOrigin,
    items: Iterable[SelectedItem],
    *,
    name: str | None = None,
    folder: Path | None = None,
    policy: SitePolicy | None = None,
) -> BatchWritten:
    """Write a new batch file (and its uid list) for ``items`` of ``origin``.

    Parameters
    ----------
    origin
        Where the images are.
    items
        The selected studies and series, in the order their cases should come (duplicates
        and series of a study selected whole are dropped).
    name
        The batch's name; "DICOM selection <date time>" when None.
    folder
        Where to write; :func:`batches_folder` when None.
    policy
        The site's policy; read from the site settings when None.

    Returns
    -------
    BatchWritten
        The batch file's path (a new file: an existing one is never overwritten).

    Raises
    ------
    SelectionError
        When nothing is selected.
    SitePolicyError
        When the site does not allow batches of ``origin`` (nothing is written).
    """
    rows, added, already = _merge([], _checked(items))
    now = dt.datetime.now()
    name = (name or "").strip() or f"DICOM selection {now:%Y-%m-%d %H:%M}"
    folder = Path(folder) if folder is not None else batches_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(name)[:80]
    path, number = folder / f"{stem}.toml", 1
    while path.exists() or path.with_suffix(UID_LIST_SUFFIX).exists():
        number += 1
        path = folder / f"{stem}-{number}.toml"
    uid_list = path.with_suffix(UID_LIST_SUFFIX)
    table = origin.source_table(uid_list.name)
    options = {k: v for k, v in table.items() if k != "type"}
    (policy or load_site_policy()).check_source(SourceSpec(table["type"], options, folder, path))
    # The uid list first: a batch file is never there without its list.
    replace_file(uid_list, _uid_list_text(rows).encode("utf-8"))
    document = {"name": name, "source": origin.source_table(uid_list.name)}
    replace_file(path, tomli_w.dumps(document).encode("utf-8"))
    _verify(path)
    return BatchWritten(path, added, already)


def add_to_batch(
    batch_path: Path,
    origin: BatchOrigin,
    items: Iterable[SelectedItem],
    *,
    policy: SitePolicy | None = None,
) -> BatchWritten:
    """Append ``items`` to the uid list of an existing batch of the same origin.

    Raises
    ------
    SelectionError
        When nothing is selected, the batch reads from another source, or it has no uid
        list (it lists its cases by a query; adding rows would change which cases it holds).
    BatchDefinitionError
        When the batch file does not load; :class:`~.errors.SitePolicyError` when the site
        does not allow it (it is not extended).
    """
    new = _checked(items)
    batch = load_site_batch(batch_path, policy)
    if not origin.matches(batch):
        raise SelectionError(
            f"the batch {batch.path.name} reads from another source than "
            f"{origin.describe()}; start a new batch from this selection instead."
        )
    uid_list = batch.source.path("uid_list", required=False, must_exist=False)
    if uid_list is None:
        raise SelectionError(
            f"the batch {batch.path.name} lists its cases by a query, not by a uid list; "
            "start a new batch from this selection instead."
        )
    existing = _read_uid_list(uid_list) if uid_list.is_file() else []
    rows, added, already = _merge(existing, new)
    if added:
        replace_file(uid_list, _uid_list_text(rows).encode("utf-8"))
    _verify(batch.path)
    return BatchWritten(batch.path, added, already)


def batches_for(origin: BatchOrigin, folder: Path | None = None) -> list[Path]:
    """The browser's batches (with a uid list) of ``origin`` in ``folder``, newest first."""
    folder = Path(folder) if folder is not None else batches_folder()
    found = []
    for path in folder.glob("*.toml"):
        try:
            text = path.read_text(encoding="utf-8")
            if "uid_list" not in tomllib.loads(text).get("source", {}):
                continue
            if origin.matches(load_batch(path)):
                found.append(path)
        except (OSError, tomllib.TOMLDecodeError, BatchDefinitionError):
            continue  # not one of ours, or damaged: not offered
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


__all__ = [
    "UID_COLUMNS",
    "BatchOrigin",
    "BatchWritten",
    "SelectedItem",
    "SelectionError",
    "add_to_batch",
    "batches_folder",
    "batches_for",
    "write_batch",
]
