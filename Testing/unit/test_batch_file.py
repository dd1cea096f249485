"""Batch files: what a site admin writes, and the errors that point at the line to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from CaseIteratorCoreLib.batch_file import DEFAULT_SEGMENT, load_batch
from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.sources import open_source

GOOD = """\
name = "Liver study"

[source]
type = "dicom-folder"
path = "images"

[source.series]
modality = "CT"
description = "portal"

[output]
format = "dicom-seg"
destination = "results"

[[segments]]
name = "Liver"
category = "SCT:123037004:Anatomical Structure"
type = "SCT:10200004:Liver"
color = "#dd8265"

[[segments]]
name = "Lesion"
category = "SCT:49755003:Morphologically Altered Structure"
type = "SCT:4147007:Mass"
region = "SCT:10200004:Liver"
color = "#f0e000"

[prefetch]
depth = 3
max_memory_mb = 512
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "batch.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> BatchDefinitionError:
    with pytest.raises(BatchDefinitionError) as info:
        batch = load_batch(write(tmp_path, text))
        open_source(batch)
    return info.value


def test_good_batch_file(tmp_path: Path) -> None:
    batch = load_batch(write(tmp_path, GOOD))
    assert batch.name == "Liver study"
    assert batch.source.type == "dicom-folder"
    assert batch.output.format == "dicom-seg" and batch.output.folder == tmp_path / "results"
    assert [s.name for s in batch.segments] == ["Liver", "Lesion"]
    lesion = batch.segments[1]
    assert (lesion.type.scheme, lesion.type.value, lesion.type.meaning) == (
        "SCT",
        "4147007",
        "Mass",
    )
    assert lesion.region is not None and lesion.region.meaning == "Liver"
    assert lesion.color == (240, 224, 0)
    assert (batch.prefetch.depth, batch.prefetch.max_memory_mb) == (3, 512)
    source = open_source(batch)
    assert source.rule.modalities == ("CT",)


def test_misspelt_key_names_line_and_suggestion(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace("destination = ", "destnation = "))
    assert error.line == 13 and error.key == "output.destnation"
    assert "did you mean 'destination'" in str(error)


def test_bad_color_names_the_segment_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('color = "#f0e000"', 'color = "yellow"'))
    assert error.line == 26 and error.key == "segments[1].color"
    assert "'yellow' is not '#rrggbb'" in str(error)


def test_bad_code_names_the_segment(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('"SCT:10200004:Liver"\ncolor', '"Liver"\ncolor'))
    assert error.key == "segments[0].type" and error.line == 18
    assert "SCHEME:CODE:Meaning" in str(error)


def test_unknown_source_type(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('"dicom-folder"', '"pacs"'))
    assert error.line == 4 and "csv, dicom-folder, dicom-db, slicer-db, dicomweb" in str(error)


def test_missing_source_folder_names_the_resolved_path(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('path = "images"', 'path = "nowhere"'))
    assert error.line == 5 and str(tmp_path / "nowhere") in str(error)


def test_bad_series_rule_key_in_sub_table(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('description = "portal"', 'descr = "portal"'))
    assert error.key == "source.series.descr" and error.line == 9


def test_bad_regex_is_explained(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('"portal"', '"portal("'))
    assert error.line == 9 and "not a valid regular expression" in str(error)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace("depth = 3", "depth = = 3"))
    assert error.line == 29 and "not valid TOML" in str(error)


def test_seg_type(tmp_path: Path) -> None:
    batch = load_batch(
        write(
            tmp_path,
            GOOD.replace('format = "dicom-seg"', 'format = "dicom-seg"\nseg_type = "labelmap"'),
        )
    )
    assert batch.output.seg_type == "labelmap"
    assert load_batch(write(tmp_path, GOOD)).output.seg_type == "binary"
    error = error_of(
        tmp_path,
        GOOD.replace('format = "dicom-seg"', 'format = "dicom-seg"\nseg_type = "fractional"'),
    )
    assert error.key == "output.seg_type" and error.line == 13 and "labelmap" in str(error)


def test_prefetch_depth_range(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace("depth = 3", "depth = -1"))
    assert error.key == "prefetch.depth" and error.line == 29


def test_duplicate_segment_names_refused(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace('name = "Lesion"', 'name = "Liver"'))
    assert "used twice" in str(error) and error.line == 22


def test_bare_csv_and_folder_get_defaults(tmp_path: Path) -> None:
    table = tmp_path / "cases.csv"
    table.write_text("image\n")
    batch = load_batch(table)
    assert batch.source.type == "csv" and batch.output.format == "seg.nrrd"
    assert batch.output.to_source and batch.segments == (DEFAULT_SEGMENT,)
    folder = load_batch(tmp_path)
    assert folder.source.type == "dicom-folder" and folder.output.format == "dicom-seg"
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / ".dicom-file-client.db").write_bytes(b"")
    assert load_batch(tmp_path / "db").source.type == "dicom-db"
    (tmp_path / "slicer").mkdir()
    (tmp_path / "slicer" / "ctkDICOM.sql").write_bytes(b"")
    assert load_batch(tmp_path / "slicer").source.type == "slicer-db"


def test_missing_path_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(BatchDefinitionError, match="no such file or folder"):
        load_batch(tmp_path / "missing.toml")
    other = tmp_path / "batch.yaml"
    other.write_text("x")
    with pytest.raises(BatchDefinitionError, match="is not a batch"):
        load_batch(other)


def test_batch_key_is_stable_and_overridable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_batch(path).key == load_batch(path).key
    with_id = write(tmp_path, 'id = "liver-2026"\n' + GOOD)
    assert load_batch(with_id).key == "liver-2026"
