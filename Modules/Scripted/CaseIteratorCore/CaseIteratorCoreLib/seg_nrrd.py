"""``.seg.nrrd`` results (3D Slicer's segmentation file) and plain labelmap files.

Writing goes through slicer-core's own ``vtkMRMLSegmentationStorageNode``, so desktop 3D Slicer
opens the file exactly as one it saved: shared label layers (a 4D file when segments overlap),
segment names, colours, terminology and our algorithm tags, the reference image geometry.
It builds private MRML objects: call it on the GUI thread, like any VTK work.

Reading is plain SimpleITK and numpy (any thread: prefetch workers read drafts and previous
results). It takes Slicer's files, cropped to the painted region or not, and plain labelmaps
(NRRD, NIfTI, MHA...) where value ``i`` is segment ``i`` of the batch's templates.

File names follow SlicerCaseIterator: ``<image name>_<reader>.seg.nrrd`` beside the image.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic_files import fsync_folder
from .batch_file import DEFAULT_SEGMENT, SegmentTemplate
from .geometry import Geometry
from .image_files import _geometry_of
from .mrml_segmentation import (
    ALGORITHM_NAME_TAG,
    ALGORITHM_TYPE_TAG,
    TERMINOLOGY_TAG,
    segment_from_slicer,
)
from .seg_dicom import SegmentationFileError
from .segmentation import Segment, Segmentation

SEG_NRRD_SUFFIX = ".seg.nrrd"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Slicer's first generic segment colours, for labelmap values beyond the templates.
_GENERIC_COLORS = (
    (128, 174, 128),
    (241, 214, 145),
    (177, 122, 101),
    (111, 184, 210),
    (216, 101, 79),
    (221, 130, 101),
    (144, 238, 144),
    (192, 104, 88),
)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def safe_reader_name(reader: str) -> str:
    """``reader`` made safe for a file name, and distinct for distinct readers.

    Names of letters, digits, ``.``, ``_`` and ``-`` stay as they are (SlicerCaseIterator's
    names); any other name has the other characters replaced by ``_`` and a short hash of the
    full name appended, so "J Doe" and "J_Doe" never share a file.
    """
    cleaned = _SAFE.sub("_", reader.strip()).strip("._") or "reader"
    if cleaned == reader:
        return cleaned
    digest = hashlib.sha1(reader.encode("utf-8")).hexdigest()[:6]
    return f"{cleaned}-{digest}"


def result_file_name(stem: str, reader: str) -> str:
    """``"<stem>_<reader>.seg.nrrd"``, as SlicerCaseIterator names a reader's mask."""
    return f"{stem}_{safe_reader_name(reader)}{SEG_NRRD_SUFFIX}"


def unique_result_path(folder: Path | str, stem: str, reader: str) -> Path:
    """The path where ``reader``'s result for image ``stem`` is saved in ``folder``.

    Each reader has a file of their own (see :func:`safe_reader_name`), so another reader's
    file is never the answer. The path may exist: saving again with :func:`write_seg_nrrd`
    keeps the earlier version under a dated name (see :func:`previous_version_path`), so the
    newest result always has the SlicerCaseIterator name and no result is ever lost.
    """
    return Path(folder) / result_file_name(stem, reader)


