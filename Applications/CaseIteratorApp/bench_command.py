"""``caseiterator bench``: timings a reader notices, measured on synthetic data in one run.

``bench`` is a group: each target registers itself through :data:`TARGETS` (``bench seg``
here; add ``bench next-case`` and others by appending their ``register`` function).

``bench seg`` times saving a segmentation as DICOM SEG on a 512x512x300 CT with three segments
(liver, lesion, aorta from the demo phantom's labels), from the slicer-core segmentation node
and from the core segmentation to the file on disk, beside dcmqi's ``itkimage2segimage`` (3D
Slicer's own exporter) and highdicom's constructor on the same data in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.table import Table

from . import console
from .bench_next_case import register_next_case

#: Issue 5's targets: at most this long from the segmentation node to the SEG file ...
TARGET_SECONDS = 0.4
#: ... and at least this many times faster than dcmqi on the same data.
TARGET_RATIO = 4.0

_SEGMENTS = (
    # (phantom label, name, category, type, colour)
    (1, "Liver", "SCT:123037004:Anatomical Structure", "SCT:10200004:Liver", (221, 130, 101)),
    (
        2,
        "Lesion",
        "SCT:49755003:Morphologically Altered Structure",
        "SCT:4147007:Mass",
        (216, 64, 64),
    ),
    (3, "Aorta", "SCT:123037004:Anatomical Structure", "SCT:15825003:Aorta", (224, 97, 76)),
)


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": len(values),
    }


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _dcmqi_metainfo(reader: str) -> dict:
    attributes = []
    for label, name, category, type_, color in _SEGMENTS:
        cat, typ = category.split(":", 2), type_.split(":", 2)
        attributes.append(
            {
                "labelID": label,
                "SegmentLabel": name,
                "SegmentDescription": name,
                "SegmentAlgorithmType": "MANUAL",
                "SegmentedPropertyCategoryCodeSequence": {
                    "CodingSchemeDesignator": cat[0], "CodeValue": cat[1], "CodeMeaning": cat[2]
                },
                "SegmentedPropertyTypeCodeSequence": {
                    "CodingSchemeDesignator": typ[0], "CodeValue": typ[1], "CodeMeaning": typ[2]
                },
                "recommendedDisplayRGBValue": list(color),
            }
        )  # fmt: skip
    return {
        "ContentCreatorName": f"{reader}^",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": f"Segmentation by {reader}",
        "SeriesNumber": "2",
        "InstanceNumber": "1",
        "BodyPartExamined": "ABDOMEN",
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": f"Segmentation by {reader}",
        "segmentAttributes": [attributes],
    }


def run_bench_seg(
    *,
    as_json: bool = False,
    size: int = 512,
    slices: int = 300,
    repeats: int = 5,
    with_highdicom: bool = True,
) -> int:
    """Time saving a DICOM SEG (ours from node and from core, highdicom, dcmqi); print a table."""
    import SimpleITK as sitk
    import slicer

    from CaseIteratorCoreLib.batch_file import SegmentTemplate
    from CaseIteratorCoreLib.demo_data import phantom, write_ct_series
    from CaseIteratorCoreLib.geometry import Volume
    from CaseIteratorCoreLib.image_files import read_dicom_files
    from CaseIteratorCoreLib.mrml_segmentation import node_to_segmentation, segmentation_to_node
    from CaseIteratorCoreLib.mrml_volume import volume_to_node
    from CaseIteratorCoreLib.seg_dicom import SegKind, build_dicom_seg, write_dicom_seg
    from CaseIteratorCoreLib.segmentation import Segment, Segmentation
    from CaseIteratorCoreLib.terminology import Code

    if repeats < 1:
        console.err.print(f"--repeats must be at least 1, got {repeats}")
        return 2
    reader = "bench"
    with tempfile.TemporaryDirectory(prefix="caseiterator-bench-") as tmp:
        folder = Path(tmp)
        console.err.print(f"Preparing a {size}x{size}x{slices} CT with 3 segments ...")
        ph = phantom(0, size=size, n_slices=slices)
        files = write_ct_series(
            ph,
            folder / "ct",
            study_uid="2.25.1001",
            series_uid="2.25.1002",
            frame_of_reference_uid="2.25.1003",
        )
        grid, info, problems = read_dicom_files(files, pixels=False)
        if grid is None or info is None:
            console.err.print(f"benchmark series unreadable: {problems}")
            return 2
        geometry = ph.geometry
        labels = np.where(np.isin(ph.labels, [s[0] for s in _SEGMENTS]), ph.labels, 0).astype(
            np.uint8
        )
        templates = [
            SegmentTemplate(name, Code.parse(category), Code.parse(type_), color)
            for _, name, category, type_, color in _SEGMENTS
        ]
        segments = [Segment.from_template(t) for t in templates]
        segmentation = Segmentation.from_labelmap(labels, geometry, segments)
        scene = slicer.vtkMRMLScene()
        volume_node = volume_to_node(scene, Volume(ph.hu, geometry), "CT")
        node = segmentation_to_node(scene, segmentation, volume_node, "Segmentation")

        out = folder / "out"
        out.mkdir()

        def from_node(path: Path) -> None:
            current = node_to_segmentation(node, geometry, segments)
            write_dicom_seg(build_dicom_seg(current, info, reader=reader, series_number=2), path)

        def from_core(path: Path, kind: SegKind = SegKind.BINARY) -> None:
            seg = build_dicom_seg(segmentation, info, reader=reader, series_number=2, kind=kind)
            write_dicom_seg(seg, path)

        def timed(action: Callable[[], object]) -> float:
            start = time.perf_counter()
            action()
            return time.perf_counter() - start

        # The first save pays for imports and IOD tables (the app warms them up at start).
        first_call = timed(lambda: from_node(out / "first.dcm"))
        node_times = [timed(lambda: from_node(out / "node.dcm")) for _ in range(repeats)]
        core_times = [timed(lambda: from_core(out / "core.dcm")) for _ in range(repeats)]
        labelmap_times = [
            timed(lambda: from_core(out / "labelmap.dcm", SegKind.LABELMAP)) for _ in range(repeats)
        ]
        import pydicom

        ours = pydicom.dcmread(out / "node.dcm", stop_before_pixels=True)
        result: dict = {
            "ours_s": {
                "node": _stats(node_times),
                "core": _stats(core_times),
                "labelmap_core": _stats(labelmap_times),
            },
            "first_call_s": round(first_call, 4),
            "seg_bytes": (out / "node.dcm").stat().st_size,
            "labelmap_bytes": (out / "labelmap.dcm").stat().st_size,
            "frames": int(ours.NumberOfFrames),
            "size": [size, size, slices],
            "segments": len(segments),
            "repeats": repeats,
        }

        if with_highdicom:
            result["highdicom_s"] = _bench_highdicom(files, labels, templates, out, repeats)

        tool = _tool("itkimage2segimage")
        dcmqi_times: list[float] = []
        if tool is None:
            console.err.print("[yellow]dcmqi's itkimage2segimage not found: no comparison[/yellow]")
            result["dcmqi_s"] = None
        else:
            image = sitk.GetImageFromArray(labels)
            image.SetOrigin(geometry.origin)
            image.SetSpacing(geometry.spacing)
            image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
            sitk.WriteImage(image, str(folder / "labels.nrrd"))
            (folder / "meta.json").write_text(json.dumps(_dcmqi_metainfo(reader)))
            command = [
                tool,
                "--inputImageList", str(folder / "labels.nrrd"),
                "--inputDICOMDirectory", str(folder / "ct"),
                "--outputDICOM", str(out / "dcmqi.dcm"),
                "--inputMetadata", str(folder / "meta.json"),
            ]  # fmt: skip
            for _ in range(min(repeats, 3)):
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                dcmqi_times.append(time.perf_counter() - start)
                if done.returncode != 0:
                    console.err.print(f"itkimage2segimage failed: {done.stderr[-500:]}")
                    return 2
            result["dcmqi_s"] = _stats(dcmqi_times)["p50"]
            result["dcmqi_detail_s"] = _stats(dcmqi_times)
            result["dcmqi_bytes"] = (out / "dcmqi.dcm").stat().st_size
            dcmqi = pydicom.dcmread(out / "dcmqi.dcm", stop_before_pixels=True)
            result["dcmqi_frames"] = int(dcmqi.NumberOfFrames)

    node_p50 = result["ours_s"]["node"]["p50"]
    result["ratio"] = round(result["dcmqi_s"] / node_p50, 2) if result["dcmqi_s"] else None
    result["target"] = {"ours_max_s": TARGET_SECONDS, "min_ratio": TARGET_RATIO}
    result["meets_target"] = bool(
        node_p50 <= TARGET_SECONDS and (result["ratio"] is None or result["ratio"] >= TARGET_RATIO)
    )
    if as_json:
        console.print_json(result)
    else:
        _print_table(result, node_times, core_times, labelmap_times, dcmqi_times)
    return 0


def _bench_highdicom(
    files: list[Path], labels: np.ndarray, templates: list, out: Path, repeats: int
) -> dict[str, float]:
    """highdicom's own constructor and pydicom's writer, from the source headers, for reference."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=t.name,
            segmented_property_category=hd.sr.CodedConcept(
                t.category.value, t.category.scheme, t.category.meaning
            ),
            segmented_property_type=hd.sr.CodedConcept(t.type.value, t.type.scheme, t.type.meaning),
            algorithm_type="MANUAL",
            display_color=hd.color.CIELabColor.from_rgb(*t.color),
        )
        for number, t in enumerate(templates, start=1)
    ]
    times = []
    for _ in range(min(repeats, 2)):
        start = time.perf_counter()
        seg = hd.seg.Segmentation(
            headers, labels, "BINARY", descriptions, generate_uid(), 2, generate_uid(), 1,
            "CaseIterator", "CaseIterator", "bench", "1", content_creator_name="bench^",
        )  # fmt: skip
        seg.save_as(out / "highdicom.dcm")
        times.append(time.perf_counter() - start)
    return _stats(times)


