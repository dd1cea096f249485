"""Turning the instances of one DICOM series into a checked 3D volume.

Classic series (one slice per file) and enhanced multi-frame objects (one file, per-frame
functional groups) are both reduced to a list of :class:`Frame` headers; the checks and the
geometry are then the same for both. Messages name the file (and frame) and the positions
concerned, because that is what a reader or a PACS admin can act on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from .dicom_files import header_int, non_image_reason, read_native_pixels, sop_class_name
from .geometry import Geometry, Volume
from .problems import Problem, ProblemCode, Severity, has_errors

#: Default tolerance on slice spacing: the larger of this many mm and ``SPACING_TOLERANCE_REL``
#: of the median spacing (rounding of positions in real headers stays well below).
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_REL = 0.01
#: A gap this many times the usual spacing means slices are missing.
MISSING_SLICE_FACTOR = 1.5
#: Direction cosines differing by more than this are a different orientation.
ORIENTATION_TOLERANCE = 1e-3
#: In-plane drift of slice positions (mm) tolerated before calling it a gantry tilt.
TILT_TOLERANCE_MM = 0.05
_MAX_NAMED = 3


@dataclass(frozen=True, eq=False)
class Frame:
    """Geometry and value mapping of one 2D image (a file, or one frame of a multi-frame file)."""

    file: Path
    frame_index: int | None
    sop_instance_uid: str
    rows: int
    columns: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    samples_per_pixel: int = 1
    instance_number: int | None = None
    #: ImageType says LOCALIZER: a scout some scanners put in the series of the volume.
    localizer: bool = False

    @property
    def label(self) -> str:
        """File name (and frame number) for messages."""
        if self.frame_index is None:
            return self.file.name
        return f"{self.file.name} frame {self.frame_index + 1}"


@dataclass(frozen=True, eq=False)
class SeriesLayout:
    """The frames of a series in slice order and the grid they form."""

    frames: tuple[Frame, ...]
    geometry: Geometry
    warnings: tuple[Problem, ...] = field(default=())


@dataclass(frozen=True)
class SeriesTolerances:
    """Tolerances of the geometry checks (a batch may loosen them for odd scanners)."""

    spacing_mm: float = SPACING_TOLERANCE_MM
    spacing_rel: float = SPACING_TOLERANCE_REL
    missing_factor: float = MISSING_SLICE_FACTOR
    orientation: float = ORIENTATION_TOLERANCE
    tilt_mm: float = TILT_TOLERANCE_MM


def _floats(value: object, count: int) -> np.ndarray | None:
    try:
        values = np.array([float(v) for v in value], dtype=float)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def _first(seq_owner: Dataset | None, sequence: str) -> Dataset | None:
    if seq_owner is None or sequence not in seq_owner:
        return None
    seq = seq_owner.get(sequence)
    return seq[0] if seq else None


def _functional_item(
    per_frame: Dataset | None, shared: Dataset | None, name: str
) -> Dataset | None:
    """The item of functional group ``name``, per-frame first, then shared."""
    return _first(per_frame, name) or _first(shared, name)


def frames_of(ds: Dataset, path: Path) -> list[Frame]:
    """List the 2D frames of one instance with their geometry.

    Handles classic single-frame images, enhanced multi-frame images (per-frame and shared
    functional groups) and legacy multi-frame images with a ``GridFrameOffsetVector``.
    """
    rows, columns = header_int(ds, "Rows", 0), header_int(ds, "Columns", 0)
    samples = header_int(ds, "SamplesPerPixel", 1)
    sop_uid = str(ds.get("SOPInstanceUID", ""))
    n_frames = header_int(ds, "NumberOfFrames", 1)
    instance_number = header_int(ds, "InstanceNumber", 0) or None

    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        shared = _first(ds, "SharedFunctionalGroupsSequence")
        per_frames = ds.get("PerFrameFunctionalGroupsSequence") or []
        frames = []
        for index in range(n_frames):
            per = per_frames[index] if index < len(per_frames) else None
            position = _functional_item(per, shared, "PlanePositionSequence")
            orientation = _functional_item(per, shared, "PlaneOrientationSequence")
            measures = _functional_item(per, shared, "PixelMeasuresSequence")
            transform = _functional_item(per, shared, "PixelValueTransformationSequence")
            frames.append(
                Frame(
                    file=path,
                    frame_index=index,
                    sop_instance_uid=sop_uid,
                    rows=rows,
                    columns=columns,
                    position=_floats(position.get("ImagePositionPatient"), 3) if position else None,
                    orientation=(
                        _floats(orientation.get("ImageOrientationPatient"), 6)
                        if orientation
                        else None
                    ),
                    pixel_spacing=_spacing(measures.get("PixelSpacing") if measures else None),
                    slope=_number(transform, "RescaleSlope", 1.0)
                    if transform
                    else _number(ds, "RescaleSlope", 1.0),
                    intercept=_number(transform, "RescaleIntercept", 0.0)
                    if transform
                    else _number(ds, "RescaleIntercept", 0.0),
                    samples_per_pixel=samples,
                    instance_number=instance_number,
                )
            )
        return frames

    position = _floats(ds.get("ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _spacing(ds.get("PixelSpacing"))
    slope, intercept = _number(ds, "RescaleSlope", 1.0), _number(ds, "RescaleIntercept", 0.0)

    localizer = _is_localizer(ds)

    def plane(index: int | None, frame_position: np.ndarray | None) -> Frame:
        return Frame(path, index, sop_uid, rows, columns, frame_position, orientation, spacing,
                     slope, intercept, samples, instance_number, localizer)  # fmt: skip

    if n_frames > 1:
        offsets = _floats(ds.get("GridFrameOffsetVector"), n_frames)
        frames = []
        for index in range(n_frames):
            frame_position = None
            if position is not None and orientation is not None and offsets is not None:
                normal = np.cross(orientation[:3], orientation[3:])
                frame_position = position + offsets[index] * normal
            frames.append(plane(index, frame_position))
        return frames
    return [plane(None, position)]


def _is_localizer(ds: Dataset) -> bool:
    """Whether ImageType's third value is LOCALIZER (a scout or topogram)."""
    value = ds.get("ImageType")
    if value is None:
        return False
    if isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        values = text.split("\\")
    else:  # pydicom's MultiValue
        values = [str(v) for v in value]
    values = [v.strip().upper() for v in values]
    return len(values) > 2 and values[2] == "LOCALIZER"


