"""The segmentations a comparison batch names for one case, read onto the case's image grid.

Where they come from is the batch's ``[compare]`` table (:class:`~.batch_file.CompareSpec`):

``columns`` (csv batches)
    The cells of those columns: ``.seg.nrrd``, labelmaps (NRRD, NIfTI, MHA...) or DICOM SEG
    files, resolved as image paths are (the CSV source lists them as the case's masks).
``[[compare.series]]`` (dicom-folder, dicom-db, slicer-db, dicomweb batches)
    The SEG series of the case's study that reference the case's series, matched by reader
    (ContentCreatorName) and/or a SeriesDescription pattern. When several SEG series match a
    rule the newest (series date and time, content date and time, series number) is taken and
    the case says so. On a DICOMweb server they are found with QIDO-RS and retrieved into the
    source's cache.

A segmentation on another grid than the image is resampled onto it (nearest neighbour, in
physical space) only when ``resample = true``; otherwise the case reports the mismatch and the
batch goes on. Nothing here raises for a bad case: every failure is a :class:`~.problems.Problem`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from .batch_file import CompareSpec, SegmentTemplate, SegSeriesRule
from .cases import Case, DicomSeriesRef, ImageFileRef, ImageRef
from .dicom_files import read_header
from .dicom_series import DicomSeriesInfo
from .errors import CaseIteratorError, OperationCancelled
from .geometry import Geometry, Volume
from .image_files import file_geometry
from .loading import _fetch_and_read
from .problems import Problem, ProblemCode, Severity
from .result_store import SEG_HEADER_JSON_KEYS, SEG_HEADER_TAGS, same_reader
from .seg_dicom import SegmentationFileError, dicom_seg_geometry, read_dicom_seg, seg_creator
from .seg_nrrd import read_seg_nrrd
from .segmentation import Segmentation
from .sources.base import BatchSource
from .tasks import CancelToken, check_cancel, no_progress


@dataclass(frozen=True, eq=False)
class LoadedSegmentation:
    """One of a case's compared segmentations, on the image grid.

    Parameters
    ----------
    name
        Its name in the batch's ``[compare]`` table (a CSV column or a series rule's name).
    where
        The file or SEG series it was read from, for tables and messages.
    segmentation
        Its segments and voxels, on the image grid.
    resampled
        Whether it was resampled from another grid (``resample = true``).
    seg_header
        The header of the DICOM SEG instance it was read from (None for other files): a
        result derived from it references it.
    """

    name: str
    where: str
    segmentation: Segmentation
    resampled: bool = False
    seg_header: Dataset | None = None


@dataclass(frozen=True)
class SegSeriesCandidate:
    """A SEG instance of the case's study: its header, and how to get its file."""

    header: Dataset
    fetch: Callable[[], Path]

    @property
    def series_uid(self) -> str:
        return str(self.header.get("SeriesInstanceUID", ""))

    def describe(self) -> str:
        """``SEG series 12 'AI liver' by Doe^Jane (1.2.3...)``."""
        number = self.header.get("SeriesNumber", "")
        text = f"SEG series {number} " if number not in (None, "") else "SEG series "
        description = str(self.header.get("SeriesDescription", "") or "")
        if description:
            text += f"{description!r} "
        creator = seg_creator(self.header)
        if creator:
            text += f"by {creator} "
        return text + f"({self.series_uid})"


def rule_matches(rule: SegSeriesRule, header: Dataset) -> bool:
    """Whether a SEG header is the one ``rule`` describes (all its given keys match)."""
    if rule.reader and not same_reader(header.get("ContentCreatorName"), rule.reader):
        return False
    if rule.description:
        description = str(header.get("SeriesDescription", "") or "")
        if not re.search(rule.description, description, flags=re.IGNORECASE):
            return False
    return True