def previous_version_path(path: Path) -> Path:
    """A free name for the version of ``path`` now on disk: ``<stem>.<saved time>.seg.nrrd``."""
    base = path.name[: -len(SEG_NRRD_SUFFIX)] if path.name.endswith(SEG_NRRD_SUFFIX) else path.stem
    suffix = SEG_NRRD_SUFFIX if path.name.endswith(SEG_NRRD_SUFFIX) else path.suffix
    saved = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%dT%H%M%S")
    candidate = path.with_name(f"{base}.{saved}{suffix}")
    number = 2
    while candidate.exists():
        candidate = path.with_name(f"{base}.{saved}-{number}{suffix}")
        number += 1
    return candidate


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_seg_nrrd(
    segmentation: Segmentation, path: Path | str, *, keep_previous: bool = True
) -> Path:
    """Write ``segmentation`` as a ``.seg.nrrd`` that desktop 3D Slicer opens, atomically.

    Parameters
    ----------
    segmentation
        Segments and voxels. The file covers the whole image grid (compressed), as Slicer
        saves by default, so any NRRD reader lines it up with the image.
    path
        Destination; should end in ``.seg.nrrd``.
    keep_previous
        When ``path`` exists, keep that version under a dated name beside it (see
        :func:`previous_version_path`) instead of replacing it.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    SegmentationFileError
        When slicer-core cannot write the file (the message names it).
    """
    import slicer

    from .mrml_segmentation import segmentation_to_node

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The storage node picks the format from the extension, so the temporary name keeps it.
    temporary = path.with_name(f".{path.name[: -len(SEG_NRRD_SUFFIX)]}.{os.getpid()}.tmp.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = segmentation_to_node(scene, segmentation, None, path.name[: -len(SEG_NRRD_SUFFIX)])
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(temporary))
    storage.SetUseCompression(True)
    try:
        if not storage.WriteData(node):
            raise SegmentationFileError(
                path,
                "slicer-core could not write the segmentation.",
                fix="check that the folder is writable and the disk is not full",
            )
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            # A second name for the old version first: the result name never goes missing.
            previous = previous_version_path(path)
            try:
                os.link(path, previous)
            except OSError:  # file systems without hard links
                import shutil

                shutil.copy2(path, previous)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        scene.Clear(1)
    fsync_folder(path.parent)
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _generic_segment(index: int) -> Segment:
    return Segment(
        name=f"Segment {index + 1}",
        category=DEFAULT_SEGMENT.category,
        type=DEFAULT_SEGMENT.type,
        color=_GENERIC_COLORS[index % len(_GENERIC_COLORS)],
    )


def labelmap_segments(count: int, templates: Sequence[SegmentTemplate]) -> list[Segment]:
    """Segments for label values ``1..count``: template ``i`` for value ``i``, else generic."""
    return [
        Segment.from_template(templates[i]) if i < len(templates) else _generic_segment(i)
        for i in range(count)
    ]


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split("|"):
        key, sep, value = part.partition(":")
        if sep:
            tags[key] = value
    return tags


def _place(label: Path, image_geometry: Geometry, geometry: Geometry, array: np.ndarray):
    """Put ``array`` (on ``image_geometry``, possibly cropped) onto ``geometry``."""
    if geometry.mismatch(image_geometry) is None:
        return array
    offset = image_geometry.voxel_offset_in(geometry)
    if offset is None:
        raise SegmentationFileError(
            label,
            f"is not on the image grid: {geometry.mismatch(image_geometry)} "
            f"(image: {geometry.describe()}). It is not resampled.",
            fix="export it on the image's grid (in Slicer: the image as reference geometry)",
        )
    full = np.zeros(geometry.shape + array.shape[3:], dtype=array.dtype)
    i, j, k = offset
    nk, nj, ni = array.shape[:3]
    full[k : k + nk, j : j + nj, i : i + ni] = array
    return full