def _spacing(value: object) -> tuple[float, float] | None:
    values = _floats(value, 2) if value is not None else None
    if values is None or np.any(values <= 0):
        return None
    return (float(values[0]), float(values[1]))


def _number(ds: Dataset | None, keyword: str, default: float) -> float:
    if ds is None:
        return default
    value = ds.get(keyword)
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _name_some(frames: Sequence[Frame]) -> str:
    names = [f.label for f in frames[:_MAX_NAMED]]
    more = len(frames) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _majority_split(frames: Sequence[Frame], key) -> tuple[object, list[Frame]]:
    """Return the most common key value and the frames that differ from it."""
    counts = Counter(key(f) for f in frames)
    common = counts.most_common(1)[0][0]
    return common, [f for f in frames if key(f) != common]


def _clusters(frames: Sequence[Frame], vector, tolerance: float) -> list[list[Frame]]:
    """Group frames whose vectors agree within ``tolerance``, largest group first."""
    groups: list[list[Frame]] = []
    for frame in frames:
        value = vector(frame)
        for group in groups:
            if np.max(np.abs(vector(group[0]) - value)) <= tolerance:
                group.append(frame)
                break
        else:
            groups.append([frame])
    return sorted(groups, key=len, reverse=True)


def check_frames(
    frames: Sequence[Frame],
    *,
    sop_class_uid: str = "",
    modality: str = "",
    tolerances: SeriesTolerances | None = None,
) -> tuple[SeriesLayout | None, list[Problem]]:
    """Check that ``frames`` form one regular 3D grid and work out that grid.

    Returns
    -------
    (layout, problems)
        ``layout`` is None when an error-level problem prevents building the volume.
    """
    tol = tolerances or SeriesTolerances()
    reason = non_image_reason(sop_class_uid, modality)
    if reason:
        return None, [
            Problem(
                ProblemCode.NOT_AN_IMAGE,
                f"not an image series: it holds {reason} ({sop_class_name(sop_class_uid)}), "
                "which cannot be read as a volume",
            )
        ]
    if not frames:
        return None, [Problem(ProblemCode.NOT_AN_IMAGE, "the series holds no image")]

    color = [f for f in frames if f.samples_per_pixel != 1]
    if color:
        names = list(dict.fromkeys(f.file.name for f in color))
        shown = ", ".join(names[:_MAX_NAMED]) + (
            f" and {len(names) - _MAX_NAMED} more files" if len(names) > _MAX_NAMED else ""
        )
        return None, [
            Problem(
                ProblemCode.UNSUPPORTED_PIXELS,
                f"colour images are not supported ({color[0].samples_per_pixel} samples per pixel "
                f"in {shown}); CaseIterator reads greyscale volumes",
            )
        ]
    problems: list[Problem] = []
    scouts = [f for f in frames if f.localizer]
    if scouts and len(scouts) < len(frames):
        # Some scanners keep the scout in the series of the volume: it is not a slice of it.
        frames = [f for f in frames if not f.localizer]
        problems.append(
            Problem(
                ProblemCode.LOCALIZER_LEFT_OUT,
                f"{len(scouts)} localizer {'image' if len(scouts) == 1 else 'images'} "
                f"({_name_some(scouts)}) left out of the volume",
                Severity.WARNING,
            )
        )
    no_geometry = [
        f for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None
    ]
    if no_geometry:
        problems.append(
            Problem(
                ProblemCode.MISSING_GEOMETRY,
                "no patient geometry (ImagePositionPatient, ImageOrientationPatient or "
                f"PixelSpacing missing) in {_name_some(no_geometry)}",
            )
        )
        return None, problems

    size, odd = _majority_split(frames, lambda f: (f.columns, f.rows))
    if odd:
        sizes = Counter((f.columns, f.rows) for f in frames)
        listing = ", ".join(f"{n} are {c}x{r}" for (c, r), n in sizes.most_common())
        problems.append(
            Problem(
                ProblemCode.MIXED_SIZE,
                f"mixed matrix size within the series: {listing} (odd ones: {_name_some(odd)})",
            )
        )
    groups = _clusters(frames, lambda f: f.orientation, tol.orientation)
    if len(groups) > 1:
        listing = "; ".join(
            f"{len(g)} {'image is' if len(g) == 1 else 'images are'} oriented "
            f"{_fmt_vec(g[0].orientation)} ({_name_some(g)})"
            for g in groups[:_MAX_NAMED]
        )
        more = (
            f"; and {len(groups) - _MAX_NAMED} more orientations"
            if len(groups) > _MAX_NAMED
            else ""
        )
        problems.append(
            Problem(
                ProblemCode.MIXED_ORIENTATION,
                f"mixed slice orientation within the series ({len(groups)} orientations): "
                f"{listing}{more}",
            )
        )
    _, odd = _majority_split(frames, lambda f: tuple(round(s, 4) for s in f.pixel_spacing))
    if odd:
        problems.append(
            Problem(
                ProblemCode.MIXED_PIXEL_SPACING,
                f"mixed pixel spacing within the series: {_name_some(odd)} "
                f"{'has' if len(odd) == 1 else 'have'} {odd[0].pixel_spacing} mm",
            )
        )
    if has_errors(problems):
        return None, problems
    if len(frames) == 1:
        return None, [
            *problems,
            Problem(
                ProblemCode.SINGLE_SLICE,
                f"single-slice series ({frames[0].label}): a volume needs at least two slices",
            ),
        ]

    orientation = frames[0].orientation
    assert orientation is not None
    row_dir, col_dir = _unit(orientation[:3]), _unit(orientation[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    positions = np.array([f.position for f in frames])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)

    duplicates = np.flatnonzero(steps < 1e-3)
    if duplicates.size:
        first = int(duplicates[0])
        problems.append(
            Problem(
                ProblemCode.DUPLICATE_POSITION,
                f"{duplicates.size + 1 if duplicates.size == 1 else duplicates.size} images share "
                f"a slice position (first: {frames[first].label} and {frames[first + 1].label} at "
                f"{_axis_name(normal)}={along[first]:.2f} mm): the series holds more than one "
                "volume (phases, echoes or repeats); select one of them",
            )
        )
        return None, problems

    # Gantry tilt: slices stack along a line that is not the slice normal.
    in_plane = (positions - positions[0]) - np.outer(along - along[0], normal)
    drift = np.linalg.norm(in_plane, axis=1)
    if drift.max() > tol.tilt_mm:
        angle = np.degrees(np.arctan2(drift[-1], along[-1] - along[0]))
        problems.append(
            Problem(
                ProblemCode.GANTRY_TILT,
                f"gantry tilt of {angle:.1f}° (slices shift {drift[-1]:.1f} mm sideways from "
                f"{frames[0].label} to {frames[-1].label}): the slices do not form a rectangular "
                "volume; reconstruct the series without tilt",
            )
        )
        return None, problems

    median = float(np.median(steps))
    tolerance = max(tol.spacing_mm, tol.spacing_rel * median)
    axis = _axis_name(normal)
    gaps = np.flatnonzero(steps > tol.missing_factor * median)
    if gaps.size:
        descriptions = []
        for g in gaps[:_MAX_NAMED]:
            missing = max(1, round(steps[g] / median) - 1)
            descriptions.append(
                f"{missing} missing slice{'s' if missing > 1 else ''} between "
                f"{axis}={along[g]:.2f} mm ({frames[g].label}) and {axis}={along[g + 1]:.2f} mm "
                f"({frames[g + 1].label})"
            )
        more = f" and {gaps.size - _MAX_NAMED} more gaps" if gaps.size > _MAX_NAMED else ""
        problems.append(
            Problem(
                ProblemCode.MISSING_SLICE,
                "series has "
                + "; ".join(descriptions)
                + more
                + f" (usual spacing {median:.2f} mm)",
            )
        )
        return None, problems
    deviation = np.abs(steps - median)
    if deviation.max() > tolerance:
        worst = int(np.argmax(deviation))
        problems.append(
            Problem(
                ProblemCode.NONUNIFORM_SPACING,
                f"non-uniform slice spacing: from {steps.min():.3f} to {steps.max():.3f} mm "
                f"(tolerance {tolerance:.3f} mm); the most different step is between "
                f"{frames[worst].label} ({axis}={along[worst]:.2f} mm) and "
                f"{frames[worst + 1].label} ({axis}={along[worst + 1]:.2f} mm)",
            )
        )
        return None, problems

    spacing_k = float((along[-1] - along[0]) / (len(frames) - 1))
    row_spacing, col_spacing = frames[0].pixel_spacing  # type: ignore[misc]
    geometry = Geometry(
        size=(int(size[0]), int(size[1]), len(frames)),
        origin=tuple(float(v) for v in positions[0]),  # type: ignore[arg-type]
        spacing=(float(col_spacing), float(row_spacing), spacing_k),
        direction=np.column_stack([row_dir, col_dir, normal]),
    )
    return SeriesLayout(tuple(frames), geometry, tuple(problems)), problems


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _axis_name(normal: np.ndarray) -> str:
    """'z' for axial stacks, 'x' sagittal, 'y' coronal, 'position' when oblique."""
    axis = int(np.argmax(np.abs(normal)))
    return "xyz"[axis] if abs(normal[axis]) > 0.9 else "position"


def _fmt_vec(values: np.ndarray | None) -> str:
    if values is None:
        return "(none)"
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def pixel_values(
    layout: SeriesLayout,
    datasets: dict[Path, Dataset],
    read_pixels: Callable[[Path], Dataset] | None = None,
) -> tuple[np.ndarray | None, list[Problem]]:
    """Decode the frames of ``layout`` in slice order, with rescale slope/intercept applied.

    The result is ``int16`` when every rescaled value fits, else ``int32`` for integer rescales,
    else ``float32``. Decoding failures name the file and the transfer syntax.

    Files are decoded one at a time straight into the result, and each dataset is dropped from
    ``datasets`` once decoded (the dict is consumed). With ``read_pixels`` (``datasets`` then
    hold headers only), each file is read whole just before it is decoded: the peak is the
    result plus one file, not a stack of files, decoded slices and copies.
    """
    frames = layout.frames
    slopes = [f.slope for f in frames]
    intercepts = [f.intercept for f in frames]
    integral = all(float(v).is_integer() for v in slopes + intercepts)
    slots: dict[Path, list[tuple[int, Frame]]] = {}
    for k, frame in enumerate(frames):
        slots.setdefault(frame.file, []).append((k, frame))
    problems: list[Problem] = []
    out = np.empty(layout.geometry.shape, dtype=np.int16 if integral else np.float32)
    info16 = np.iinfo(np.int16)
    for path, entries in slots.items():
        ds = datasets.pop(path)
        array = None
        if read_pixels is not None:
            try:
                array = read_native_pixels(path, ds)
            except (OSError, ValueError):
                array = None  # pydicom reads it again below and names what is wrong
            if array is None:
                try:
                    ds = read_pixels(path)
                except Exception as exc:  # pydicom raises many types for damaged files
                    problems.append(_unreadable_file(path, exc))
                    continue
        if array is None:
            try:
                array = ds.pixel_array
            except Exception as exc:  # pydicom raises many types for bad pixel data
                problems.append(_decode_problem(path, ds, exc))
                continue
            finally:
                del ds  # the file's bytes (and pydicom's cached array) go as soon as possible
        else:
            del ds
        if problems:
            continue  # keep collecting decode problems of the other files
        for k, frame in entries:
            # A one-frame enhanced file decodes to one 2D plane, like a classic image.
            single = frame.frame_index is None or array.ndim == 2
            plane = array if single else array[frame.frame_index]
            if plane.shape != out.shape[1:]:
                return None, [
                    Problem(
                        ProblemCode.UNSUPPORTED_PIXELS,
                        f"{frame.label}: decoded image is {plane.shape} pixels but the header "
                        f"says {frame.rows}x{frame.columns}",
                    )
                ]
            if integral:
                values = _rescaled(plane, int(frame.slope), int(frame.intercept))
                if out.dtype == np.int16 and (
                    values.min() < info16.min or values.max() > info16.max
                ):
                    out = out.astype(np.int32)  # once, for the rare series beyond int16
                out[k] = values
            else:
                out[k] = plane.astype(np.float32) * np.float32(frame.slope) + np.float32(
                    frame.intercept
                )
        del array
    if problems:
        return None, problems
    return out, []


def _rescaled(plane: np.ndarray, slope: int, intercept: int) -> np.ndarray:
    """``plane * slope + intercept`` in integers wide enough, with one temporary slice.

    8- and 16-bit pixels with the rescales scanners use (CT: 1 and -1024) fit int32, computed
    in place; anything else goes through int64 (no overflow possible).
    """
    if plane.dtype.itemsize <= 2 and abs(slope) <= 1024 and abs(intercept) <= 2**20:
        values = plane.astype(np.int32)
        if slope != 1:
            values *= slope
        if intercept:
            values += intercept
        return values
    return plane.astype(np.int64) * slope + intercept


def _decode_problem(path: Path, ds: Dataset, exc: Exception) -> Problem:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    syntax_text = f"{syntax.name} ({syntax})" if syntax else "unknown transfer syntax"
    text = str(exc)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return Problem(ProblemCode.UNREADABLE_FILE, f"{path.name}: the file has no pixel data")
    expected = _native_pixel_bytes(ds)
    actual = len(ds.PixelData) if "PixelData" in ds else 0
    if expected and actual < expected:
        return Problem(
            ProblemCode.UNREADABLE_FILE,
            f"{path.name}: pixel data is truncated ({actual} of {expected} bytes); the file is "
            "damaged: send it again from the scanner or PACS",
        )
    if syntax is not None and syntax.is_compressed:
        return Problem(
            ProblemCode.UNDECODABLE,
            f"{path.name}: cannot decode compressed pixel data in {syntax_text}: {text.strip()}; "
            "convert the series to an uncompressed transfer syntax (for example with "
            "'gdcmconv --raw') or ask the PACS to send it uncompressed",
        )
    return Problem(
        ProblemCode.UNREADABLE_FILE,
        f"{path.name}: cannot read pixel data ({syntax_text}): {text.strip()}",
    )


def _unreadable_file(path: Path, exc: Exception) -> Problem:
    return Problem(
        ProblemCode.UNREADABLE_FILE,
        f"{path.name}: unreadable DICOM file ({type(exc).__name__}: {exc}); the file is "
        "damaged: send it again from the scanner or PACS",
    )


def _native_pixel_bytes(ds: Dataset) -> int:
    """Bytes of uncompressed pixel data the header promises (0 when compressed or unknown)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or syntax.is_compressed:
        return 0
    bits = header_int(ds, "BitsAllocated", 0)
    count = (
        header_int(ds, "Rows", 0)
        * header_int(ds, "Columns", 0)
        * header_int(ds, "NumberOfFrames", 1)
        * header_int(ds, "SamplesPerPixel", 1)
    )
    return (count * bits + 7) // 8


@dataclass(frozen=True, eq=False)
class DicomSeriesInfo:
    """What a result must reference about the source series, and the header to copy from."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    #: SOP Instance UID per slice ``k`` (repeated for frames of one multi-frame file).
    sop_instance_uids: tuple[str, ...]
    #: 1-based frame number per slice ``k`` for multi-frame sources, else None.
    frame_numbers: tuple[int | None, ...]
    files: tuple[Path, ...]
    #: Header of the first instance without pixel data (patient and study modules for results).
    header: Dataset
    window: tuple[float, float] | None = None


def series_volume(
    datasets: dict[Path, Dataset],
    *,
    tolerances: SeriesTolerances | None = None,
    pixels: bool = True,
    read_pixels: Callable[[Path], Dataset] | None = None,
) -> tuple[Volume | Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    """Build the volume (or, with ``pixels=False``, only the grid) of one series.

    Parameters
    ----------
    datasets
        The instances of one series by file path: full datasets, or headers only when
        ``read_pixels`` is given or ``pixels`` is False.
    tolerances
        Geometry check tolerances.
    pixels
        Whether to decode pixel data; False only checks headers and returns the geometry.
    read_pixels
        Reads a whole file when its pixels are needed (one file in memory at a time).
    """
    if not datasets:
        return None, None, [Problem(ProblemCode.NOT_AN_IMAGE, "the series holds no file")]
    first_path, first = next(iter(datasets.items()))
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets.values()}
    if len(series_uids) > 1:
        return (
            None,
            None,
            [
                Problem(
                    ProblemCode.MULTIPLE_SERIES,
                    f"the files belong to {len(series_uids)} different series; give one series",
                )
            ],
        )
    sop_class = str(first.get("SOPClassUID", ""))
    modality = str(first.get("Modality", ""))
    frames = [frame for path, ds in datasets.items() for frame in frames_of(ds, path)]
    multi_frame_files = [p for p, ds in datasets.items() if header_int(ds, "NumberOfFrames", 1) > 1]
    if multi_frame_files and len(datasets) > 1:
        return (
            None,
            None,
            [
                Problem(
                    ProblemCode.MULTIPLE_SERIES,
                    f"the series mixes {len(multi_frame_files)} multi-frame file(s) "
                    f"({multi_frame_files[0].name}) with other files; CaseIterator reads one "
                    "multi-frame object or a stack of single-frame images",
                )
            ],
        )
    layout, problems = check_frames(
        frames, sop_class_uid=sop_class, modality=modality, tolerances=tolerances
    )
    if layout is None:
        return None, None, problems
    first = datasets[layout.frames[0].file]  # not a localizer left out
    info = DicomSeriesInfo(
        study_uid=str(first.get("StudyInstanceUID", "")),
        series_uid=str(first.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        sop_class_uid=sop_class,
        sop_instance_uids=tuple(f.sop_instance_uid for f in layout.frames),
        frame_numbers=tuple(
            None if f.frame_index is None else f.frame_index + 1 for f in layout.frames
        ),
        files=tuple(dict.fromkeys(f.file for f in layout.frames)),
        header=_header_copy(first),
        window=_window(first),
    )
    del first_path
    if not pixels:
        return layout.geometry, info, list(layout.warnings)
    array, pixel_problems = pixel_values(layout, datasets, read_pixels)
    if array is None:
        return None, info, pixel_problems
    return Volume(array, layout.geometry), info, list(layout.warnings)


def _header_copy(ds: Dataset) -> Dataset:
    header = Dataset()
    for element in ds:
        if element.tag.group in (0x7FE0,) or element.keyword in (
            "PerFrameFunctionalGroupsSequence",
            "PixelData",
            "FloatPixelData",
            "DoubleFloatPixelData",
        ):
            continue
        header.add(element)
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header


def _window(ds: Dataset) -> tuple[float, float] | None:
    """Window centre and width from the header (first value when several), if present."""
    source = ds
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    voi = _first(shared, "FrameVOILUTSequence") if shared is not None else None
    if voi is not None:
        source = voi
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        center = float(
            center[0] if hasattr(center, "__len__") and not isinstance(center, str) else center
        )
        width = float(
            width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
        )
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width > 0 else None
