"""The segment panel on the real reading window: add, rename, recolour, lock, hide, remove.

What the reader changes in the list is what gets saved: the SEG written by Save is read back.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from Qt import QtCore, QtGui, QtWidgets

from CaseIteratorCoreLib.mrml_segmentation import node_to_segmentation
from CaseIteratorCoreLib.seg_dicom import read_dicom_seg
from CaseIteratorCoreLib.segmentation import AlgorithmType, Segment

pytestmark = [pytest.mark.gui, pytest.mark.slicer]

LEFT = QtCore.Qt.MouseButton.LeftButton


def _panel(window):
    """The window's segment panel, bound to its editing."""
    panel = window.segment_panel
    if panel._editing is None:  # until the reading window binds it itself
        panel.bind(window.editing)
    return panel


def _stroke(reading, drag, dy: int = 0) -> None:
    """A horizontal paint stroke through the middle of the axial view, ``dy`` pixels lower."""
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2 + dy)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-30, 31, 6)])


def _cross_stroke(reading, drag) -> None:
    """A vertical stroke through the middle of the axial view (crossing :func:`_stroke`)."""
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(0, dy) for dy in range(-60, 61, 6)])


def _saved_seg(reading):
    files = sorted(reading.batch.output.folder.rglob("*.dcm"))
    assert len(files) == 1, files
    ds = pydicom.dcmread(files[0])
    loaded = reading.window.loaded
    return ds, read_dicom_seg(ds, loaded.image.dicom, loaded.image.volume.geometry)


def _type(qtbot, line_edit: QtWidgets.QLineEdit, text: str) -> None:
    line_edit.selectAll()
    qtbot.keyClicks(line_edit, text)
    qtbot.keyClick(line_edit, QtCore.Qt.Key.Key_Return)


def test_added_renamed_and_recoloured_segments_are_saved(qtbot, reading, drag) -> None:
    window = reading.window
    panel = _panel(window)
    assert [panel.row(i).name.text() for i in range(3)] == ["Liver", "Liver lesion", "Aorta"]

    # Rename a batch segment in place: double-click its name, type, Enter.
    qtbot.mouseDClick(panel.row(0).name, LEFT)
    assert panel.row(0).renaming
    _type(qtbot, panel.row(0).editor, "Right liver lobe")
    assert panel.row(0).name.text() == "Right liver lobe"

    # A new segment opens its name for typing and gets a colour of its own.
    index = panel.add_segment()
    assert index == 3 and panel.row(3).renaming and panel.current_index == 3
    _type(qtbot, panel.row(3).editor, "Cyst")
    new_color = window.editing.segments[3].color
    assert new_color not in {s.color for s in window.editing.segments[:3]}

    # Recolour Aorta through the colour dialog.
    qtbot.mouseClick(panel.row(2).swatch, LEFT)
    dialog = panel.color_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.setCurrentColor(QtGui.QColor(40, 200, 120))
    dialog.accept()
    assert window.editing.segments[2].color == (40, 200, 120)

    # A name in use is refused and said.
    assert not panel.rename(3, "Aorta")
    assert "already exists" in panel.message.text()

    window.tools.choose("paint")
    _stroke(reading, drag)  # into the new segment, the selected one
    cyst = window.editing.painted_voxels(3)
    assert cyst > 0 and window.editing.painted_voxels(0) == 0
    assert window.save_case()
    window.wait_for_saves()  # the result is written in the background

    ds, seg = _saved_seg(reading)
    labels = [str(item.SegmentLabel) for item in ds.SegmentSequence]
    assert labels == ["Right liver lobe", "Liver lesion", "Aorta", "Cyst"]
    assert seg.segments[0].type.meaning == "Liver"  # renamed, still coded as the liver
    assert seg.segments[2].color == pytest.approx((40, 200, 120), abs=2)
    assert seg.segments[3].color == pytest.approx(new_color, abs=2)
    assert int(np.count_nonzero(seg.mask(3))) == cyst


def test_a_locked_segment_is_not_changed_by_any_stroke(qtbot, reading, drag) -> None:
    window, editing = reading.window, reading.window.editing
    panel = _panel(window)
    window.tools.choose("paint")
    _stroke(reading, drag)
    liver = editing.mask(editing.segment_ids[0])
    assert liver.any()

    qtbot.mouseClick(panel.row(0).lock, LEFT)
    assert editing.is_locked(0) and panel.row(0).lock.isChecked()
    assert window.tools.lock_hint.isVisible() and "Liver" in window.tools.lock_hint.text()
    steps = editing.undo_stack.index()
    _stroke(reading, drag, dy=6)  # paint on the locked segment: nothing happens
    window.tools.choose("erase")
    _stroke(reading, drag)  # erase it: nothing happens
    assert np.array_equal(editing.mask(editing.segment_ids[0]), liver)
    assert editing.undo_stack.index() == steps  # no empty undo steps either

    # Painting a neighbour across it ("overwrite all") leaves the locked voxels alone.
    panel.list.setCurrentRow(1)
    assert not window.tools.lock_hint.isVisible()
    window.tools.choose("paint")
    _cross_stroke(reading, drag)
    lesion = editing.mask(editing.segment_ids[1])
    assert lesion.any() and not (lesion & liver).any()
    assert np.array_equal(editing.mask(editing.segment_ids[0]), liver)

    # Unlocked, the same neighbour stroke takes voxels from it.
    qtbot.mouseClick(panel.row(0).lock, LEFT)
    assert not editing.is_locked(0)
    _cross_stroke(reading, drag)
    assert np.count_nonzero(editing.mask(editing.segment_ids[0])) < np.count_nonzero(liver)


