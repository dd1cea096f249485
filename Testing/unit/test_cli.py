"""The ``caseiterator`` command line: exit codes, tables and JSON a script can rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from CaseIteratorApp.cli import main
from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.progress_store import ProgressStore
from CaseIteratorCoreLib.sources import open_source

from series_factory import write_series


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_validate_demo_batch_is_clean(demo_batch: Path, capsys) -> None:
    code, report = run_json(capsys, "validate", str(demo_batch))
    assert code == 0
    assert len(report["cases"]) == 2 and all(c["ok"] for c in report["cases"])
    assert report["skipped"] == []


def test_validate_reports_bad_case_and_exit_1(tmp_path: Path, capsys) -> None:
    write_series(tmp_path / "dicom" / "good", n=4, seed="g")
    bad = write_series(tmp_path / "dicom" / "bad", n=6, seed="b", origin=(0, 0, 0), dz=2.0)
    bad[3].unlink()
    (tmp_path / "dicom" / "readme.txt").write_text("not dicom")
    code, report = run_json(capsys, "validate", str(tmp_path / "dicom"))
    assert code == 1
    assert sorted(c["ok"] for c in report["cases"]) == [False, True]
    (problem,) = next(c for c in report["cases"] if not c["ok"])["problems"]
    assert "missing slice between z=4.00 mm (IM0003.dcm) and z=8.00 mm (IM0005.dcm)" in problem
    assert report["skipped"] == [
        {"path": str(tmp_path / "dicom" / "readme.txt"), "reason": "not a DICOM file"}
    ]


def test_validate_headers_only_skips_pixel_problems(tmp_path: Path, capsys) -> None:
    files = write_series(tmp_path / "dicom", n=4)
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-40])
    assert run_json(capsys, "validate", str(tmp_path / "dicom"), "--headers-only")[0] == 0
    code, report = run_json(capsys, "validate", str(tmp_path / "dicom"))
    assert code == 1 and "IM0002.dcm: pixel data is truncated" in report["cases"][0]["problems"][0]


def test_validate_unusable_batch_exit_2_names_key_and_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "images").mkdir()
    batch = tmp_path / "batch.toml"
    batch.write_text('name = "x"\n\n[source]\ntype = "dicom-folder"\npaht = "images"\n')
    code = main(["validate", str(batch)])
    err = capsys.readouterr().err
    assert code == 2
    assert "line 5" in err and "'paht'" in err and "did you mean 'path'" in err


def test_validate_missing_source_exit_2(tmp_path: Path, capsys) -> None:
    code, report = run_json(capsys, "validate", str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file or folder" in report["error"]


def test_validate_table_output_names_problem(tmp_path: Path, capsys) -> None:
    table = tmp_path / "cases.csv"
    table.write_text("ID,image\nA,missing.nrrd\n")
    assert main(["validate", str(table)]) == 1
    out = capsys.readouterr().out
    assert "file not found" in out and "1 of 1 cases have problems" in out


def test_status_counts_and_per_case_json(demo_batch: Path, capsys) -> None:
    batch = load_batch(demo_batch)
    cases = list(open_source(batch).iter_cases())
    with ProgressStore() as store:
        view = store.for_batch(batch.key, "alice")
        view.open_case(cases[0].id)
        view.add_time(cases[0].id, 75)
        view.mark_done(cases[0].id, "result-1")
        view.mark_skipped(cases[1].id, "motion artefacts")
    code, status = run_json(capsys, "status", str(demo_batch), "--reader", "alice")
    assert code == 0
    assert status["counts"]["done"] == 1 and status["counts"]["skipped"] == 1
    assert status["cases"][0]["seconds"] == 75 and status["cases"][0]["results"] == ["result-1"]
    assert status["cases"][1]["reason"] == "motion artefacts"
    _, other = run_json(capsys, "status", str(demo_batch), "--reader", "bob")
    assert other["counts"]["todo"] == 2


def test_entry_point_demo_data_then_validate(tmp_path: Path) -> None:
    exe = shutil.which("caseiterator", path=str(Path(sys.executable).parent))
    assert exe, "the caseiterator entry point is installed with the package"
    made = subprocess.run(
        [
            exe,
            "demo-data",
            str(tmp_path / "demo"),
            "--cases",
            "1",
            "--size",
            "64",
            "--slices",
            "12",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    batch = Path(made.stdout.strip())
    assert batch.name == "demo.toml" and batch.is_file()
    checked = subprocess.run([exe, "validate", str(batch)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all cases are fine" in checked.stdout
