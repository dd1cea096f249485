"""``caseiterator compare`` and the batch comparison API: CSV batches with mask columns, DICOM
folders with SEG series per reader, grid mismatches reported or resampled, bad [compare] tables
refused with their line, one CSV row per case and segment, the background job."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CaseIteratorApp.cli import main
from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.comparison import ComparisonJob, compare_case, iter_comparisons
from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase
from CaseIteratorCoreLib.errors import BatchDefinitionError, OperationCancelled
from CaseIteratorCoreLib.image_files import read_dicom_files
from CaseIteratorCoreLib.problems import ProblemCode
from CaseIteratorCoreLib.seg_dicom import build_dicom_seg, write_dicom_seg
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.sources import open_source
from CaseIteratorCoreLib.terminology import Code

from series_factory import write_series
from slicer_dicom_db import build_slicer_database

SPACING = (0.8, 0.8, 2.0)
SHAPE = (20, 40, 40)  # k, j i

SEGMENTS = """
[[segments]]
name = "Liver"
category = "SCT:123037004:Anatomical Structure"
type = "SCT:10200004:Liver"
color = "#dd8265"

[[segments]]
name = "Lesion"
category = "SCT:49755003:Morphologically Altered Structure"
type = "SCT:4147007:Mass"
color = "#ff0000"
"""


def write_volume(path: Path, array: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), True)
    return path


def box_labels(shift: int = 0, lesion: bool = True) -> np.ndarray:
    """Liver (1): a 10x20x20 box shifted ``shift`` columns; lesion (2): a small box."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[5:15, 10:30, 10 + shift : 30 + shift] = 1
    if lesion:
        labels[2:4, 2:6, 2:6] = 2
    return labels


