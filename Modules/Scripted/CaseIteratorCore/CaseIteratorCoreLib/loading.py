"""Loading a case: images as checked volumes with exact geometry, masks checked against them.

This runs off the GUI thread (prefetch workers, ``caseiterator validate``); turning the result
into MRML nodes is :mod:`.mrml_volume`'s job, on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .allocator import release_free_memory
from .cases import Case, DicomSeriesRef, ImageFileRef, ImageRef
from .dicom_series import DicomSeriesInfo, SeriesTolerances
from .errors import CaseIteratorError, CaseLoadError, OperationCancelled
from .geometry import Geometry, Volume
from .image_files import dicom_files_in, file_geometry, read_dicom_files, read_image_file
from .problems import Problem, ProblemCode, Severity, has_errors
from .sources.base import BatchSource
from .tasks import CancelToken, ProgressCallback, check_cancel, no_progress


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One image of a case, ready to show."""

    ref: ImageRef
    volume: Volume
    #: DICOM facts for results (None for non-DICOM files).
    dicom: DicomSeriesInfo | None = None
    #: Window centre and width to show it with.
    window: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class LoadedMask:
    """A mask or pre-segmentation on the main image's grid (labels as integers)."""

    ref: ImageRef
    labels: np.ndarray


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A case ready for the reader: main image, extra images, masks, and any warnings."""

    case: Case
    image: LoadedImage
    extra_images: tuple[LoadedImage, ...] = ()
    masks: tuple[LoadedMask, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    @property
    def nbytes(self) -> int:
        """Memory held by the voxel arrays (for the prefetch cache cap)."""
        total = self.image.volume.nbytes + sum(i.volume.nbytes for i in self.extra_images)
        return total + sum(int(m.labels.nbytes) for m in self.masks)


@dataclass(frozen=True)
class CaseReport:
    """The outcome of checking a case (``caseiterator validate``)."""

    case: Case
    problems: tuple[Problem, ...]
    geometry: Geometry | None = None

    @property
    def ok(self) -> bool:
        """True when the case has no problem at all."""
        return not self.problems


def _read(
    ref: ImageRef, *, pixels: bool, tolerances: SeriesTolerances | None
) -> tuple[Volume | Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    if isinstance(ref, DicomSeriesRef):
        if not ref.files:
            return (
                None,
                None,
                [Problem(ProblemCode.MISSING_FILE, f"{ref.describe()}: no local files to read")],
            )
        return read_dicom_files(ref.files, pixels=pixels, tolerances=tolerances)
    if isinstance(ref, ImageFileRef):
        path = ref.path
        if not path.exists():
            return None, None, [Problem(ProblemCode.MISSING_FILE, f"file not found: {path}")]
        if path.is_dir():
            return _read_dicom_folder(path, pixels=pixels, tolerances=tolerances)
        if pixels:
            volume, problems = read_image_file(path)
            return volume, None, problems
        geometry, problems = file_geometry(path)
        return geometry, None, problems
    raise TypeError(f"cannot read image reference of type {type(ref).__name__}")


def _fetch_and_read(
    source: BatchSource,
    ref: ImageRef,
    pixels: bool,
    tolerances: SeriesTolerances | None,
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> tuple[Volume | Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    """Fetch ``ref`` through its source and read it; failures become problems, not exceptions.

    A server that is down or refuses, or an unexpected error in one case, must not stop the
    batch: the case is reported with the reason and the reader moves on.
    """
    try:
        local = source.locate(ref, progress, cancel)
        return _read(local, pixels=pixels, tolerances=tolerances)
    except OperationCancelled:
        raise
    except CaseIteratorError as exc:
        return None, None, [Problem(ProblemCode.FETCH_FAILED, f"{ref.describe()}: {exc}")]
    except Exception as exc:  # a bug or an odd file in one case must not stop the batch
        return (
            None,
            None,
            [
                Problem(
                    ProblemCode.UNREADABLE_FILE, f"{ref.describe()}: {type(exc).__name__}: {exc}"
                )
            ],
        )


def _read_dicom_folder(
    folder: Path, *, pixels: bool, tolerances: SeriesTolerances | None
) -> tuple[Volume | Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    groups, skipped = dicom_files_in(folder)
    if not groups:
        detail = f" ({len(skipped)} files, none of them DICOM: {skipped[0][1]})" if skipped else ""
        return (
            None,
            None,
            [Problem(ProblemCode.MISSING_FILE, f"{folder}: folder holds no DICOM series{detail}")],
        )
    if len(groups) > 1:
        return (
            None,
            None,
            [
                Problem(
                    ProblemCode.MULTIPLE_SERIES,
                    f"{folder}: folder holds {len(groups)} DICOM series; point the table at one "
                    "series' folder, or use a dicom-folder batch to choose series by rule",
                )
            ],
        )
    files = next(iter(groups.values()))
    return read_dicom_files(files, pixels=pixels, tolerances=tolerances)


def auto_window(volume: Volume) -> tuple[float, float]:
    """Window centre and width from the 1st and 99th percentiles of a voxel sample.

    Sampling every 4th voxel along each axis keeps this to a few ms on a full CT, which is what
    makes the hand-made display node cheap (DESIGN: the automatic histogram costs ~0.5 s).
    """
    sample = volume.array[::4, ::4, ::4]
    if sample.size == 0:
        sample = volume.array
    low, high = np.percentile(sample, [1, 99])
    width = float(max(high - low, 1.0))
    return float(low + high) / 2.0, width


def _mask_problem(ref: ImageRef, message: str, code: ProblemCode) -> Problem:
    # A mask problem never blocks reading the image: the reader sees it and starts empty.
    return Problem(code, f"mask {ref.describe()}: {message}", Severity.WARNING)


def _check_mask(ref: ImageRef, mask: Volume | Geometry, image: Geometry) -> Problem | None:
    grid = mask.geometry if isinstance(mask, Volume) else mask
    difference = image.mismatch(grid)
    if difference is not None and grid.voxel_offset_in(image) is None:
        return _mask_problem(
            ref,
            f"does not match the image grid ({difference}); it is not resampled: "
            "export the mask on the image's grid",
            ProblemCode.MASK_GEOMETRY_MISMATCH,
        )
    if isinstance(mask, Volume):
        array = mask.array
        if not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0):
            return _mask_problem(
                ref,
                "holds fractional values, not labels; save it as a labelmap",
                ProblemCode.MASK_NOT_LABELS,
            )
    return None


def _on_image_grid(mask: Volume, image: Geometry) -> np.ndarray:
    """Place a (possibly cropped) mask on the full image grid."""
    labels = mask.array
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int32)
    if mask.geometry.mismatch(image) is None:
        return labels
    offset = mask.geometry.voxel_offset_in(image)
    assert offset is not None
    full = np.zeros(image.shape, dtype=labels.dtype)
    i, j, k = offset
    nk, nj, ni = labels.shape
    full[k : k + nk, j : j + nj, i : i + ni] = labels
    return full


def inspect_case(
    source: BatchSource,
    case: Case,
    *,
    pixels: bool = True,
    tolerances: SeriesTolerances | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> CaseReport:
    """Check a case: its listing problems, its images' headers (and pixels), its masks' grids.

    Never raises for a bad case: every problem is in the report (the batch goes on).
    """
    problems = list(case.problems)
    if has_errors(problems) or case.image is None:
        return CaseReport(case, tuple(problems))
    geometry = None
    for number, ref in enumerate(case.images):
        check_cancel(cancel)
        result, _, found = _fetch_and_read(source, ref, pixels, tolerances, progress, cancel)
        problems += _prefixed(found, ref if number else None)
        if number == 0:
            if result is None:
                return CaseReport(case, tuple(problems))
            geometry = result.geometry if isinstance(result, Volume) else result
    assert geometry is not None
    for ref in case.masks:
        check_cancel(cancel)
        mask, _, found = _fetch_and_read(source, ref, pixels, tolerances, progress, cancel)
        if mask is None:
            problems += [_mask_problem(ref, p.message, p.code) for p in found]
            continue
        problem = _check_mask(ref, mask, geometry)
        if problem:
            problems.append(problem)
    return CaseReport(case, tuple(problems), geometry)


def _prefixed(problems: list[Problem], ref: ImageRef | None) -> list[Problem]:
    if ref is None:
        return problems
    return [
        Problem(p.code, f"{ref.role} {ref.describe()}: {p.message}", p.severity) for p in problems
    ]


def load_case(
    source: BatchSource,
    case: Case,
    *,
    tolerances: SeriesTolerances | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> LoadedCase:
    """Load a case's images and masks into memory, checked.

    Raises
    ------
    CaseLoadError
        When the main image cannot be read; its ``problems`` say why, naming files and slices.
        Problems with masks or extra images are warnings on the returned case instead.
    """
    try:
        return _load_case(source, case, tolerances, progress, cancel)
    finally:
        # The files read and slices decoded were freed into this thread's malloc arena:
        # give them back, so memory holds the cases and not every loader's high-water mark.
        release_free_memory()


def _load_case(
    source: BatchSource,
    case: Case,
    tolerances: SeriesTolerances | None,
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> LoadedCase:
    problems = list(case.problems)
    if has_errors(problems) or case.image is None:
        raise CaseLoadError(
            case.label, problems or [Problem(ProblemCode.EMPTY_CELL, "the case has no image")]
        )
    loaded: list[LoadedImage] = []
    for number, ref in enumerate(case.images):
        check_cancel(cancel)
        progress(number, len(case.images), f"reading {ref.describe()}")
        volume, info, found = _fetch_and_read(source, ref, True, tolerances, progress, cancel)
        if not isinstance(volume, Volume):
            if number == 0:
                raise CaseLoadError(case.label, problems + found)
            problems += [
                Problem(p.code, f"{ref.role} {ref.describe()}: {p.message}", Severity.WARNING)
                for p in found
            ]
            continue
        problems += _prefixed(found, ref if number else None)
        window = info.window if info and info.window else auto_window(volume)
        loaded.append(LoadedImage(ref, volume, info, window))
    image = loaded[0]
    masks = []
    for ref in case.masks:
        check_cancel(cancel)
        mask, _, found = _fetch_and_read(source, ref, True, tolerances, progress, cancel)
        if not isinstance(mask, Volume):
            problems += [_mask_problem(ref, p.message, p.code) for p in found]
            continue
        problem = _check_mask(ref, mask, image.volume.geometry)
        if problem:
            problems.append(problem)
            continue
        masks.append(LoadedMask(ref, _on_image_grid(mask, image.volume.geometry)))
    return LoadedCase(case, image, tuple(loaded[1:]), tuple(masks), tuple(problems))
