"""Comparison mode on a real Orthanc: SEG series of each case found with QIDO-RS by reader and
description, retrieved with WADO-RS into the cache, compared on the CT's grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorApp.cli import main
from CaseIteratorCoreLib.image_files import read_dicom_files
from CaseIteratorCoreLib.seg_dicom import build_dicom_seg, write_dicom_seg
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code

from orthanc_server import OrthancServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from series_factory import write_series

pytestmark = pytest.mark.orthanc

LIVER = Segment(
    "Liver",
    Code("SCT", "123037004", "Anatomical Structure"),
    Code("SCT", "10200004", "Liver"),
    (221, 130, 101),
)


def test_compare_seg_series_on_a_dicomweb_server(
    tmp_path: Path, orthanc: OrthancServer, capsys
) -> None:
    uploads: list[Path] = []
    studies, series = [], []
    for name, shift in (("w1", 0), ("w2", 2)):
        files = write_series(tmp_path / name / "ct", n=10, rows=24, cols=20, seed=f"cmp-{name}")
        volume, info, problems = read_dicom_files(files)
        assert not problems
        truth = np.zeros(volume.geometry.shape, dtype=bool)
        truth[2:8, 4:16, 4:12] = True
        for reader, mask, number, description in (
            ("alice", truth, 100, None),
            ("model", np.roll(truth, shift, axis=2), 200, "AI liver"),
        ):
            segmentation = Segmentation.from_masks([mask], volume.geometry, [LIVER])
            ds = build_dicom_seg(
                segmentation,
                info,
                reader=reader,
                series_number=number,
                series_description=description,
            )
            uploads.append(write_dicom_seg(ds, tmp_path / name / f"seg{number}.dcm"))
        uploads += files
        studies.append(info.study_uid)
        series.append(info.series_uid)
    orthanc.upload_files(uploads)
    (tmp_path / "uids.csv").write_text("StudyInstanceUID\n" + "\n".join(studies) + "\n")
    batch = tmp_path / "web.toml"
    batch.write_text(
        f'name = "web compare"\n[source]\ntype = "dicomweb"\nurl = "{orthanc.dicomweb_url}"\n'
        f'cache = "{tmp_path / "cache"}"\nuid_list = "uids.csv"\n\n[compare]\n'
        'reference = "Alice"\n'
        '[[compare.series]]\nname = "Alice"\nreader = "alice"\n'
        '[[compare.series]]\nname = "AI"\ndescription = "^AI "\n'
    )
    assert main(["compare", str(batch), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_id = {case["id"]: case for case in report["cases"]}
    first, second = by_id[series[0]], by_id[series[1]]
    assert first["problems"] == [] and second["problems"] == []
    assert "SEG series 200 'AI liver' by model" in first["found"]["AI"]
    (liver1,) = first["segments"]
    (liver2,) = second["segments"]
    assert liver1["dice"] == 1.0 and liver1["hd_max_mm"] == 0.0
    assert liver2["dice"] == pytest.approx(2 * 6 / 16)
    assert liver2["hd_max_mm"] == pytest.approx(2 * 0.7, abs=1e-5)  # 2 columns of 0.7 mm
    # The SEGs were retrieved into the batch's cache.
    assert any((tmp_path / "cache").rglob("*")), "nothing was cached"