def _print_table(
    result: dict,
    node_times: list[float],
    core_times: list[float],
    labelmap_times: list[float],
    dcmqi_times: list[float],
) -> None:
    size = "x".join(str(v) for v in result["size"])
    table = Table(
        title=f"DICOM SEG of a {size} CT, {result['segments']} segments "
        f"({result['frames']} frames)",
        title_justify="left",
    )
    for column in ("Path", "p50 s", "min s", "max s", "file MB"):
        table.add_column(column, justify="left" if column == "Path" else "right")

    def row(name: str, times: list[float], size_bytes: int | None) -> None:
        stats = _stats(times)
        mb = f"{size_bytes / 2**20:.1f}" if size_bytes else ""
        table.add_row(name, f"{stats['p50']:.3f}", f"{stats['min']:.3f}", f"{stats['max']:.3f}", mb)

    row("CaseIterator: segmentation node -> BINARY SEG file", node_times, result["seg_bytes"])
    row("CaseIterator: core segmentation -> BINARY SEG file", core_times, result["seg_bytes"])
    row("CaseIterator: core segmentation -> LABELMAP SEG file", labelmap_times,
        result["labelmap_bytes"])  # fmt: skip
    if "highdicom_s" in result:
        hd_stats = result["highdicom_s"]
        table.add_row(
            "highdicom Segmentation() + save_as (reference)",
            f"{hd_stats['p50']:.3f}", f"{hd_stats['min']:.3f}", f"{hd_stats['max']:.3f}", "",
        )  # fmt: skip
    if dcmqi_times:
        row(
            "dcmqi itkimage2segimage (3D Slicer's exporter)", dcmqi_times, result.get("dcmqi_bytes")
        )
    console.out.print(table)
    console.out.print(
        f"first call (imports, IOD tables): {result['first_call_s']:.3f} s; "
        + (f"dcmqi / ours (node): {result['ratio']:.1f}x; " if result["ratio"] else "")
        + f"target: <= {TARGET_SECONDS} s and >= {TARGET_RATIO:g}x: "
        + ("met" if result["meets_target"] else "NOT met")
    )


