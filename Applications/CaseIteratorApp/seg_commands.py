"""``caseiterator to-seg`` and ``from-seg``: labelmap files to DICOM SEG and back."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.dicom_files import non_image_reason, read_header
from CaseIteratorCoreLib.dicom_series import DicomSeriesInfo
from CaseIteratorCoreLib.errors import CaseIteratorError
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.image_files import dicom_files_in, read_dicom_files
from CaseIteratorCoreLib.paths import default_reader
from CaseIteratorCoreLib.seg_dicom import (
    SegKind,
    SegmentationFileError,
    build_dicom_seg,
    dicom_seg_geometry,
    next_series_number,
    read_dicom_seg,
    seg_references_series,
    write_dicom_seg,
)
from CaseIteratorCoreLib.seg_nrrd import SEG_NRRD_SUFFIX, read_seg_nrrd, write_seg_nrrd
from CaseIteratorCoreLib.segmentation import Segmentation

from . import console

EXIT_OK, EXIT_UNUSABLE = 0, 2


def _fail(message: str) -> int:
    console.err.print(f"[red]error:[/red] {escape(message)}")
    return EXIT_UNUSABLE


def load_series(path: Path) -> tuple[Geometry, DicomSeriesInfo]:
    """The grid and DICOM facts of the one image series in ``path`` (a folder or a file).

    Raises
    ------
    SegmentationFileError
        When there is no such folder, no DICOM image series in it, more than one, or the series
        cannot be read as a volume (the reasons name the files and slices).
    """
    if not path.exists():
        raise SegmentationFileError(path, "no such folder.", fix="give the folder of one series")
    if path.is_file():
        files = [path]
    else:
        groups, skipped = dicom_files_in(path)
        images = {}
        for series_uid, group in groups.items():
            header, _ = read_header(group[0], tags=["SOPClassUID", "Modality"])
            reason = non_image_reason(
                str(header.get("SOPClassUID", "")) if header else "",
                str(header.get("Modality", "")) if header else "",
            )
            if reason is None:
                images[series_uid] = group
        if not images:
            found = (
                f"{len(groups)} series that are not images (SEG, SR...)"
                if groups
                else f"{len(skipped)} files, none of them DICOM"
                if skipped
                else "no files"
            )
            raise SegmentationFileError(
                path, f"holds no DICOM image series ({found}).", fix="give the folder of a series"
            )
        if len(images) > 1:
            raise SegmentationFileError(
                path,
                f"holds {len(images)} image series ({', '.join(list(images)[:3])}).",
                fix="give the folder of one series",
            )
        files = next(iter(images.values()))
    grid, info, problems = read_dicom_files(files, pixels=False)
    if grid is None or info is None:
        reasons = "; ".join(p.message for p in problems) or "unknown reason"
        raise SegmentationFileError(path, f"is not a loadable series: {reasons}.")
    geometry = grid if isinstance(grid, Geometry) else grid.geometry
    return geometry, info


def run_to_seg(
    series_dir: Path,
    labelmap: Path,
    out: Path,
    *,
    reader: str | None = None,
    batch: Path | None = None,
    labelmap_seg: bool = False,
    series_number: int | None = None,
) -> int:
    """Convert a labelmap on a series' grid into a DICOM SEG; return 0, or 2 on bad input."""
    try:
        templates = load_batch(batch).segments if batch is not None else ()
        geometry, info = load_series(series_dir)
        segmentation = read_seg_nrrd(labelmap, geometry, templates=templates)
        counts = segmentation.voxel_counts()
        if not any(counts):
            raise SegmentationFileError(
                labelmap,
                f"is empty: all {int(np.prod(geometry.size))} voxels are 0, there is no segment "
                "to save.",
                fix="give the labelmap that holds the segmentation",
            )
        plain = not labelmap.name.endswith(SEG_NRRD_SUFFIX)
        if plain and batch is not None:
            unknown = [i + 1 for i, n in enumerate(counts) if n and i >= len(templates)]
            if unknown:
                raise SegmentationFileError(
                    labelmap,
                    f"holds label value(s) {', '.join(map(str, unknown[:10]))} with no segment: "
                    f"{batch} names {len(templates)} segment(s), for values 1 to "
                    f"{len(templates)}.",
                    fix="add [[segments]] to the batch for the other values, or remove them",
                )
        number = series_number or next_series_number([info.header.get("SeriesNumber")])
        reader = reader or default_reader()
        seg = build_dicom_seg(
            segmentation,
            info,
            reader=reader,
            series_number=number,
            kind=SegKind.LABELMAP if labelmap_seg else SegKind.BINARY,
        )
        write_dicom_seg(seg, out)
    except (CaseIteratorError, ValueError) as exc:
        return _fail(str(exc))
    console.err.print(
        f"Wrote {seg.SegmentationType} SEG with {len(segmentation.segments)} segments, "
        f"{seg.NumberOfFrames} frames, series number {number}, by {escape(reader)}, for series "
        f"{info.series_uid}:"
    )
    _print_segments(segmentation)
    console.out.print(str(out), soft_wrap=True)
    return EXIT_OK