def csv_batch(
    folder: Path, shifts: list[int], *, compare: str | None = None, rows: list[str] | None = None
) -> Path:
    """One case per shift: image, mask (unshifted) and prediction (liver shifted)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = rows or ["ID,image,mask,prediction"]
    for n, shift in enumerate(shifts):
        write_volume(folder / f"img{n}.nrrd", np.zeros(SHAPE, dtype=np.int16))
        write_volume(folder / f"mask{n}.nrrd", box_labels())
        write_volume(folder / f"pred{n}.nrrd", box_labels(shift))
        if rows is None:
            lines.append(f"case{n},img{n}.nrrd,mask{n}.nrrd,pred{n}.nrrd")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    toml = folder / "batch.toml"
    toml.write_text(
        'name = "Comparison"\n\n[source]\ntype = "csv"\npath = "cases.csv"\n'
        + SEGMENTS
        + (compare if compare is not None else '\n[compare]\ncolumns = ["mask", "prediction"]\n')
    )
    return toml


def test_compare_csv_batch_table_csv_and_json(tmp_path: Path, capsys) -> None:
    batch = csv_batch(tmp_path, [0, 2, 5])
    out = tmp_path / "out" / "metrics.csv"
    assert main(["compare", str(batch), "--csv", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Comparison: 3 cases, reference mask" in table
    assert "Per segment (mean / median / worst case)" in table
    assert "3 of 3 cases compared" in table

    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # One row per case and segment.
    assert [(r["case_id"], r["segment"]) for r in rows] == [
        (f"case{n}", s) for n in range(3) for s in ("Liver", "Lesion")
    ]
    liver = [r for r in rows if r["segment"] == "Liver"]
    assert [float(r["dice"]) for r in liver] == pytest.approx([1.0, 18 / 20, 15 / 20])
    assert [float(r["hd_max_mm"]) for r in liver] == pytest.approx([0.0, 1.6, 4.0], abs=1e-5)
    assert {r["matched_by"] for r in rows} == {"code"}
    assert all(r["reference"] == "mask" and r["other"] == "prediction" for r in rows)

    assert main(["compare", str(batch), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (liver_summary,) = [s for s in report["summary"] if s["segment"] == "Liver"]
    dice = liver_summary["metrics"]["dice"]
    assert dice["mean"] == pytest.approx((1 + 0.9 + 0.75) / 3)
    assert dice["median"] == pytest.approx(0.9)
    assert (dice["worst"], dice["worst_case"]) == (pytest.approx(0.75), "case2")
    hd = liver_summary["metrics"]["hd_max_mm"]
    assert (hd["worst"], hd["worst_case"]) == (pytest.approx(4.0, abs=1e-5), "case2")


def test_one_empty_segment_gives_null_distances_and_valid_json(tmp_path: Path, capsys) -> None:
    batch = csv_batch(tmp_path, [1])
    write_volume(tmp_path / "pred0.nrrd", box_labels(1, lesion=False))  # the model missed it
    assert main(["compare", str(batch), "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    lesion = next(s for s in report["cases"][0]["segments"] if s["segment"] == "Lesion")
    assert lesion["dice"] == 0.0 and lesion["empty"] == "other"
    assert lesion["hd95_mm"] is None and lesion["hd_max_mm"] is None and lesion["msd_mm"] is None
    summary = next(s for s in report["summary"] if s["segment"] == "Lesion")
    assert summary["metrics"]["hd95_mm"]["undefined"] == 1
    assert summary["metrics"]["hd95_mm"]["mean"] is None


def test_mismatched_grid_is_reported_unless_resampling_is_allowed(tmp_path: Path, capsys) -> None:
    batch = csv_batch(tmp_path, [0, 0])
    # case1's prediction: the same boxes in patient space, on a grid with half the slice spacing.
    fine = np.repeat(box_labels(), 2, axis=0)
    write_volume(tmp_path / "pred1.nrrd", fine, spacing=(0.8, 0.8, 1.0), origin=(0, 0, -0.5))
    code = main(["compare", str(batch), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    good, bad = report["cases"]
    assert good["ok"] and len(good["segments"]) == 2  # the batch went on
    assert not bad["ok"] and bad["segments"] == []
    (problem,) = bad["problems"]
    assert problem["code"] == "mask-geometry-mismatch"
    assert "pred1.nrrd" in problem["message"] and "not on the image grid" in problem["message"]
    assert "resample = true under [compare]" in problem["message"]

    text = batch.read_text().replace(
        'columns = ["mask", "prediction"]', 'columns = ["mask", "prediction"]\nresample = true'
    )
    batch.write_text(text)
    out = tmp_path / "resampled.csv"
    assert main(["compare", str(batch), "--csv", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    case1 = [r for r in rows if r["case_id"] == "case1"]
    assert [r["resampled"] for r in case1] == ["yes", "yes"]
    # Nearest neighbour from the finer grid lands on the same voxels.
    assert [float(r["dice"]) for r in case1] == pytest.approx([1.0, 1.0])


def test_missing_cell_and_unreadable_file_do_not_stop_the_batch(tmp_path: Path) -> None:
    rows = ["ID,image,mask,prediction", "case0,img0.nrrd,mask0.nrrd,"]
    rows += [f"case{n},img{n}.nrrd,mask{n}.nrrd,pred{n}.nrrd" for n in (1, 2)]
    batch = csv_batch(tmp_path, [0, 0, 0], rows=rows)
    (tmp_path / "pred2.nrrd").write_text("not an image")
    definition = load_batch(batch)
    with open_source(definition) as source:
        results = list(iter_comparisons(source, definition.compare, templates=definition.segments))
    assert [r.ok for r in results] == [False, True, False]
    assert [p.code for p in results[0].problems] == [ProblemCode.EMPTY_CELL]
    assert "no segmentation in column 'prediction'" in results[0].problems[0].message
    assert results[2].problems[0].code is ProblemCode.UNREADABLE_FILE
    assert "pred2.nrrd" in results[2].problems[0].message


def test_a_missing_prediction_file_is_a_warning_and_the_case_still_opens(
    tmp_path: Path,
) -> None:
    """A file named in a compared-only column that is not there does not stop the reader:
    the case lists with a warning, opens, and the comparison names the missing file. (A
    missing file in the image or the pre-segmentation column still stops the case.)"""
    from CaseIteratorCoreLib.loading import load_case
    from CaseIteratorCoreLib.problems import Severity

    rows = ["ID,image,mask,prediction", "case0,img0.nrrd,mask0.nrrd,gone.nrrd"]
    rows += ["case1,img1.nrrd,gone-too.nrrd,pred1.nrrd"]
    batch = csv_batch(tmp_path, [0, 0], rows=rows)
    definition = load_batch(batch)
    with open_source(definition) as source:
        cases = list(source.iter_cases())
        (warning,) = cases[0].problems
        assert warning.severity is Severity.WARNING and "gone.nrrd" in warning.message
        loaded = load_case(source, cases[0])
        assert loaded.image.volume.array.shape == SHAPE
        assert [m.ref.role for m in loaded.masks] == ["mask"]
        (error,) = cases[1].problems
        assert error.severity is Severity.ERROR and "gone-too.nrrd" in error.message
        results = list(iter_comparisons(source, definition.compare, templates=definition.segments))
    assert not results[0].ok
    assert any("gone.nrrd" in p.message for p in results[0].problems)


@pytest.mark.parametrize(
    ("compare", "key", "needle"),
    [
        ('\n[compare]\ncolumns = ["mask", "pred"]\n', "compare.columns", "column 'pred'"),
        ('\n[compare]\ncolumns = ["mask"]\n', "compare", "at least two"),
        (
            '\n[compare]\ncolumns = ["mask", "prediction"]\nreference = "truth"\n',
            "compare.reference",
            "'truth' is not one of",
        ),
        (
            '\n[compare]\ncolumns = ["mask", "prediction"]\nresampel = true\n',
            "compare.resampel",
            "did you mean 'resample'",
        ),
        (
            '\n[compare]\n[[compare.series]]\nname = "AI"\ndescription = "^AI"\n'
            '[[compare.series]]\nname = "B"\nreader = "b"\n',
            "compare.series",
            "this is a csv batch",
        ),
    ],
)
def test_bad_compare_table_is_refused_with_its_line(
    tmp_path: Path, compare: str, key: str, needle: str
) -> None:
    batch = csv_batch(tmp_path, [0], compare=compare)
    with pytest.raises(BatchDefinitionError) as caught:
        open_source(load_batch(batch))
    error = caught.value
    assert error.key == key and needle in str(error)
    lines = batch.read_text().splitlines()
    assert error.line is not None and key.split(".")[-1] in lines[error.line - 1]


def test_batch_without_compare_table_is_unusable(tmp_path: Path, capsys) -> None:
    batch = csv_batch(tmp_path, [0], compare="")
    assert main(["compare", str(batch)]) == 2
    assert "has no [compare] table" in capsys.readouterr().err


def dicom_case(folder: Path, name: str) -> tuple:
    files = write_series(folder / name / "ct", n=12, rows=24, cols=20, seed=name)
    volume, info, problems = read_dicom_files(files)
    assert not problems
    return volume.geometry, info


def write_seg(folder: Path, geometry, info, masks, *, reader: str, number: int, description=None):
    liver = Segment(
        "Liver",
        Code("SCT", "123037004", "Anatomical Structure"),
        Code("SCT", "10200004", "Liver"),
        (221, 130, 101),
    )
    segmentation = Segmentation.from_masks(masks, geometry, [liver])
    ds = build_dicom_seg(
        segmentation, info, reader=reader, series_number=number, series_description=description
    )
    return write_dicom_seg(ds, folder / f"seg{number}.dcm")


def test_dicom_folder_compares_seg_series_by_reader_and_description(tmp_path: Path, capsys):
    data = tmp_path / "dicom"
    series = {}
    for name, shift in (("p1", 0), ("p2", 3)):
        geometry, info = dicom_case(data, name)
        series[name] = info.series_uid
        truth = np.zeros(geometry.shape, dtype=bool)
        truth[2:10, 5:15, 4:12] = True
        write_seg(data / name, geometry, info, [truth], reader="alice", number=100)
        old = np.roll(truth, 6, axis=2)  # an older AI result: the newest one must be taken
        write_seg(
            data / name, geometry, info, [old], reader="model", number=200, description="AI v1"
        )
        newer = np.roll(truth, shift, axis=2)
        write_seg(
            data / name, geometry, info, [newer], reader="model", number=201, description="AI v2"
        )
    batch = tmp_path / "batch.toml"
    batch.write_text(
        'name = "Readers"\n[source]\ntype = "dicom-folder"\npath = "dicom"\n\n[compare]\n'
        'reference = "Alice"\n'
        '[[compare.series]]\nname = "AI"\ndescription = "^ai v"\n'
        '[[compare.series]]\nname = "Alice"\nreader = "Alice"\n'
    )
    code = main(["compare", str(batch), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # two AI series match: a warning names the newest
    # Cases are in study order (random UIDs here): take them by their series.
    by_id = {case["id"]: case for case in report["cases"]}
    first, second = by_id[series["p1"]], by_id[series["p2"]]
    assert first["found"]["Alice"].startswith("SEG series 100 'Segmentation by alice' by alice")
    assert "SEG series 201 'AI v2'" in first["found"]["AI"]
    assert [p["code"] for p in first["problems"]] == ["multiple-series"]
    assert "2 SEG series match; the newest, SEG series 201" in first["problems"][0]["message"]
    (liver1,) = first["segments"]
    (liver2,) = second["segments"]
    assert (liver1["reference"], liver1["other"]) == ("Alice", "AI")
    assert liver1["dice"] == 1.0
    assert liver2["dice"] == pytest.approx(2 * 5 / 16)
    assert liver2["hd_max_mm"] == pytest.approx(3 * 0.7, abs=1e-5)  # columns are 0.7 mm


def test_dicom_case_without_the_readers_seg_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "dicom"
    geometry, info = dicom_case(data, "p1")
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[2:6, 2:8, 2:8] = True
    write_seg(data / "p1", geometry, info, [mask], reader="alice", number=100)
    batch = tmp_path / "batch.toml"
    batch.write_text(
        '[source]\ntype = "dicom-folder"\npath = "dicom"\n[compare]\n'
        '[[compare.series]]\nname = "Alice"\nreader = "alice"\n'
        '[[compare.series]]\nname = "Bob"\nreader = "bob"\n'
    )
    definition = load_batch(batch)
    with open_source(definition) as source:
        (case,) = list(source.iter_cases())
        result = compare_case(source, case, definition.compare)
    assert not result.ok and result.found.keys() == {"Alice"}
    messages = [p.message for p in result.problems]
    assert any("Bob: no SEG series of this case with reader 'bob'" in m for m in messages)


def test_background_job_calls_back_in_batch_order_and_cancels(tmp_path: Path) -> None:
    batch = csv_batch(tmp_path, [0, 1, 2, 3, 4, 5])
    definition = load_batch(batch)
    seen: list[str] = []
    ended = threading.Event()
    outcome: list[BaseException | None] = []
    with open_source(definition) as source:
        job = ComparisonJob(
            source,
            definition.compare,
            on_case=lambda r: seen.append(r.case.id),
            on_done=lambda error: (outcome.append(error), ended.set()),
            templates=definition.segments,
            workers=3,
        ).start()
        assert job.wait(60)
    assert ended.is_set() and outcome == [None]
    assert seen == [f"case{n}" for n in range(6)]

    stopped: list[str] = []
    with open_source(definition) as source:

        def on_case(result) -> None:
            stopped.append(result.case.id)
            job.cancel()  # the reader closed the comparison after the first case

        job = ComparisonJob(source, definition.compare, on_case=on_case, workers=1)
        job.start()
        assert job.wait(60)
    assert stopped == ["case0"]
    assert isinstance(job.error, OperationCancelled)


def test_compare_measures_five_cases(tmp_path: Path, capsys) -> None:
    """Benchmark (prints, asserts nothing about time): 5 cases of 256x256x100, 2 segments."""
    folder = tmp_path / "bench"
    folder.mkdir()
    shape = (100, 256, 256)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    lines = ["ID,image,mask,prediction"]
    for n in range(5):
        write_volume(folder / f"img{n}.nrrd", np.zeros(shape, dtype=np.int16), (0.8, 0.8, 2.0))
        for name, dx in (("mask", 0), ("pred", n)):
            labels = np.zeros(shape, dtype=np.uint8)
            liver = ((i - 128 - dx) * 0.8) ** 2 + ((j - 128) * 0.8) ** 2 + ((k - 50) * 2) ** 2
            lesion = ((i - 60) * 0.8) ** 2 + ((j - 60 - dx) * 0.8) ** 2 + ((k - 30) * 2) ** 2
            labels[liver < 60**2] = 1
            labels[lesion < 15**2] = 2
            write_volume(folder / f"{name}{n}.nrrd", labels, (0.8, 0.8, 2.0))
        lines.append(f"c{n},img{n}.nrrd,mask{n}.nrrd,pred{n}.nrrd")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    batch = folder / "batch.toml"
    batch.write_text(
        '[source]\ntype = "csv"\npath = "cases.csv"\n'
        + SEGMENTS
        + '[compare]\ncolumns = ["mask", "prediction"]\n'
    )
    for workers in (1, 2):
        started = time.perf_counter()
        assert main(["compare", str(batch), "--json", "--workers", str(workers)]) == 0
        elapsed = time.perf_counter() - started
        report = json.loads(capsys.readouterr().out)
        per_case = [c["seconds"] for c in report["cases"]]
        with capsys.disabled():
            print(
                f"\ncompare 5 cases 256x256x100, 2 segments, {workers} worker(s): "
                f"{elapsed:.2f} s total, per case {min(per_case):.2f}-{max(per_case):.2f} s"
            )
        assert len(report["cases"]) == 5 and all(c["ok"] for c in report["cases"])


@pytest.mark.parametrize("kind", ["dicom-db", "slicer-db"])
def test_database_batches_find_seg_series_in_the_database(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "dicom"
    geometry, info = dicom_case(data, "p1")
    truth = np.zeros(geometry.shape, dtype=bool)
    truth[2:10, 5:15, 4:12] = True
    write_seg(data / "p1", geometry, info, [truth], reader="alice", number=100)
    write_seg(data / "p1", geometry, info, [np.roll(truth, 2, axis=1)], reader="bob", number=101)
    db = tmp_path / "db"
    if kind == "dicom-db":
        with LocalDicomDatabase(db) as database:
            database.import_paths(data)
    else:
        build_slicer_database(db, sorted(data.rglob("*.dcm")))
    batch = tmp_path / "batch.toml"
    batch.write_text(
        f'[source]\ntype = "{kind}"\npath = "db"\n[compare]\n'
        '[[compare.series]]\nname = "Alice"\nreader = "alice"\n'
        '[[compare.series]]\nname = "Bob"\nreader = "bob"\n'
    )
    definition = load_batch(batch)
    with open_source(definition) as source:
        (result,) = list(iter_comparisons(source, definition.compare))
    assert result.ok and result.problems == ()
    (liver,) = result.segments
    assert (liver.reference, liver.other) == ("Alice", "Bob")
    assert liver.metrics.dice == pytest.approx(2 * 8 / 20)  # 10 rows shifted by 2
    assert liver.metrics.hd_max_mm == pytest.approx(2 * 0.8, abs=1e-5)  # rows are 0.8 mm


def test_csv_cells_may_mix_dicom_seg_and_labelmap_files(tmp_path: Path) -> None:
    """Image: a DICOM series folder; reference: a DICOM SEG file; other: a NRRD labelmap."""
    geometry, info = dicom_case(tmp_path, "p1")
    truth = np.zeros(geometry.shape, dtype=bool)
    truth[2:10, 5:15, 4:12] = True
    seg = write_seg(tmp_path / "p1", geometry, info, [truth], reader="alice", number=100)
    labels = np.roll(truth, 1, axis=0).astype(np.uint8)  # one slice further
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(tuple(geometry.direction.ravel()))
    sitk.WriteImage(image, str(tmp_path / "model.nrrd"))
    (tmp_path / "cases.csv").write_text(f"ID,image,truth,model\np1,p1/ct,{seg},model.nrrd\n")
    batch = tmp_path / "batch.toml"
    batch.write_text(
        '[source]\ntype = "csv"\npath = "cases.csv"\n'
        '[[segments]]\nname = "Liver"\ncategory = "SCT:123037004:Anatomical Structure"\n'
        'type = "SCT:10200004:Liver"\ncolor = "#dd8265"\n'
        '[compare]\ncolumns = ["truth", "model"]\n'
    )
    definition = load_batch(batch)
    with open_source(definition) as source:
        (result,) = list(
            iter_comparisons(source, definition.compare, templates=definition.segments)
        )
    assert result.problems == ()
    (liver,) = result.segments
    assert liver.matched_by == "code"
    assert liver.metrics.dice == pytest.approx(2 * 7 / 16)
    assert liver.metrics.hd_max_mm == pytest.approx(2.0, abs=1e-5)  # slices are 2 mm apart


def test_dicom_seg_on_another_grid_is_resampled_only_when_allowed(tmp_path: Path) -> None:
    """The SEG was drawn on a 2 mm series; the case's image is a 1 mm series of the same frame
    of reference (same patient space)."""
    frame = "1.2.826.0.1.3680043.8.498.99"

    def same_frame(_k: int, ds) -> None:
        ds.FrameOfReferenceUID = frame

    fine = write_series(tmp_path / "fine", n=20, rows=24, cols=20, dz=1.0, tweak=same_frame)
    # Slices half a millimetre off the 1 mm ones: the SEG's frames lie between the image's.
    coarse = write_series(
        tmp_path / "coarse",
        n=10,
        rows=24,
        cols=20,
        dz=2.0,
        origin=(-5.0, -4.0, 10.5),
        tweak=same_frame,
    )
    fine_volume, _, _ = read_dicom_files(fine)
    coarse_volume, coarse_info, _ = read_dicom_files(coarse)
    truth = np.zeros(coarse_volume.geometry.shape, dtype=bool)
    truth[2:8, 5:15, 4:12] = True  # slice centres 4.5 to 14.5 mm above the first fine slice
    seg = write_seg(tmp_path, coarse_volume.geometry, coarse_info, [truth], reader="a", number=1)
    model = np.zeros(fine_volume.geometry.shape, dtype=np.uint8)
    model[4:16, 5:15, 4:12] = 1  # slices 4 to 15 mm: the same slab on the 1 mm grid
    image = sitk.GetImageFromArray(model)
    image.SetOrigin(fine_volume.geometry.origin)
    image.SetSpacing(fine_volume.geometry.spacing)
    sitk.WriteImage(image, str(tmp_path / "model.nrrd"))
    (tmp_path / "cases.csv").write_text(f"ID,image,truth,model\np1,fine,{seg},model.nrrd\n")
    batch = tmp_path / "batch.toml"
    text = '[source]\ntype = "csv"\npath = "cases.csv"\n' + SEGMENTS
    text += '[compare]\ncolumns = ["truth", "model"]\n'
    batch.write_text(text)
    definition = load_batch(batch)
    with open_source(definition) as source:
        (refused,) = list(iter_comparisons(source, definition.compare))
    (problem,) = refused.problems
    assert problem.code is ProblemCode.MASK_GEOMETRY_MISMATCH and not refused.segments
    assert "truth" in problem.message and "resample = true" in problem.message

    batch.write_text(text + "resample = true\n")
    definition = load_batch(batch)
    with open_source(definition) as source:
        (result,) = list(iter_comparisons(source, definition.compare))
    assert result.resampled == ("truth",) and result.problems == ()
    liver = next(s for s in result.segments if s.segment == "Liver")
    assert liver.matched_by == "code" and liver.metrics.voxels_reference == 12 * 10 * 8
    # Nearest neighbour puts each 1 mm slice on the closest 2 mm slice: at most one slice off.
    assert liver.metrics.dice > 0.9
    assert liver.metrics.hd_max_mm <= 1.0 + 1e-5


@pytest.mark.parametrize(
    ("rules", "key", "needle"),
    [
        (
            'name = "A"\nreader = "a"\n[[compare.series]]\nname = "B"\n',
            "compare.series[1].name",
            "neither reader nor description",
        ),
        (
            'name = "A"\nreader = "a"\n[[compare.series]]\nname = "B"\ndescription = "AI("\n',
            "compare.series[1].description",
            "not a regular expression",
        ),
        (
            'name = "A"\nreader = "a"\n[[compare.series]]\nname = "A"\nreader = "b"\n',
            "compare.series",
            "'A' is named twice",
        ),
        (
            'name = "A"\nreader = "a"\nreadr = "x"\n',
            "compare.series[0].readr",
            "did you mean 'reader'",
        ),
    ],
)
def test_bad_series_rules_are_refused_with_their_line(
    tmp_path: Path, rules: str, key: str, needle: str
) -> None:
    batch = tmp_path / "batch.toml"
    batch.write_text(
        '[source]\ntype = "dicom-folder"\npath = "."\n\n[compare]\n[[compare.series]]\n' + rules
    )
    with pytest.raises(BatchDefinitionError) as caught:
        load_batch(batch)
    error = caught.value
    assert error.key == key and needle in str(error)
    line = batch.read_text().splitlines()[error.line - 1]
    assert key.split(".")[-1].split("[")[0] in line