def register_seg(targets: argparse._SubParsersAction) -> None:
    """Add ``caseiterator bench seg``."""
    parser = targets.add_parser(
        "seg",
        help="time saving a DICOM SEG, beside dcmqi",
        description="Time writing the DICOM SEG of a 512x512x300 CT with 3 segments, from the "
        "slicer-core segmentation node and from the core segmentation to the file on disk, "
        "beside dcmqi's itkimage2segimage and highdicom on the same data in the same run.",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512)")
    parser.add_argument("--slices", type=int, default=300, help="slices (default 300)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs each (default 5)")
    parser.add_argument(
        "--no-highdicom", action="store_true", help="skip the highdicom reference timing"
    )
    parser.set_defaults(
        run=lambda args: run_bench_seg(
            as_json=args.json,
            size=args.size,
            slices=args.slices,
            repeats=args.repeats,
            with_highdicom=not args.no_highdicom,
        )
    )


#: ``register(targets)`` of each ``bench`` target, in the order ``--help`` lists them.
TARGETS: list[Callable[[argparse._SubParsersAction], None]] = [register_seg, register_next_case]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``caseiterator bench`` group and its targets to the command line."""
    parser = sub.add_parser(
        "bench",
        help="measure timings (bench seg: saving a DICOM SEG)",
        description="Benchmarks on synthetic data; each target prints a table (or --json).",
    )
    targets = parser.add_subparsers(dest="bench_target", metavar="TARGET")
    for register_target in TARGETS:
        register_target(targets)

    def no_target(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(run=no_target)