def _newest_key(header: Dataset) -> tuple:
    try:
        number = int(header.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        number = 0
    return (
        str(header.get("SeriesDate", "") or ""),
        str(header.get("SeriesTime", "") or ""),
        str(header.get("ContentDate", "") or ""),
        str(header.get("ContentTime", "") or ""),
        number,
    )


def _references(header: Dataset, series_uid: str | None) -> bool:
    referenced = {
        str(item.get("SeriesInstanceUID", ""))
        for item in (header.get("ReferencedSeriesSequence") or [])
    }
    # A SEG that names no series at all is taken by its study (some tools leave it out).
    return not series_uid or not referenced or series_uid in referenced


# --------------------------------------------------------------------------------------------
# Finding the SEG series of a case
# --------------------------------------------------------------------------------------------


def _local_candidates(summaries: Sequence[Any], study: str) -> list[SegSeriesCandidate]:
    found = []
    for summary in summaries:
        summary = getattr(summary, "summary", summary)  # slicer-db lists ListedSeries
        if summary.modality != "SEG" or summary.study_uid != study:
            continue
        for path in summary.files:
            header, _ = read_header(path, tags=SEG_HEADER_TAGS)
            if header is not None:
                found.append(SegSeriesCandidate(header, lambda path=path: path))
    return found


def _web_candidates(source: Any, study: str) -> list[SegSeriesCandidate]:
    from .dicomweb_connection import server_errors

    client, server = source.client, source.server
    with server_errors(server, f"the QIDO-RS search for SEG series of study {study}"):
        listed = client.search_for_series(study, search_filters={"Modality": "SEG"})
    found = []
    for entry in listed:
        series = str(Dataset.from_json(entry).get("SeriesInstanceUID", ""))
        with server_errors(server, f"the metadata request of SEG series {series}"):
            metadata = client.retrieve_series_metadata(study, series)
        for item in metadata:
            # Only the header keys: decoding all per-frame groups would take ~0.4 s per SEG.
            header = Dataset.from_json({k: v for k, v in item.items() if k in SEG_HEADER_JSON_KEYS})

            def fetch(header: Dataset = header, series: str = series) -> Path:
                sop = str(header.get("SOPInstanceUID", ""))
                cached = [p for p in source.cache.series_files(study, series) if p.name == sop]
                if not cached:
                    with server_errors(server, f"the WADO-RS retrieval of SEG {sop}"):
                        ds = client.retrieve_instance(study, series, sop)
                    source.cache.store_datasets([ds])
                    cached = [p for p in source.cache.series_files(study, series) if p.name == sop]
                if not cached:
                    raise SegmentationFileError(
                        f"SEG {sop}", "could not be kept in the local cache.", fix="check the disk"
                    )
                return cached[0]

            found.append(SegSeriesCandidate(header, fetch))
    return found


def seg_series_candidates(source: BatchSource, case: Case) -> list[SegSeriesCandidate]:
    """The SEG instances of ``case``'s study that reference its series, from its source.

    Raises
    ------
    CaseIteratorError
        When the server or database cannot be searched (the caller makes it a problem).
    """
    study = case.result.study_uid or ""
    if not study:
        return []
    kind = source.type
    if kind == "dicomweb":
        found = _web_candidates(source, study)
    elif kind == "dicom-db":
        database = source.database  # type: ignore[attr-defined]
        found = _local_candidates(
            database.series_summaries({"StudyInstanceUID": study, "Modality": "SEG"}), study
        )
    elif hasattr(source, "scan"):  # dicom-folder, slicer-db: every series was scanned
        found = _local_candidates(source.scan(), study)  # type: ignore[attr-defined]
    else:
        return []
    series = case.result.series_uid
    return [c for c in found if _references(c.header, series)]


# --------------------------------------------------------------------------------------------
# Reading onto the image grid
# --------------------------------------------------------------------------------------------


def _sitk_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing))
    image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    return image


def resample_onto(segmentation: Segmentation, grid: Geometry) -> Segmentation:
    """``segmentation`` resampled onto ``grid`` (nearest neighbour, in physical space).

    Label values are kept (nearest neighbour never mixes them); voxels of ``grid`` outside the
    segmentation's own grid are background.
    """
    reference = _sitk_image(np.zeros(grid.shape, dtype=np.uint8), grid)
    layers = []
    for layer in segmentation.layers:
        moved = sitk.Resample(
            _sitk_image(layer, segmentation.geometry),
            reference,
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            0,
        )
        layers.append(sitk.GetArrayFromImage(moved).astype(layer.dtype, copy=False))
    return Segmentation(grid, segmentation.segments, tuple(layers), segmentation.placement)