def test_hide_and_remove_a_segment_then_undo(qtbot, reading, drag) -> None:
    window, editing = reading.window, reading.window.editing
    panel = _panel(window)
    qtbot.mouseClick(panel.row(1).eye, LEFT)
    assert not editing.is_visible(1)
    qtbot.mouseClick(panel.row(1).eye, LEFT)
    assert editing.is_visible(1)

    # The batch's segments stay.
    panel.list.setCurrentRow(0)
    assert not panel.remove_button.isVisible()

    index = panel.add_segment(editing.segments[2])  # another "Aorta"
    assert editing.segments[index].name == "Aorta 2"
    window.tools.choose("paint")
    _stroke(reading, drag)
    painted = editing.painted_voxels(index)
    assert painted > 0 and panel.remove_button.isVisible()

    qtbot.mouseClick(panel.remove_button, LEFT)
    box = panel.confirm_box
    assert box is not None and "Aorta 2" in box.text()
    remove = next(b for b in box.buttons() if b.text() == "Remove")
    qtbot.mouseClick(remove, LEFT)
    assert [s.name for s in editing.segments] == ["Liver", "Liver lesion", "Aorta"]
    assert panel.list.count() == 3 and panel.current_index >= 0

    window.actions["undo"].trigger()  # Undo brings it back with its voxels
    assert [s.name for s in editing.segments][-1] == "Aorta 2"
    assert panel.list.count() == 4 and editing.painted_voxels(3) == painted


def test_without_free_names_only_the_batch_segments_can_be_added(qtbot, reading) -> None:
    window, editing = reading.window, reading.window.editing
    panel = _panel(window)
    panel.allow_free_names = False
    assert panel.add_segment() == -1
    panel.start_rename(0)
    assert not panel.row(0).renaming and "segment names only" in panel.message.text()
    panel._fill_add_menu()
    assert [a.text() for a in panel.add_menu.actions()] == ["Liver", "Liver lesion", "Aorta"]
    panel.add_menu.actions()[1].trigger()
    assert [s.name for s in editing.segments][-1] == "Liver lesion 2"


def test_a_result_with_added_and_renamed_segments_reopens_as_it_was(qtbot, reading, drag) -> None:
    window, editing = reading.window, reading.window.editing
    panel = _panel(window)
    assert panel.rename(0, "Right liver lobe")
    panel.add_segment()
    _type(qtbot, panel.row(3).editor, "Cyst")
    panel.list.setCurrentRow(2)
    window.tools.choose("threshold")
    window.tools.threshold_low_slider.setValue(200)
    qtbot.mouseClick(window.tools.threshold_apply_button, LEFT)
    panel.list.setCurrentRow(3)
    window.tools.choose("paint")
    _stroke(reading, drag)
    geometry = window.loaded.image.volume.geometry
    saved = node_to_segmentation(editing.node, geometry, editing.segments)
    before = [editing.painted_voxels(i) for i in range(4)]
    assert before[2] > 0 and before[3] > 0

    # The case opens again (as after a restart) and starts from that result.
    templates = [Segment.from_template(t) for t in reading.batch.segments]
    editing.start_case(window.scene.volume_node, templates)
    editing.load_result(saved)
    assert [s.name for s in editing.segments] == [
        "Right liver lobe",
        "Liver lesion",
        "Aorta",
        "Cyst",
    ]
    assert [editing.painted_voxels(i) for i in range(4)] == before
    assert editing.is_template(0) and not editing.is_template(3)  # matched by its codes
    assert editing.segments[2].algorithm == AlgorithmType.SEMIAUTOMATIC
    assert editing.segments[2].algorithm_name == "Threshold"
    assert panel.list.count() == 4 and panel.row(3).name.text() == "Cyst"
    assert not editing.can_undo()


def test_f2_renames_and_delete_removes_an_empty_added_segment(qtbot, reading) -> None:
    window, editing = reading.window, reading.window.editing
    panel = _panel(window)
    index = panel.add_segment()
    qtbot.keyClick(panel.row(index).editor, QtCore.Qt.Key.Key_Escape)  # keeps "Segment 4"
    assert not panel.row(index).renaming and editing.segments[index].name == "Segment 4"
    panel.list.setFocus()
    qtbot.keyClick(panel.list, QtCore.Qt.Key.Key_F2)
    assert panel.row(index).renaming
    _type(qtbot, panel.row(index).editor, "Nodule")
    assert editing.segments[index].name == "Nodule"
    panel.list.setFocus()
    qtbot.keyClick(panel.list, QtCore.Qt.Key.Key_Delete)  # nothing painted: no question
    assert panel.confirm_box is None
    assert [s.name for s in editing.segments] == ["Liver", "Liver lesion", "Aorta"]
