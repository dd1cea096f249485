"""``caseiterator to-seg``, ``from-seg`` and ``bench seg``: results, exit codes, messages."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from CaseIteratorApp import bench_command, seg_commands
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.image_files import read_dicom_files
from CaseIteratorCoreLib.seg_dicom import (
    LABEL_MAP_SEGMENTATION_STORAGE,
    SEGMENTATION_STORAGE,
    read_dicom_seg,
    seg_creator,
)
from CaseIteratorCoreLib.seg_nrrd import read_seg_nrrd

from series_factory import write_series

BATCH = """\
name = "t"
[source]
type = "dicom-folder"
path = "."
[[segments]]
name = "Liver"
category = "SCT:123037004:Anatomical Structure"
type = "SCT:10200004:Liver"
color = "#dd8265"
[[segments]]
name = "Lesion"
category = "SCT:49755003:Morphologically Altered Structure"
type = "SCT:4147007:Mass"
color = "#d84040"
"""


def cli(*args: str) -> int:
    """Run the commands as ``caseiterator`` does (the same ``register`` functions)."""
    parser = argparse.ArgumentParser(prog="caseiterator")
    sub = parser.add_subparsers(dest="command")
    seg_commands.register(sub)
    bench_command.register(sub)
    parsed = parser.parse_args(list(args))
    return int(parsed.run(parsed))


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, Geometry]:
    folder = tmp_path / "series"
    files = write_series(folder, n=6, rows=12, cols=10, orientation=(1, 0, 0, 0, -1, 0))
    geometry, _, problems = read_dicom_files(files, pixels=False)
    assert problems == [] and isinstance(geometry, Geometry)
    return folder, geometry


def write_labelmap(path: Path, labels: np.ndarray, geometry: Geometry) -> Path:
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(tuple(geometry.direction.ravel()))
    sitk.WriteImage(image, str(path))
    return path


def two_labels(geometry: Geometry) -> np.ndarray:
    labels = np.zeros(geometry.shape, np.uint8)
    labels[1:4, 2:8, 2:7] = 1
    labels[2:3, 4:6, 3:5] = 2
    return labels


def errors(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich may wrap long lines


def test_to_seg_names_segments_from_the_batch_and_from_seg_gives_the_labels_back(
    tmp_path: Path, series: tuple[Path, Geometry], capsys
) -> None:
    folder, geometry = series
    labels = two_labels(geometry)
    labelmap = write_labelmap(tmp_path / "mask.nii.gz", labels, geometry)
    (tmp_path / "batch.toml").write_text(BATCH)
    out = tmp_path / "out" / "seg.dcm"
    code = cli("to-seg", str(folder), str(labelmap), "--out", str(out), "--reader", "Ann Lee",
               "--batch", str(tmp_path / "batch.toml"))  # fmt: skip
    assert code == 0, errors(capsys)
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SEGMENTATION_STORAGE
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Liver", "Lesion"]
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "4147007"
    assert seg_creator(ds) == "Ann Lee" and ds.SeriesNumber == 2  # the source's is 1
    dciodvfy = Path(sys.executable).parent / "dciodvfy"
    report = subprocess.run([str(dciodvfy), str(out)], capture_output=True, text=True)
    assert "Error" not in report.stdout + report.stderr
    assert str(out) in capsys.readouterr().out

    back = tmp_path / "back.nrrd"
    assert cli("from-seg", str(out), "--out", str(back), "--series", str(folder)) == 0
    image = sitk.ReadImage(str(back))
    assert np.array_equal(sitk.GetArrayFromImage(image), labels)
    np.testing.assert_allclose(image.GetDirection(), geometry.direction.ravel(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin, atol=1e-6)


def test_to_seg_labelmap_kind_and_generic_names_without_batch(
    tmp_path: Path, series: tuple[Path, Geometry]
) -> None:
    folder, geometry = series
    labelmap = write_labelmap(tmp_path / "mask.nrrd", two_labels(geometry), geometry)
    out = tmp_path / "seg.dcm"
    assert cli("to-seg", str(folder), str(labelmap), "--out", str(out), "--labelmap-seg") == 0
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == LABEL_MAP_SEGMENTATION_STORAGE
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Background", "Segment 1", "Segment 2"]


def test_from_seg_without_series_uses_the_seg_own_grid_and_seg_nrrd_keeps_overlap(
    tmp_path: Path, series: tuple[Path, Geometry]
) -> None:
    folder, geometry = series
    from CaseIteratorCoreLib.seg_dicom import build_dicom_seg, write_dicom_seg
    from CaseIteratorCoreLib.segmentation import Segment, Segmentation
    from CaseIteratorCoreLib.terminology import Code

    _, info, _ = read_dicom_files(sorted(folder.glob("*.dcm")), pixels=False)
    tissue = Code("SCT", "85756007", "Tissue")
    big = np.zeros(geometry.shape, bool)
    big[1:4, 2:8, 2:7] = True
    small = np.zeros(geometry.shape, bool)
    small[2, 4:6, 3:5] = True
    overlapping = Segmentation.from_masks(
        [big, small], geometry, [Segment("A", tissue, tissue, (1, 2, 3)),
                                 Segment("B", tissue, tissue, (4, 5, 6))]
    )  # fmt: skip
    seg = write_dicom_seg(
        build_dicom_seg(overlapping, info, reader="x", series_number=2), tmp_path / "seg.dcm"
    )
    assert cli("from-seg", str(seg), "--out", str(tmp_path / "own.seg.nrrd")) == 0
    own = sitk.ReadImage(str(tmp_path / "own.seg.nrrd"))
    assert own.GetSize()[2] == 3  # slices 1-3, the ones the SEG covers
    on_grid = read_seg_nrrd(tmp_path / "own.seg.nrrd", geometry)
    assert np.array_equal(on_grid.mask(0), big) and np.array_equal(on_grid.mask(1), small)


def test_from_seg_overlap_into_one_labelmap_is_refused(
    tmp_path: Path, series: tuple[Path, Geometry], capsys
) -> None:
    folder, geometry = series
    from CaseIteratorCoreLib.seg_dicom import build_dicom_seg, write_dicom_seg
    from CaseIteratorCoreLib.segmentation import Segment, Segmentation
    from CaseIteratorCoreLib.terminology import Code

    _, info, _ = read_dicom_files(sorted(folder.glob("*.dcm")), pixels=False)
    tissue = Code("SCT", "85756007", "Tissue")
    mask = np.zeros(geometry.shape, bool)
    mask[2, 2:4, 2:4] = True
    both = Segmentation.from_masks(
        [mask, mask], geometry, [Segment("A", tissue, tissue, (1, 2, 3)),
                                 Segment("B", tissue, tissue, (4, 5, 6))]
    )  # fmt: skip
    seg = write_dicom_seg(build_dicom_seg(both, info, reader="x", series_number=2),
                          tmp_path / "seg.dcm")  # fmt: skip
    out = tmp_path / "labels.nrrd"
    assert cli("from-seg", str(seg), "--out", str(out), "--series", str(folder)) == 2
    message = errors(capsys)
    assert "segments overlap" in message and "write a .seg.nrrd instead" in message
    assert not out.exists()


def test_to_seg_bad_inputs_exit_2_naming_the_file(
    tmp_path: Path, series: tuple[Path, Geometry], capsys
) -> None:
    folder, geometry = series
    (tmp_path / "batch.toml").write_text(BATCH)
    out = tmp_path / "seg.dcm"

    def to_seg(series_dir: Path, labelmap: Path, *extra: str) -> str:
        code = cli("to-seg", str(series_dir), str(labelmap), "--out", str(out), *extra)
        assert code == 2
        assert not out.exists()
        return errors(capsys)

    good = write_labelmap(tmp_path / "good.nrrd", two_labels(geometry), geometry)

    # A labelmap on another grid: says how it differs.
    other = Geometry(geometry.size, geometry.origin, (0.7, 0.8, 3.0), geometry.direction)
    shifted = write_labelmap(tmp_path / "other.nrrd", two_labels(geometry), other)
    message = to_seg(folder, shifted)
    assert f"{shifted}: is not on the image grid" in message
    assert "spacing (0.7, 0.8, 3) mm instead of (0.7, 0.8, 2) mm" in message

    # An empty labelmap.
    empty = write_labelmap(tmp_path / "empty.nrrd", np.zeros(geometry.shape, np.uint8), geometry)
    assert f"{empty}: is empty: all 720 voxels are 0" in to_seg(folder, empty)

    # More label values than the batch has segments.
    labels = two_labels(geometry)
    labels[5, 0, 0] = 3
    extra = write_labelmap(tmp_path / "extra.nrrd", labels, geometry)
    message = to_seg(folder, extra, "--batch", str(tmp_path / "batch.toml"))
    assert f"{extra}: holds label value(s) 3 with no segment" in message
    assert "names 2 segment(s), for values 1 to 2" in message

    # Series missing, not DICOM, or not a volume.
    assert f"{tmp_path / 'nowhere'}: no such folder" in to_seg(tmp_path / "nowhere", good)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    message = to_seg(tmp_path / "notes", good)
    assert "holds no DICOM image series (1 files, none of them DICOM)" in message
    gappy = tmp_path / "gappy"
    files = write_series(gappy, n=6, rows=12, cols=10, seed="gap")
    files[2].unlink()
    message = to_seg(gappy, good)
    assert f"{gappy}: is not a loadable series: series has 1 missing slice" in message
    assert "IM0002.dcm" in message

    # The labelmap itself missing.
    assert f"{tmp_path / 'missing.nrrd'}: no such file" in to_seg(folder, tmp_path / "missing.nrrd")


def test_from_seg_of_a_non_seg_file_exits_2(
    tmp_path: Path, series: tuple[Path, Geometry], capsys
) -> None:
    folder, _ = series
    image = sorted(folder.glob("*.dcm"))[0]
    assert cli("from-seg", str(image), "--out", str(tmp_path / "x.nrrd")) == 2
    assert f"{image}: is not a DICOM SEG (Modality 'CT'" in errors(capsys)


def test_to_seg_from_a_seg_nrrd_keeps_its_segments(
    tmp_path: Path, series: tuple[Path, Geometry]
) -> None:
    folder, geometry = series
    from CaseIteratorCoreLib.seg_nrrd import write_seg_nrrd
    from CaseIteratorCoreLib.segmentation import Segment, Segmentation
    from CaseIteratorCoreLib.terminology import Code

    spleen = Segment("Spleen", Code("SCT", "123037004", "Anatomical Structure"),
                     Code("SCT", "78961009", "Spleen"), (157, 108, 162))  # fmt: skip
    segmentation = Segmentation.from_labelmap(two_labels(geometry) == 1, geometry, [spleen])
    path = write_seg_nrrd(segmentation, tmp_path / "case_jdoe.seg.nrrd")
    out = tmp_path / "seg.dcm"
    assert cli("to-seg", str(folder), str(path), "--out", str(out)) == 0
    _, info, _ = read_dicom_files(sorted(folder.glob("*.dcm")), pixels=False)
    back = read_dicom_seg(out, info, geometry)
    assert back.segments == (spleen,)
    assert np.array_equal(back.mask(0), two_labels(geometry) == 1)


def test_bench_seg_json_small(capsys) -> None:
    code = cli("bench", "seg", "--json", "--size", "32", "--slices", "12", "--repeats", "2")
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["ours_s"]) == {"node", "core", "labelmap_core"}
    assert result["ours_s"]["node"]["runs"] == 2
    assert result["ours_s"]["node"]["p50"] > 0
    assert result["dcmqi_s"] > 0 and result["ratio"] == pytest.approx(
        result["dcmqi_s"] / result["ours_s"]["node"]["p50"], rel=0.02
    )
    assert result["seg_bytes"] > 0 and result["labelmap_bytes"] > 0
    assert result["frames"] == result["dcmqi_frames"]  # the same frames as 3D Slicer's exporter
    assert result["size"] == [32, 32, 12] and result["segments"] == 3
    assert result["highdicom_s"]["p50"] > 0


def test_bench_without_target_shows_help_and_exits_2(capsys) -> None:
    assert cli("bench") == 2
    assert "seg" in capsys.readouterr().err