class _GridMismatch(Exception):
    def __init__(self, difference: str) -> None:
        super().__init__(difference)
        self.difference = difference


def _is_dicom_seg(path: Path) -> bool:
    if path.name.lower().endswith((".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")):
        return False
    header, _ = read_header(path, tags=["Modality", "SOPClassUID", "SeriesInstanceUID"])
    return header is not None and str(header.get("Modality", "")) == "SEG"


def _read_nrrd(
    path: Path, grid: Geometry, templates: Sequence[SegmentTemplate], resample: bool
) -> tuple[Segmentation, bool]:
    try:
        return read_seg_nrrd(path, grid, templates=templates), False
    except SegmentationFileError:
        own, _ = file_geometry(path)
        if own is None or grid.mismatch(own) is None or own.voxel_offset_in(grid) is not None:
            raise  # not a grid problem: the file itself is wrong
        if not resample:
            raise _GridMismatch(str(grid.mismatch(own))) from None
        return resample_onto(read_seg_nrrd(path, own, templates=templates), grid), True


def _read_seg(
    path: Path,
    grid: Geometry,
    info: DicomSeriesInfo | None,
    templates: Sequence[SegmentTemplate],
    resample: bool,
) -> tuple[Segmentation, bool]:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise SegmentationFileError(path, f"cannot be read as DICOM ({exc}).") from exc
    try:
        return read_dicom_seg(ds, info, grid, templates=templates), False
    except SegmentationFileError:
        seg_for = str(ds.get("FrameOfReferenceUID", ""))
        if info is not None and seg_for and seg_for != info.frame_of_reference_uid:
            raise  # drawn on another image: resampling would not make it right
        own = dicom_seg_geometry(ds)
        if own.voxel_offset_in(grid) is not None:
            raise  # on the grid: something else is wrong
        if not resample:
            raise _GridMismatch(str(grid.mismatch(own))) from None
        return resample_onto(read_dicom_seg(ds, None, own, templates=templates), grid), True


def read_onto_grid(
    path: Path,
    grid: Geometry,
    *,
    info: DicomSeriesInfo | None = None,
    templates: Sequence[SegmentTemplate] = (),
    resample: bool = False,
) -> tuple[Segmentation, bool]:
    """Read a ``.seg.nrrd``, labelmap or DICOM SEG file onto the image grid.

    Returns
    -------
    (Segmentation, bool)
        The segmentation on ``grid``, and whether it had to be resampled.

    Raises
    ------
    SegmentationFileError
        When the file cannot be read, or is not on the grid and ``resample`` is False (the
        message says how the grids differ and how to allow resampling).
    """
    try:
        if _is_dicom_seg(path):
            # A SEG names its own segments; templates would only add empty ones to both sides.
            return _read_seg(path, grid, info, (), resample)
        return _read_nrrd(path, grid, templates, resample)
    except _GridMismatch as exc:
        raise SegmentationFileError(
            path,
            f"is not on the image grid ({exc.difference}); it is not resampled.",
            fix="set resample = true under [compare] to resample it onto the image grid "
            "(nearest neighbour), or export it on the image's grid",
        ) from None


