"""Save writes the reader's painted voxels as a DICOM SEG where the batch says."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from Qt import QtCore

from CaseIteratorCoreLib.seg_dicom import read_dicom_seg

pytestmark = [pytest.mark.gui, pytest.mark.slicer]


def test_save_writes_the_painted_voxels_as_a_seg(qtbot, reading, drag) -> None:
    window = reading.window
    qtbot.mouseClick(window.tools.buttons["paint"], QtCore.Qt.MouseButton.LeftButton)
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-30, 31, 6)])
    painted = window.editing.painted_voxels(0)
    assert painted > 0
    assert window.save_case()
    window.wait_for_saves()  # the result is written in the background
    results = reading.batch.output.folder  # the demo batch saves into "results"
    files = sorted(results.rglob("*.dcm"))
    assert len(files) == 1, files
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "SEG" and str(ds.ContentCreatorName).startswith("dr.test")
    loaded = window.loaded
    seg = read_dicom_seg(ds, loaded.image.dicom, loaded.image.volume.geometry)
    assert seg.segments[0].name == "Liver"
    assert int(np.count_nonzero(seg.mask(0))) == painted
    progress = reading.store.for_batch(reading.batch.key, "dr.test").get(reading.cases[0].id)
    assert str(files[0]) in progress.results


def test_reopening_a_saved_case_starts_from_the_save(qtbot, reading, reading_factory, drag) -> None:
    window = reading.window
    qtbot.mouseClick(window.tools.buttons["paint"], QtCore.Qt.MouseButton.LeftButton)
    axial = reading.axial
    centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
    drag(axial, [centre + QtCore.QPoint(dx, 0) for dx in range(-30, 31, 6)])
    painted = window.editing.painted_voxels(0)
    assert painted > 0 and window.save_case()
    window.wait_for_saves()
    reading.close()
    # A new session of the same reader: the case opens with the saved voxels, clean.
    again = reading_factory(reading.batch.path)
    again.start()
    try:
        if again.window.session.current_index != 0:  # a new session opens the first open case
            again.window.go_to(0)
            again.wait_shown(0)
        assert again.window.editing.painted_voxels(0) == painted
        assert not again.window.editing.modified
        text = again.window.banner.text.text()
        assert "resumed from your save" in text.lower()
        # Where it came from, short: the result's file name, not its folder.
        saved = next(reading.batch.output.folder.rglob("*.dcm"))
        assert saved.name in text and str(saved.parent) not in text
    finally:
        again.close()
