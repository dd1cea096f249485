"""Drafts on disk: round trip with overlapping segments, atomic replace, grid check, damage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.atomic_files import PARTIAL_SUFFIX
from CaseIteratorCoreLib.batch_file import DEFAULT_SEGMENT
from CaseIteratorCoreLib.draft_store import (
    MAGIC,
    Draft,
    DraftError,
    DraftStore,
    PaintedLayers,
    painted_box,
)
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.terminology import Code

GRID = Geometry((40, 30, 20), (-10.0, 5.0, 2.5), (0.8, 0.8, 2.0), np.eye(3))


def _segments() -> list[Segment]:
    liver = Segment(
        "Liver", DEFAULT_SEGMENT.category, Code("SCT", "10200004", "Liver"), (221, 130, 101)
    )
    lesion = Segment(
        "Lesion", DEFAULT_SEGMENT.category, Code("SCT", "52988006", "Lesion"), (250, 250, 10)
    )
    extra = Segment("My note", DEFAULT_SEGMENT.category, DEFAULT_SEGMENT.type, (10, 200, 30))
    return [liver, lesion, extra]


def _segmentation() -> Segmentation:
    shape = GRID.shape
    liver = np.zeros(shape, bool)
    liver[5:15, 8:20, 10:30] = True
    lesion = np.zeros(shape, bool)
    lesion[8:10, 10:14, 12:16] = True  # inside the liver: overlapping segments
    extra = np.zeros(shape, bool)  # an empty segment
    return Segmentation.from_masks([liver, lesion, extra], GRID, _segments())


def test_round_trip_keeps_overlapping_segments_names_colours_and_codes(tmp_path: Path) -> None:
    segmentation = _segmentation()
    assert segmentation.overlapping
    store = DraftStore("batch-1", "dr.a", tmp_path)
    draft = Draft(
        "case-7",
        PaintedLayers.from_segmentation(segmentation),
        1_764_000_000.5,
        "DEMO-007 · CT",
        "resumed from your save of 14:02 (liver.dcm)",
    )
    path = store.save(draft)
    assert path == store.path_for("case-7") and path.read_bytes().startswith(MAGIC)
    back = store.load("case-7", GRID)
    assert back is not None
    restored = back.layers.to_segmentation()
    assert restored.voxel_counts() == segmentation.voxel_counts() == (2400, 32, 0)
    for index in range(3):
        assert np.array_equal(restored.mask(index), segmentation.mask(index))
    assert restored.segments == segmentation.segments
    assert back.saved_at == 1_764_000_000.5
    assert back.case_name == "DEMO-007 · CT"
    assert back.starting_point.startswith("resumed from your save")
    assert back.layers.voxel_counts() == segmentation.voxel_counts()


def test_only_the_painted_box_is_stored(tmp_path: Path) -> None:
    layers = PaintedLayers.from_segmentation(_segmentation())
    first = layers.blocks[0]
    assert first is not None and first.start == (5, 8, 10) and first.values.shape == (10, 12, 20)
    assert painted_box(np.zeros((3, 4, 5), np.uint8)) is None


def test_a_draft_replaces_the_previous_one_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = DraftStore("batch-1", "dr.a", tmp_path)
    empty = PaintedLayers.from_segmentation(Segmentation.empty(GRID, _segments()))
    store.save(Draft("c", empty, 1.0))
    store.save(Draft("c", PaintedLayers.from_segmentation(_segmentation()), 2.0))
    assert store.load("c", GRID).saved_at == 2.0
    leftovers = [p.name for p in store.folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    assert leftovers == []
    assert os.stat(store.path_for("c")).st_mode & 0o077 == 0  # the reader's work only


def test_a_draft_for_another_grid_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    store = DraftStore("batch-1", "dr.a", tmp_path)
    store.save(Draft("c", PaintedLayers.from_segmentation(_segmentation()), 1.0, "DEMO-003"))
    other = Geometry((40, 30, 21), GRID.origin, GRID.spacing, GRID.direction)
    with pytest.raises(DraftError) as caught:
        store.load("c", other)
    message = str(caught.value)
    assert "DEMO-003" in message and "another image grid" in message
    assert "size 40x30x20 instead of 40x30x21" in message
    assert str(store.path_for("c")) in message
    kept = store.set_aside("c")
    assert kept is not None and kept.exists() and store.load("c", other) is None


def test_drafts_set_aside_are_kept_a_month_then_removed(tmp_path: Path) -> None:
    store = DraftStore("batch-1", "dr.a", tmp_path)
    for case in ("old", "new"):
        store.save(Draft(case, PaintedLayers.from_segmentation(_segmentation()), 1.0))
    old = store.set_aside("old")
    assert old is not None
    month_and_a_day = 31 * 24 * 3600
    os.utime(old, (old.stat().st_atime - month_and_a_day, old.stat().st_mtime - month_and_a_day))
    new = store.set_aside("new")  # setting another aside prunes the ones past their time
    assert new is not None and new.exists() and not old.exists()
    assert store.prune_rejected() == 0


def test_damaged_drafts_are_refused_not_crashed_on(tmp_path: Path) -> None:
    store = DraftStore("batch-1", "dr.a", tmp_path)
    path = store.save(Draft("c", PaintedLayers.from_segmentation(_segmentation()), 1.0))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the voxel data
    path.write_bytes(bytes(data))
    with pytest.raises(DraftError, match="damaged"):
        store.load("c", GRID)
    path.write_bytes(b"not a draft")
    with pytest.raises(DraftError, match="not a CaseIterator draft"):
        store.load("c")


def test_listing_discarding_and_keeping_readers_and_batches_apart(tmp_path: Path) -> None:
    layers = PaintedLayers.from_segmentation(_segmentation())
    a = DraftStore("batch-1", "dr.a", tmp_path)
    b = DraftStore("batch-1", "dr b/..", tmp_path)  # odd names stay inside the drafts folder
    c = DraftStore("batch-2", "dr.a", tmp_path)
    now = time.time()
    a.save(Draft("case/1", layers, now - 60, "first"))
    a.save(Draft("case 2", layers, now, "second"))
    b.save(Draft("case/1", layers, now))
    assert [i.case_name for i in a.drafts()] == ["second", "first"]
    assert [i.case_id for i in b.drafts()] == ["case/1"]
    assert c.drafts() == [] and c.load("case/1") is None
    assert b.folder.resolve().is_relative_to(tmp_path.resolve())
    assert a.info("case 2").clock() == time.strftime("%H:%M", time.localtime(now))
    assert a.discard("case/1") and not a.discard("case/1")
    assert [i.case_id for i in a.drafts()] == ["case 2"]
    assert b.load("case/1") is not None