def image_grid(
    source: BatchSource, case: Case, cancel: CancelToken | None = None
) -> tuple[Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    """The grid (and DICOM facts) of the case's main image, from its headers only."""
    ref: ImageRef | None = case.image
    if ref is None:
        return None, None, [Problem(ProblemCode.EMPTY_CELL, "the case has no image")]
    result, info, problems = _fetch_and_read(source, ref, False, None, no_progress, cancel)
    if isinstance(result, Volume):
        result = result.geometry
    return result, info, problems


def load_segmentations(
    source: BatchSource,
    case: Case,
    spec: CompareSpec,
    grid: Geometry,
    info: DicomSeriesInfo | None = None,
    *,
    templates: Sequence[SegmentTemplate] = (),
    cancel: CancelToken | None = None,
) -> tuple[list[LoadedSegmentation], list[Problem]]:
    """Find and read the segmentations ``spec`` names for ``case``, in ``spec.names`` order.

    Never raises for a bad case (except :class:`~.errors.OperationCancelled`): a missing cell,
    a missing SEG series, an unreadable file or a grid mismatch is a problem naming the
    segmentation and the fix; the others are still read.
    """
    loaded: list[LoadedSegmentation] = []
    problems: list[Problem] = []
    files: list[tuple[str, Path | Callable[[], Path], str, Dataset | None]] = []
    if spec.columns:
        by_role = {ref.role: ref for ref in case.masks}
        row = case.details.get("row", "?")
        for name in spec.names:
            ref = by_role.get(name)
            if ref is None:
                problems.append(
                    Problem(
                        ProblemCode.EMPTY_CELL, f"row {row}: no segmentation in column {name!r}"
                    )
                )
            elif isinstance(ref, ImageFileRef):
                files.append((name, ref.path, str(ref.path), None))
            elif isinstance(ref, DicomSeriesRef) and ref.files:
                files.append((name, ref.files[0], str(ref.files[0]), None))
    else:
        try:
            candidates = seg_series_candidates(source, case)
        except OperationCancelled:
            raise
        except CaseIteratorError as exc:
            return [], [Problem(ProblemCode.FETCH_FAILED, f"SEG series not searched: {exc}")]
        rules = {rule.name: rule for rule in spec.series}
        for name in spec.names:
            rule = rules[name]
            matching = [c for c in candidates if rule_matches(rule, c.header)]
            if not matching:
                wanted = " and ".join(
                    part
                    for part in (
                        f"reader {rule.reader!r}" if rule.reader else "",
                        f"description matching {rule.description!r}" if rule.description else "",
                    )
                    if part
                )
                problems.append(
                    Problem(
                        ProblemCode.MISSING_FILE,
                        f"{name}: no SEG series of this case with {wanted} "
                        f"({len(candidates)} SEG series found for the case)",
                    )
                )
                continue
            chosen = max(matching, key=lambda c: _newest_key(c.header))
            if len({c.series_uid for c in matching}) > 1:
                problems.append(
                    Problem(
                        ProblemCode.MULTIPLE_SERIES,
                        f"{name}: {len(matching)} SEG series match; the newest, "
                        f"{chosen.describe()}, is compared",
                        severity=Severity.WARNING,
                    )
                )
            files.append((name, chosen.fetch, chosen.describe(), chosen.header))
    for name, target, where, header in files:
        check_cancel(cancel)
        try:
            path = target() if callable(target) else target
            segmentation, resampled = read_onto_grid(
                path, grid, info=info, templates=templates, resample=spec.resample
            )
        except OperationCancelled:
            raise
        except SegmentationFileError as exc:
            code = (
                ProblemCode.MASK_GEOMETRY_MISMATCH
                if "not on the image grid" in exc.reason
                else ProblemCode.UNREADABLE_FILE
            )
            problems.append(Problem(code, f"{name}: {exc}"))
            continue
        except CaseIteratorError as exc:
            problems.append(Problem(ProblemCode.FETCH_FAILED, f"{name}: {exc}"))
            continue
        except Exception as exc:  # an odd file in one case must not stop the batch
            problems.append(
                Problem(
                    ProblemCode.UNREADABLE_FILE, f"{name}: {where}: {type(exc).__name__}: {exc}"
                )
            )
            continue
        if header is None and _is_dicom_seg(path):
            header, _ = read_header(path, tags=SEG_HEADER_TAGS)
        loaded.append(LoadedSegmentation(name, where, segmentation, resampled, header))
    return loaded, problems


__all__ = [
    "LoadedSegmentation",
    "SegSeriesCandidate",
    "image_grid",
    "load_segmentations",
    "read_onto_grid",
    "resample_onto",
    "rule_matches",
    "seg_series_candidates",
]