def read_seg_nrrd(
    path: Path | str,
    geometry: Geometry,
    *,
    templates: Sequence[SegmentTemplate] = (),
) -> Segmentation:
    """Read a Slicer ``.seg.nrrd``, or a plain labelmap file, onto the image grid ``geometry``.

    Parameters
    ----------
    path
        A ``.seg.nrrd`` (segments from its header, one layer per component), or any labelmap
        SimpleITK reads (value ``i`` is segment ``i``).
    geometry
        The image grid. A file cropped to a region of it (as Slicer saves) is placed; a file on
        another grid is refused.
    templates
        The batch's segments: names, codes and colours of labelmap values (value ``i`` is
        template ``i``; values beyond get generic names), and codes for ``.seg.nrrd`` segments
        of the same name that carry no terminology.

    Raises
    ------
    SegmentationFileError
        When the file cannot be read, is not on the grid, holds fractional values, or
        (labelmaps) negative values.
    """
    path = Path(path)
    if not path.is_file():
        raise SegmentationFileError(path, "no such file.", fix="give an existing file")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = next((line for line in reversed(str(exc).splitlines()) if line.strip()), "")
        raise SegmentationFileError(
            path,
            f"cannot be read as an image ({detail.strip()[:200]}).",
            fix="give a .seg.nrrd or a labelmap in a format such as NRRD or NIfTI",
        ) from exc
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise SegmentationFileError(
            path,
            f"is a {image.GetDimension()}D image of size {image.GetSize()}; a segmentation is 3D.",
        )
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.mod(array, 1) == 0):
            raise SegmentationFileError(
                path,
                "holds fractional values, not labels.",
                fix="save it as a labelmap (integer values)",
            )
        array = array.astype(np.int32)
    if array.size and array.min() < 0:
        raise SegmentationFileError(
            path,
            f"holds negative label values (lowest {int(array.min())}).",
            fix="use values 0 (background) and 1, 2, ... for the segments",
        )
    keys = set(image.GetMetaDataKeys())
    if array.any():
        array = _place(path, _geometry_of(image), geometry, array)
    else:
        # Nothing painted: Slicer then writes a 1x1x1 image off the grid; nothing to place.
        array = np.zeros(geometry.shape + array.shape[3:], dtype=array.dtype)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if "Segment0_ID" in keys or "Segment0_Name" in keys:
        return _from_seg_nrrd(path, image, keys, array, geometry, templates)
    return _from_labelmap(path, array[..., 0], geometry, templates)


def _from_labelmap(
    path: Path, labels: np.ndarray, geometry: Geometry, templates: Sequence[SegmentTemplate]
) -> Segmentation:
    highest = int(labels.max(initial=0))
    count = max(highest, len(templates))
    dtype = np.uint8 if count < 256 else np.uint16
    if count > np.iinfo(np.uint16).max:
        raise SegmentationFileError(path, f"holds label value {highest}; at most 65535 supported.")
    segments = labelmap_segments(count, templates)
    return Segmentation(
        geometry,
        tuple(segments),
        (labels.astype(dtype, copy=False),),
        tuple((0, i + 1) for i in range(count)),
    )


def _from_seg_nrrd(
    path: Path,
    image: sitk.Image,
    keys: set[str],
    array: np.ndarray,
    geometry: Geometry,
    templates: Sequence[SegmentTemplate],
) -> Segmentation:
    by_name = {t.name: Segment.from_template(t) for t in templates}
    segments: list[Segment] = []
    placement: list[tuple[int, int]] = []
    index = 0
    while f"Segment{index}_ID" in keys or f"Segment{index}_Name" in keys:

        def field(name: str, default: str = "", index: int = index) -> str:
            key = f"Segment{index}_{name}"
            return image.GetMetaData(key) if key in keys else default

        name = field("Name") or field("ID") or f"Segment {index + 1}"
        color = [float(c) for c in field("Color", "0.5 0.5 0.5").split()]
        tags = _tags(field("Tags"))
        segments.append(segment_from_slicer(name, color, tags, by_name.get(name)))
        layer = int(field("Layer", str(index)) or 0)
        # Files from before shared layers (Slicer < 4.11) hold one binary segment per layer.
        value = int(field("LabelValue", "1") or 1)
        if layer >= array.shape[3]:
            raise SegmentationFileError(
                path,
                f"segment {name!r} is in layer {layer}, but the file has {array.shape[3]} "
                "layer(s).",
                fix="save it again from 3D Slicer",
            )
        placement.append((layer, value))
        index += 1
    count = max(1, array.shape[3])
    dtype = np.uint8 if int(array.max(initial=0)) < 256 else np.uint16
    layers = tuple(
        np.ascontiguousarray(array[..., n]).astype(dtype, copy=False) for n in range(count)
    )
    return Segmentation(geometry, tuple(segments), layers, tuple(placement))


__all__ = [
    "ALGORITHM_NAME_TAG",
    "ALGORITHM_TYPE_TAG",
    "SEG_NRRD_SUFFIX",
    "TERMINOLOGY_TAG",
    "labelmap_segments",
    "previous_version_path",
    "read_seg_nrrd",
    "result_file_name",
    "safe_reader_name",
    "unique_result_path",
    "write_seg_nrrd",
]
