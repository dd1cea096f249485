"""Reading image files (NRRD, NIfTI, MHA... through SimpleITK) and DICOM series folders."""

from __future__ import annotations

import gzip
import os
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_files import read_full, read_header
from .dicom_series import DicomSeriesInfo, SeriesTolerances, series_volume
from .geometry import Geometry, Volume
from .problems import Problem, ProblemCode, Severity


def _geometry_of(reader_or_image) -> Geometry:
    size = reader_or_image.GetSize()
    return Geometry(
        size=(int(size[0]), int(size[1]), int(size[2]) if len(size) > 2 else 1),
        origin=tuple(float(v) for v in reader_or_image.GetOrigin()[:3]),  # type: ignore[arg-type]
        spacing=tuple(float(v) for v in reader_or_image.GetSpacing()[:3]),  # type: ignore[arg-type]
        direction=np.array(reader_or_image.GetDirection(), dtype=float).reshape(
            len(size), len(size)
        )[:3, :3],
    )


def file_geometry(path: Path) -> tuple[Geometry | None, list[Problem]]:
    """Read only the header of an image file and return its grid."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        return None, [_unreadable(path, exc)]
    if reader.GetDimension() not in (3, 4):
        return None, [
            Problem(
                ProblemCode.UNSUPPORTED_PIXELS,
                f"{path.name} is a {reader.GetDimension()}D image; CaseIterator reads 3D volumes",
            )
        ]
    return _geometry_of(reader), _shear_warnings(path)


def read_image_file(path: Path) -> tuple[Volume | None, list[Problem]]:
    """Read a 3D image file with SimpleITK into a :class:`Volume`."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        return None, [_unreadable(path, exc)]
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        return None, [
            Problem(
                ProblemCode.UNSUPPORTED_PIXELS,
                f"{path.name} is a {image.GetDimension()}D image with size {image.GetSize()}; "
                "CaseIterator reads 3D volumes",
            )
        ]
    if image.GetNumberOfComponentsPerPixel() != 1:
        return None, [
            Problem(
                ProblemCode.UNSUPPORTED_PIXELS,
                f"{path.name} has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour "
                "or vector image); CaseIterator reads scalar volumes",
            )
        ]
    return Volume(sitk.GetArrayFromImage(image), _geometry_of(image)), _shear_warnings(path)


def _shear_warnings(path: Path) -> list[Problem]:
    shear = nifti_shear_degrees(path)
    if shear is None or shear <= _SHEAR_TOLERANCE_DEGREES:
        return []
    return [
        Problem(
            ProblemCode.SHEARED_GRID,
            f"{path.name}: its voxel axes are not at right angles (sheared by {shear:.2f}°); "
            "it was read on the nearest right-angled grid, as 3D Slicer and ITK do, so "
            "positions can differ from tools that keep the shear: check it lines up before "
            "relying on measurements",
            Severity.WARNING,
        )
    ]


#: Below this, a NIfTI sform's deviation from right angles is float noise from its writer.
_SHEAR_TOLERANCE_DEGREES = 0.01


def nifti_shear_degrees(path: Path) -> float | None:
    """How far a NIfTI-1 file's sform axes are from right angles, in degrees.

    None when the file is not NIfTI-1 or has no sform (a qform cannot shear). ITK reads a sheared
    sform as the nearest orthogonal matrix and only prints a warning on the console, so the
    reader would not know.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz", ".hdr")):
        return None
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            header = handle.read(348)
    except (OSError, EOFError):
        return None
    if len(header) < 348:
        return None
    for order in ("<", ">"):
        if struct.unpack_from(f"{order}i", header, 0)[0] == 348:
            break
    else:
        return None  # NIfTI-2 or not NIfTI
    (sform_code,) = struct.unpack_from(f"{order}h", header, 254)
    if sform_code <= 0:
        return None
    rows = [struct.unpack_from(f"{order}4f", header, at)[:3] for at in (280, 296, 312)]
    axes = np.array(rows, dtype=float).T  # columns: the voxel axes in patient space
    norms = np.linalg.norm(axes, axis=0)
    if np.any(norms == 0) or not np.all(np.isfinite(axes)):
        return None
    unit = axes / norms
    worst = 0.0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        cosine = abs(float(unit[:, a] @ unit[:, b]))
        worst = max(worst, 90.0 - float(np.degrees(np.arccos(min(1.0, cosine)))))
    return worst


def _unreadable(path: Path, exc: Exception) -> Problem:
    first_line = str(exc).strip().splitlines()
    detail = next((line for line in reversed(first_line) if line.strip()), "")
    return Problem(
        ProblemCode.UNREADABLE_FILE,
        f"{path.name}: cannot be read as an image ({detail.strip()[:200]}); check that the file "
        "is complete and in a format such as NRRD, NIfTI or MHA",
    )


def dicom_files_in(folder: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Group the DICOM files under ``folder`` (recursively) by SeriesInstanceUID.

    Returns the groups and the (file, reason) pairs of files that are not usable DICOM.
    """
    groups: dict[str, list[Path]] = defaultdict(list)
    skipped: list[tuple[Path, str]] = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            ds, reason = read_header(path, tags=["SeriesInstanceUID", "SOPClassUID"])
            if ds is None:
                skipped.append((path, reason or "unreadable"))
                continue
            groups[str(ds.get("SeriesInstanceUID", ""))].append(path)
    return dict(groups), skipped


def read_dicom_files(
    files: list[Path] | tuple[Path, ...],
    *,
    pixels: bool = True,
    tolerances: SeriesTolerances | None = None,
) -> tuple[Volume | Geometry | None, DicomSeriesInfo | None, list[Problem]]:
    """Read the files of one DICOM series and build its checked volume (or grid only).

    Files that cannot be read are problems naming the file: a series with an unreadable
    slice is not loaded, since the volume would silently have a hole.
    """
    # Headers first (checks need all of them), pixels file by file afterwards: only one
    # file's bytes are in memory next to the volume.
    datasets = {}
    problems = []
    for path in files:
        if not path.is_file():
            problems.append(Problem(ProblemCode.MISSING_FILE, f"{path} no longer exists"))
            continue
        ds, reason = read_header(path)
        if ds is None:
            problems.append(Problem(ProblemCode.UNREADABLE_FILE, f"{path.name}: {reason}"))
        else:
            datasets[path] = ds
    if problems:
        return None, None, problems
    return series_volume(
        datasets, tolerances=tolerances, pixels=pixels, read_pixels=read_full if pixels else None
    )
