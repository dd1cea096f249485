"""Comparison mode on a real reading window: a CSV batch with a mask and a model's prediction.

Everything is real: NRRD files written here, the batch's source, the reading window and its
slice views (offscreen), the segmentation nodes in the slicer-core scene, the background
workers. The prediction of each case is the phantom's liver shifted by a known number of
columns, so the expected Dice is computed here with numpy and the worst case is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from Qt import QtCore

from CaseIteratorCoreLib.demo_data import phantom
from CaseIteratorCoreLib.result_store import nrrd_fields
from CaseIteratorCoreLib.seg_nrrd import read_seg_nrrd
from CaseReaderLib.comparison_mode import ComparisonMode

from conftest import SHOW_TIMEOUT_MS

pytestmark = pytest.mark.gui

LEFT = QtCore.Qt.MouseButton.LeftButton
#: Liver shift of the prediction per case (columns) and whether it drew the lesion.
SHIFTS = (1, 7, 3)
DROPS_LESION = (False, True, False)

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
color = "#e6c25a"
"""


def _write(path: Path, array: np.ndarray, ph) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(ph.spacing)
    image.SetOrigin(ph.origin)
    sitk.WriteImage(image, str(path), True)


def truth_and_prediction(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Label maps (1 liver, 2 lesion) of case ``n``: the phantom's, and the shifted one."""
    ph = phantom(n, size=96, n_slices=20)
    truth = np.where(ph.labels <= 2, ph.labels, 0).astype(np.uint8)
    liver = np.roll(truth == 1, SHIFTS[n], axis=2)
    prediction = liver.astype(np.uint8)
    if not DROPS_LESION[n]:
        prediction[truth == 2] = 2
    return truth, prediction


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def write_batch(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = ["ID,image,mask,prediction"]
    for n in range(len(SHIFTS)):
        ph = phantom(n, size=96, n_slices=20)
        truth, prediction = truth_and_prediction(n)
        _write(folder / f"ct{n}.nrrd", ph.hu, ph)
        _write(folder / f"mask{n}.nrrd", truth, ph)
        _write(folder / f"pred{n}.nrrd", prediction, ph)
        lines.append(f"case{n + 1},ct{n}.nrrd,mask{n}.nrrd,pred{n}.nrrd")
    (folder / "cases.csv").write_text("\n".join(lines) + "\n")
    batch = folder / "batch.toml"
    batch.write_text(
        'name = "Model check"\n\n[source]\ntype = "csv"\npath = "cases.csv"\n\n'
        '[output]\nformat = "seg.nrrd"\ndestination = "results"\n'
        + SEGMENTS
        + '\n[compare]\ncolumns = ["mask", "prediction"]\nreference = "mask"\n'
    )
    return batch


def compared_nodes(window) -> dict[str, object]:
    scene = window.scene.scene
    nodes = {}
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
        nodes[node.GetName()] = node
    return nodes


def colour_pixels(frame: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Pixels close to ``rgb`` (outlines are drawn at full opacity)."""
    distance = np.abs(frame.astype(int) - np.array(rgb)).sum(axis=2)
    return int(np.count_nonzero(distance < 60))


@pytest.fixture
def comparison(reading_factory, qtbot, tmp_path: Path, no_leaks):
    reading = reading_factory(write_batch(tmp_path / "batch"))
    asked: list[tuple[str, str]] = []
    # What the views could draw when a case is first shown (connected before the mode).
    at_shown: list[list[str]] = []
    reading.window.case_shown.connect(
        lambda *_: at_shown.append(sorted(compared_nodes(reading.window)))
    )
    mode = ComparisonMode(
        reading.window,
        reading.batch.compare,
        confirm_replace=lambda case, what: asked.append((case, what)) or True,
    )
    with qtbot.waitSignal(mode.comparison_shown, timeout=SHOW_TIMEOUT_MS):
        reading.start()
    mode.at_shown = at_shown  # type: ignore[attr-defined]
    yield reading, mode, asked
    mode.close()
    assert not mode.busy
    leftover = [n for n in compared_nodes(reading.window) if n.startswith("Compared")]
    assert leftover == []  # the nodes left the scene with the mode
    reading.close()


def test_metrics_nodes_toggles_accept_and_worst_first(comparison, qtbot, tmp_path) -> None:
    reading, mode, asked = comparison
    window = reading.window
    panel = mode.panel
    truth, prediction = truth_and_prediction(0)

    # The panel shows the Dice of the case on screen (numpy's, to 3 decimals).
    rows = {panel.cell_text(r, 0): r for r in range(panel.table.rowCount())}
    assert set(rows) == {"Liver", "Lesion"}
    assert panel.cell_text(rows["Liver"], 2) == f"{dice(truth == 1, prediction == 1):.3f}"
    assert panel.cell_text(rows["Lesion"], 2) == "1.000"
    assert mode.status.isHidden()  # both found: nothing to say beside the table

    # One node per compared segmentation, each in its own colour; the reader's stays editable.
    nodes = compared_nodes(window)
    assert set(nodes) == {"Segmentation", "Compared: mask", "Compared: prediction"}
    assert window.editing.node is nodes["Segmentation"]
    colours = set()
    for name in ("mask", "prediction"):
        segmentation = nodes[f"Compared: {name}"].GetSegmentation()
        ids = segmentation.GetSegmentIDs()
        node_colours = {
            tuple(round(c * 255) for c in segmentation.GetSegment(i).GetColor()) for i in ids
        }
        assert node_colours == {panel.display(name).color}
        colours |= node_colours
    assert len(colours) == 2
    mask_display = nodes["Compared: mask"].GetDisplayNode()
    prediction_display = nodes["Compared: prediction"].GetDisplayNode()
    assert mask_display.GetVisibility2DFill() and not prediction_display.GetVisibility2DFill()

    # The views draw them: the prediction's outline colour is on screen until it is hidden.
    window.scene.slice_logic("Axial").GetSliceNode().JumpSliceByOffsetting(
        *_ras_of_middle(truth == 1, reading)
    )
    magenta = panel.display("prediction").color

    def on_screen() -> int:
        return colour_pixels(reading.axial.render_now() and reading.axial.frame_array(), magenta)

    # The slice pipelines pick the compared nodes up through queued scene events: under a
    # loaded CI machine the first render can come before them, so wait (a few turns at most).
    qtbot.waitUntil(lambda: on_screen() > 50, timeout=SHOW_TIMEOUT_MS)
    shown = on_screen()
    qtbot.mouseClick(panel.row("prediction").eye, LEFT)
    assert not prediction_display.GetVisibility()
    hidden = on_screen()
    assert hidden < shown / 10
    qtbot.mouseClick(panel.row("prediction").eye, LEFT)

    # Outline/Fill toggles the display node.
    qtbot.mouseClick(panel.row("prediction").outline, LEFT)
    assert prediction_display.GetVisibility2DFill()
    qtbot.mouseClick(panel.row("mask").outline, LEFT)
    assert not mask_display.GetVisibility2DFill() and mask_display.GetVisibility2DOutline()

    # Double-clicking a segment's metrics puts the views on it.
    lesion_s = _ras_of_middle(truth == 2, reading)[2]
    window.scene.slice_logic("Axial").SetSliceOffset(lesion_s + 8.0)  # 6 slices away
    lesion = panel.table.item(rows["Lesion"], 0)
    where = panel.table.visualItemRect(lesion).center()
    with qtbot.waitSignal(panel.segment_activated):
        qtbot.mouseClick(panel.table.viewport(), LEFT, pos=where)  # a press, then the double
        qtbot.mouseDClick(panel.table.viewport(), LEFT, pos=where)
    axial = window.scene.slice_logic("Axial").GetSliceNode()
    offset = axial.GetSliceToRAS().GetElement(2, 3)
    assert abs(offset - lesion_s) <= window.loaded.image.volume.geometry.spacing[2]

    # "prediction" replaces the pre-segmentation (the mask) voxel for voxel, as unsaved edits.
    editing = window.editing
    assert editing.painted_voxels(0) == np.count_nonzero(truth == 1)  # the starting point
    with qtbot.waitSignal(mode.started_from) as started:
        qtbot.mouseClick(mode.start_bar.buttons["prediction"], LEFT)
    assert started.args == ["prediction"]
    assert asked == []  # nothing unsaved was replaced: no question
    assert editing.modified
    assert np.array_equal(editing.mask(editing.segment_ids[0]), prediction == 1)
    assert editing.painted_voxels(1) == np.count_nonzero(prediction == 2)
    # Majority of two = where both agree; replacing unsaved edits asks first.
    qtbot.mouseClick(mode.start_bar.buttons["\0majority"], LEFT)
    assert asked == [("case1", "the majority vote (2 of 2)")]
    both = (truth == 1) & (prediction == 1)
    assert np.array_equal(editing.mask(editing.segment_ids[0]), both)
    qtbot.mouseClick(mode.start_bar.buttons["prediction"], LEFT)
    assert asked[-1] == ("case1", "prediction's segmentation")
    assert editing.painted_voxels(0) == np.count_nonzero(prediction == 1)
    provenance = mode.provenance(reading.cases[0].id)
    assert provenance is not None
    assert provenance.description == (
        "Started from prediction's segmentation; compared: mask (reference), prediction"
    )
    assert provenance.seg_headers == ()  # NRRD files: nothing to reference in a SEG

    # The normal Save writes it as the reader's result.
    with qtbot.waitSignal(window.case_saved, timeout=SHOW_TIMEOUT_MS) as saved:
        window.save_case()
    assert saved.args == [reading.cases[0].id, True]
    written = list((tmp_path / "batch" / "results").rglob("*.seg.nrrd"))
    assert len(written) == 1
    back = read_seg_nrrd(written[0], window.loaded.image.volume.geometry)
    assert back.voxel_counts()[:2] == (
        np.count_nonzero(prediction == 1),
        np.count_nonzero(prediction == 2),
    )
    # The file says who made it, of which image, and what it was started from.
    fields = nrrd_fields(written[0])
    assert fields["CaseIterator_Reader"] == reading.session.reader == "dr.test"
    assert fields["CaseIterator_Case"] == reading.cases[0].id
    assert fields["CaseIterator_SourceImage"] == str(reading.cases[0].image.path)
    assert fields["CaseIterator_DerivedFrom"] == provenance.description

    # Worst agreement first, once the batch is compared in the background.
    qtbot.waitUntil(lambda: len(mode.worst_dice) == len(SHIFTS), timeout=SHOW_TIMEOUT_MS)
    worst = []
    for n in range(len(SHIFTS)):
        t, p = truth_and_prediction(n)
        worst.append(min(dice(t == 1, p == 1), dice(t == 2, p == 2)))
    expected = sorted(range(len(SHIFTS)), key=lambda n: worst[n])
    assert expected[0] == 1  # the model missed the lesion there: Dice 0
    case_list = window.case_list
    assert case_list.badge_of(1) == "Dice 0.00"
    box = case_list.order_box
    assert box.isVisible()
    box.setCurrentIndex(box.findData("disagreement"))
    box.activated.emit(box.currentIndex())
    assert case_list.order() == expected
    # The top row opens the worst case (its batch index), with its own comparison.
    top = case_list.list.item(0)
    with qtbot.waitSignal(mode.comparison_shown, timeout=SHOW_TIMEOUT_MS) as shown_case:
        qtbot.mouseClick(
            case_list.list.viewport(), LEFT, pos=case_list.list.visualItemRect(top).center()
        )
    assert shown_case.args == [reading.cases[1].id]
    # The previous case's nodes left before the new case was first drawn.
    assert mode.at_shown[-1] == ["Segmentation"]
    assert window.current_index == 1
    assert sorted(compared_nodes(window)) == [
        "Compared: mask",
        "Compared: prediction",
        "Segmentation",
    ]
    lesion_row = next(r for r in range(panel.table.rowCount()) if panel.cell_text(r, 0) == "Lesion")
    assert panel.cell_text(lesion_row, 2) == "0.000"
    assert case_list.list.currentItem() is top  # the selection follows the case, not the row
    # Next and Previous follow the list: the worst case has no previous one, its next is the
    # second worst, and that one is what is loaded ahead.
    assert not window.actions["previous"].isEnabled() and window.actions["next"].isEnabled()
    assert window.session.neighbour(1) == expected[1]
    assert window.loader.prefetcher.plan[:2] == [1, expected[1]]
    # The model drew no lesion here: starting from it empties the lesion of the starting point.
    truth1, _ = truth_and_prediction(1)
    assert window.editing.painted_voxels(1) == np.count_nonzero(truth1 == 2) > 0
    qtbot.mouseClick(mode.start_bar.buttons["prediction"], LEFT)
    assert window.editing.painted_voxels(1) == 0
    # Back to batch order: rows and numbers as in the batch.
    box.setCurrentIndex(box.findData("batch"))
    box.activated.emit(box.currentIndex())
    assert case_list.order() == [0, 1, 2]
    assert window.actions["previous"].isEnabled() and window.session.neighbour(1) == 2


def _ras_of_middle(mask: np.ndarray, reading) -> tuple[float, float, float]:
    k, j, i = (float(np.mean(a)) for a in np.nonzero(mask))
    geometry = reading.window.loaded.image.volume.geometry
    ras = geometry.ijk_to_ras() @ np.array([i, j, k, 1.0])
    return float(ras[0]), float(ras[1]), float(ras[2])


def test_attaching_after_a_case_is_shown_and_closing_with_the_window(
    reading_factory, qtbot, tmp_path: Path, no_leaks
) -> None:
    reading = reading_factory(write_batch(tmp_path / "batch"))
    reading.start()
    mode = ComparisonMode(reading.window, reading.batch.compare, rank_batch=False)
    qtbot.waitUntil(lambda: mode.current is not None, timeout=SHOW_TIMEOUT_MS)
    assert "Compared: prediction" in compared_nodes(reading.window)
    assert not reading.window.case_list.order_box.isHidden()
    reading.close()  # the mode follows the window: workers stopped, nodes removed
    qtbot.waitUntil(lambda: mode._closed, timeout=5_000)
    assert mode.nodes == {} and not mode.busy


def test_dicom_seg_series_are_compared_and_referenced_by_the_result(
    reading_factory, qtbot, tmp_path: Path, no_leaks
) -> None:
    """A DICOM folder: SEG series by a reader and by an AI, chosen by [[compare.series]]."""
    import pydicom
    from pydicom.uid import generate_uid

    from CaseIteratorCoreLib.demo_data import write_ct_series
    from CaseIteratorCoreLib.image_files import read_dicom_files
    from CaseIteratorCoreLib.seg_dicom import build_dicom_seg, write_dicom_seg
    from CaseIteratorCoreLib.segmentation import Segment, Segmentation
    from CaseIteratorCoreLib.terminology import Code

    data = tmp_path / "dicom"
    files = write_ct_series(
        phantom(0, size=24, n_slices=12),
        data / "p1" / "ct",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
    )
    volume, info, problems = read_dicom_files(files)
    assert not problems
    geometry = volume.geometry
    liver = Segment(
        "Liver",
        Code("SCT", "123037004", "Anatomical Structure"),
        Code("SCT", "10200004", "Liver"),
        (221, 130, 101),
    )
    truth = np.zeros(geometry.shape, dtype=bool)
    truth[2:10, 5:15, 4:12] = True  # 8 columns; the AI's is 3 columns off
    paths = {}
    for reader, number, mask, description in (
        ("alice", 100, truth, None),
        ("model", 200, np.roll(truth, 3, axis=2), "AI v2"),
    ):
        ds = build_dicom_seg(
            Segmentation.from_masks([mask], geometry, [liver]),
            info,
            reader=reader,
            series_number=number,
            series_description=description,
        )
        paths[reader] = write_dicom_seg(ds, data / "p1" / f"seg{number}.dcm")
    batch = tmp_path / "batch.toml"
    batch.write_text(
        'name = "Readers"\n[source]\ntype = "dicom-folder"\npath = "dicom"\n\n'
        + SEGMENTS
        + '\n[compare]\nreference = "Alice"\n'
        '[[compare.series]]\nname = "Alice"\nreader = "alice"\n'
        '[[compare.series]]\nname = "AI"\ndescription = "^ai v"\n'
    )
    reading = reading_factory(batch)
    mode = ComparisonMode(reading.window, reading.batch.compare, rank_batch=False)
    try:
        with qtbot.waitSignal(mode.comparison_shown, timeout=SHOW_TIMEOUT_MS):
            reading.start()
        assert mode.panel.table.rowCount() == 1  # a SEG names its own segments: the liver
        assert mode.panel.cell_text(0, 0) == "Liver"
        assert mode.panel.cell_text(0, 2) == f"{2 * 5 / 16:.3f}"  # 8 columns each, 5 shared
        assert set(compared_nodes(reading.window)) >= {"Compared: Alice", "Compared: AI"}
        assert mode.accept("AI")
        editing = reading.window.editing
        assert np.array_equal(editing.mask(editing.segment_ids[0]), np.roll(truth, 3, axis=2))
        provenance = mode.provenance(reading.cases[0].id)
        expected = {
            pydicom.dcmread(paths[r], stop_before_pixels=True).SOPInstanceUID for r in paths
        }
        assert {h.SOPInstanceUID for h in provenance.seg_headers} == expected
        assert (
            provenance.description
            == "Started from AI's segmentation; compared: Alice (reference), AI"
        )
        # Save: the result SEG beside the series references the two compared SEGs and says how
        # it was made.
        assert reading.window.save_case()
        reading.window.wait_for_saves()
        written = [
            path
            for path in data.rglob("*.dcm")
            if path not in paths.values()
            and pydicom.dcmread(path, stop_before_pixels=True).Modality == "SEG"
        ]
        assert len(written) == 1
        result = pydicom.dcmread(written[0], stop_before_pixels=True)
        compared_series = {
            pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
            for path in paths.values()
        }
        referenced = {item.SeriesInstanceUID for item in result.ReferencedSeriesSequence}
        assert compared_series <= referenced
        assert result.DerivationDescription == provenance.description
    finally:
        mode.close()
        reading.close()


def test_a_missing_prediction_is_said_and_only_the_mask_can_be_started_from(
    reading_factory, qtbot, tmp_path: Path, no_leaks
) -> None:
    """Case 2 has no prediction (an empty cell): the case opens, the panel says why."""
    batch = write_batch(tmp_path / "batch")
    table = tmp_path / "batch" / "cases.csv"
    table.write_text(table.read_text().replace(",pred1.nrrd", ","))
    reading = reading_factory(batch)
    mode = ComparisonMode(reading.window, reading.batch.compare, rank_batch=False)
    try:
        with qtbot.waitSignal(mode.comparison_shown, timeout=SHOW_TIMEOUT_MS):
            reading.start()
        with qtbot.waitSignal(mode.comparison_shown, timeout=SHOW_TIMEOUT_MS):
            reading.window.go_to(1)
        panel = mode.panel
        assert panel.table.rowCount() == 0
        assert panel.problems.isVisible()
        assert "no segmentation in column 'prediction'" in panel.problems.text()
        assert mode.status.isHidden()  # the panel says it: nothing more
        assert sorted(n for n in compared_nodes(reading.window) if n.startswith("Compared")) == [
            "Compared: mask"
        ]
        buttons = mode.start_bar.buttons
        assert buttons["mask"].isEnabled()
        assert not buttons["prediction"].isEnabled() and not buttons["\0majority"].isEnabled()
        assert reading.window.case_list.badge_of(1) == "—"
        assert not mode.start_from_majority()
    finally:
        mode.close()
        reading.close()