def _print_segments(segmentation: Segmentation) -> None:
    table = Table(title_justify="left")
    table.add_column("Value", justify="right")
    table.add_column("Segment")
    table.add_column("Type")
    table.add_column("Voxels", justify="right")
    for index, (segment, count) in enumerate(
        zip(segmentation.segments, segmentation.voxel_counts(), strict=True), start=1
    ):
        table.add_row(str(index), escape(segment.name), escape(str(segment.type)), str(count))
    console.err.print(table)


def write_labelmap(labels: np.ndarray, geometry: Geometry, path: Path) -> Path:
    """Write a label array on ``geometry`` with SimpleITK (format from the suffix), atomically."""
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    # SimpleITK picks the format from the suffix, so the temporary name ends like ``path``.
    temporary = path.with_name(f".{os.getpid()}.tmp-{path.name}")
    try:
        sitk.WriteImage(image, str(temporary), useCompression=True)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def run_from_seg(seg_path: Path, out: Path, *, series_dir: Path | None = None) -> int:
    """Convert a DICOM SEG into a labelmap (or .seg.nrrd); return 0, or 2 on bad input."""
    try:
        if series_dir is not None:
            geometry, info = load_series(series_dir)
            segmentation = read_dicom_seg(seg_path, info, geometry)
            import pydicom

            header = pydicom.dcmread(seg_path, stop_before_pixels=True, force=True)
            if not seg_references_series(header, info.series_uid):
                console.err.print(
                    f"[yellow]warning:[/yellow] {escape(str(seg_path))} does not list series "
                    f"{info.series_uid} among its references; it shares its frame of reference"
                )
        else:
            geometry = dicom_seg_geometry(seg_path)
            segmentation = read_dicom_seg(seg_path, None, geometry)
        if out.name.endswith(SEG_NRRD_SUFFIX):
            write_seg_nrrd(segmentation, out, keep_previous=False)
        else:
            try:
                labels = segmentation.labelmap()
            except ValueError as exc:
                raise SegmentationFileError(
                    seg_path,
                    f"cannot be one labelmap: {exc}.",
                    fix=f"write a {SEG_NRRD_SUFFIX} instead (it keeps overlapping segments)",
                ) from exc
            write_labelmap(labels, geometry, out)
    except (CaseIteratorError, ValueError) as exc:
        return _fail(str(exc))
    grid = "the series grid" if series_dir is not None else "the SEG's own grid"
    console.err.print(
        f"Wrote {len(segmentation.segments)} segments on {grid} ({geometry.describe()}):"
    )
    _print_segments(segmentation)
    console.out.print(str(out), soft_wrap=True)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator to-seg`` and ``caseiterator from-seg`` to the command line."""
    to_seg = sub.add_parser(
        "to-seg",
        help="convert a labelmap on a DICOM series' grid into a DICOM SEG",
        description="Convert a labelmap (NRRD, NIfTI, .seg.nrrd...) drawn on a DICOM series into "
        "a DICOM SEG referencing that series. Label value i is the batch's segment i (generic "
        "names without --batch). Exit 0: written; 2: bad input (nothing written).",
    )
    to_seg.add_argument("series", type=Path, help="folder of the DICOM series (or its file)")
    to_seg.add_argument("labelmap", type=Path, help="labelmap on the series grid")
    to_seg.add_argument("--out", type=Path, required=True, help="SEG file to write")
    to_seg.add_argument("--reader", help="who made it (default: $CASEITERATOR_READER or login)")
    to_seg.add_argument("--batch", type=Path, help="batch .toml whose [[segments]] name values")
    to_seg.add_argument(
        "--labelmap-seg",
        action="store_true",
        help="write a LABELMAP SEG (smaller; segments must not overlap) instead of BINARY",
    )
    to_seg.add_argument(
        "--series-number", type=int, help="SeriesNumber (default: the source's plus one)"
    )
    to_seg.set_defaults(
        run=lambda args: run_to_seg(
            args.series,
            args.labelmap,
            args.out,
            reader=args.reader,
            batch=args.batch,
            labelmap_seg=args.labelmap_seg,
            series_number=args.series_number,
        )
    )
    from_seg = sub.add_parser(
        "from-seg",
        help="convert a DICOM SEG into a labelmap or .seg.nrrd",
        description="Convert a DICOM SEG into a labelmap (value i = segment i) or, for "
        "overlapping segments, a .seg.nrrd. With --series the result is on that series' grid; "
        "without, on the grid the SEG's own frames span (only the slices it covers).",
    )
    from_seg.add_argument("seg", type=Path, help="DICOM SEG file")
    from_seg.add_argument("--out", type=Path, required=True, help="labelmap or .seg.nrrd to write")
    from_seg.add_argument("--series", type=Path, help="folder of the source series (recommended)")
    from_seg.set_defaults(run=lambda args: run_from_seg(args.seg, args.out, series_dir=args.series))
