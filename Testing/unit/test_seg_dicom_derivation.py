"""A result made from compared segmentations (comparison mode) references the SEGs it came from.

``build_dicom_seg(derived_from_segmentations=..., derivation_description=...)``: the compared
SEG instances are listed in SourceImageSequence and their series in ReferencedSeriesSequence
(after the image series, which comes first as before), the DerivationDescription says how, and
the object stays valid for dciodvfy and readable by highdicom and by us.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid
from test_seg_dicom import dciodvfy, make_segmentation, make_source

from CaseIteratorCoreLib.comparison_inputs import load_segmentations
from CaseIteratorCoreLib.seg_dicom import (
    SEGMENTATION_STORAGE,
    SegKind,
    build_dicom_seg,
    read_dicom_seg,
    write_dicom_seg,
)


def _seg(source, reader: str, tmp: Path) -> Path:
    segmentation = make_segmentation(source.geometry, overlap=False)
    ds = build_dicom_seg(segmentation, source.info, reader=reader, series_number=7)
    return write_dicom_seg(ds, tmp / f"{reader}.dcm")


@pytest.mark.parametrize("kind", list(SegKind))
def test_consensus_references_the_compared_segs_and_stays_valid(
    tmp_path: Path, kind: SegKind
) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    compared = [_seg(source, name, tmp_path) for name in ("doe", "ai")]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in compared]
    consensus = make_segmentation(source.geometry, overlap=False)
    ds = build_dicom_seg(
        consensus,
        source.info,
        reader="adjudicator",
        series_number=9,
        kind=kind,
        derived_from_segmentations=headers,
        derivation_description="Consensus of doe (reference) and ai, started from ai",
    )
    path = write_dicom_seg(ds, tmp_path / "consensus.dcm")
    dciodvfy(path)
    back = pydicom.dcmread(path)
    assert back.DerivationDescription == "Consensus of doe (reference) and ai, started from ai"
    series = [str(item.SeriesInstanceUID) for item in back.ReferencedSeriesSequence]
    # The image series first (readers that take the first item find the image), then the SEGs.
    assert series == [source.info.series_uid, *(str(h.SeriesInstanceUID) for h in headers)]
    seg_items = back.ReferencedSeriesSequence[1].ReferencedInstanceSequence
    assert [str(i.ReferencedSOPInstanceUID) for i in seg_items] == [headers[0].SOPInstanceUID]
    assert str(seg_items[0].ReferencedSOPClassUID) == SEGMENTATION_STORAGE
    sources = {str(i.ReferencedSOPInstanceUID) for i in back.SourceImageSequence}
    assert {str(h.SOPInstanceUID) for h in headers} <= sources
    assert set(source.info.sop_instance_uids) <= sources
    # Still a SEG of the image: highdicom and our reader read it back voxel-exact.
    assert hd.seg.segread(path).SegmentationType == kind.value
    again = read_dicom_seg(path, source.info, source.geometry)
    assert again.voxel_counts() == consensus.voxel_counts()


def test_without_derivation_nothing_changes(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    ds = build_dicom_seg(segmentation, source.info, reader="x", series_number=1)
    assert "DerivationDescription" not in ds
    assert len(ds.ReferencedSeriesSequence) == 1
    assert len(ds.SourceImageSequence) == len(set(source.info.sop_instance_uids))


def test_a_seg_of_another_study_or_without_uids_is_refused(tmp_path: Path) -> None:
    source = make_source("anisotropic", tmp_path / "series")
    segmentation = make_segmentation(source.geometry, overlap=False)
    other = pydicom.dcmread(_seg(source, "doe", tmp_path), stop_before_pixels=True)
    other.StudyInstanceUID = generate_uid()
    with pytest.raises(ValueError, match="not in the source's study"):
        build_dicom_seg(
            segmentation,
            source.info,
            reader="x",
            series_number=1,
            derived_from_segmentations=[other],
        )
    del other.SOPInstanceUID
    with pytest.raises(ValueError, match="lacks SeriesInstanceUID, SOPClassUID or SOPInstanceUID"):
        build_dicom_seg(
            segmentation,
            source.info,
            reader="x",
            series_number=1,
            derived_from_segmentations=[other],
        )


def test_compared_seg_files_carry_their_header(tmp_path: Path) -> None:
    """What the app passes on: a SEG read for comparison keeps its UIDs, a labelmap has none."""
    from CaseIteratorCoreLib.batch_file import CompareSpec
    from CaseIteratorCoreLib.cases import Case, ImageFileRef, ResultTarget

    source = make_source("anisotropic", tmp_path / "series")
    seg_path = _seg(source, "doe", tmp_path)
    case = Case(
        "c1",
        "c1",
        0,
        (),
        ResultTarget("c1"),
        masks=(ImageFileRef("doe", seg_path), ImageFileRef("again", seg_path)),
    )
    spec = CompareSpec(columns=("doe", "again"), reference="doe")
    loaded, problems = load_segmentations(None, case, spec, source.geometry, source.info)  # type: ignore[arg-type]
    assert problems == []
    assert [item.seg_header.SOPInstanceUID for item in loaded] == [
        pydicom.dcmread(seg_path, stop_before_pixels=True).SOPInstanceUID
    ] * 2
