"""CaseIterator reading as a 3D Slicer scripted module (desktop Slicer only).

Inside desktop Slicer this module is a small panel in Slicer's own window: open a batch, go
through its cases (Previous / Next), each loaded by the core with its checks into Slicer's
views, segmented with Slicer's Segment Editor, saved as ``.seg.nrrd`` where the batch says.
The branded reading window of ``CaseReaderLib`` (PySide6 through qt-py) is standalone-only:
desktop Slicer's Qt binding is PythonQt, not PySide6.

Imports only inside desktop 3D Slicer (an ImportError that says so elsewhere).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

try:
    import ctk
    import qt
    import slicer
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
except ImportError as exc:  # pip install, bundle, tests: use CaseReaderLib / caseiterator app
    raise ImportError(
        "CaseReader.py is the module entry of desktop 3D Slicer and imports only there "
        "(slicer.ScriptedLoadableModule is missing). Outside Slicer run `caseiterator app`."
    ) from exc


class CaseReader(ScriptedLoadableModule):
    """Module entry: read and segment the cases of a batch one after another."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "Case Reader"
        parent.categories = ["CaseIterator"]
        parent.dependencies = ["CaseIteratorCore"]
        parent.contributors = ["CaseIterator developers"]
        parent.helpText = (
            "Open a CaseIterator batch (.toml, CSV table or DICOM folder) and read its cases "
            "one after another: each case is loaded with the core's checks, segmented with the "
            "Segment Editor and saved as .seg.nrrd where the batch says. The full reading "
            "window (prefetching, DICOM SEG, kiosk mode) is the standalone caseiterator app."
        )
        parent.acknowledgementText = "Generalises SlicerCaseIterator (J. van Griethuysen)."


class CaseReaderLogic(ScriptedLoadableModuleLogic):
    """The open batch, the current case and saving, on top of the core module's logic."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from CaseIteratorCore import CaseIteratorCoreLogic

        self.core = CaseIteratorCoreLogic()
        self.batch: Any = None
        self.source: Any = None
        self.cases: list[Any] = []
        self.index = -1
        self.volume_node: Any = None
        self.segmentation_node: Any = None

    def open(self, path: str | Path) -> int:
        """Open a batch; return its number of cases."""
        self.close()
        self.batch, self.source, self.cases = self.core.open_batch(path)
        self.index = -1
        return len(self.cases)

    def show(self, index: int) -> Any:
        """Load case ``index`` (the previous one is removed from the scene) and show it."""
        self._clear_nodes()
        self.index = index
        self.volume_node = self.core.load_case(self.source, self.cases[index])
        slicer.util.setSliceViewerLayers(background=self.volume_node, fit=True)
        self.segmentation_node = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", f"{self.cases[index].label} segmentation"
        )
        self.segmentation_node.CreateDefaultDisplayNodes()
        self.segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        for segment in self.batch.segments:
            self.segmentation_node.GetSegmentation().AddEmptySegment(segment.name, segment.name)
        return self.volume_node

    def save(self, reader: str) -> str:
        """Save the current segmentation as ``.seg.nrrd`` where the batch says; the path.

        Raises
        ------
        CaseIteratorCoreLib.errors.CaseIteratorError
            When the batch's output cannot take a .seg.nrrd (DICOM SEG results are written by
            the standalone application), or the folder cannot be written.
        """
        from CaseIteratorCoreLib.result_store import ResultStore

        store = ResultStore(self.batch, reader)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "result.seg.nrrd"
            if not slicer.util.saveNode(self.segmentation_node, str(path)):
                raise OSError(f"Slicer could not write {path}")
            saved = store.save(self.cases[self.index], seg_nrrd_path=path)
        return ", ".join(str(p) for p in saved.files) or saved.place

    def _clear_nodes(self) -> None:
        for node in (self.segmentation_node, self.volume_node):
            if node is not None and node.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(node)
        self.volume_node = self.segmentation_node = None

    def close(self) -> None:
        """Remove the current case from the scene and close the batch's source."""
        self._clear_nodes()
        if self.source is not None:
            self.source.close()
        self.source, self.cases, self.index = None, [], -1


class CaseReaderWidget(ScriptedLoadableModuleWidget):
    """Batch file, reader, case list, Previous / Next / Save, and a link to Segment Editor."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = CaseReaderLogic()
        form = qt.QFormLayout()
        self.layout.addLayout(form)

        missing = self.logic.core.missing_requirements()
        if missing:
            install = qt.QPushButton(f"Install {len(missing)} Python packages")
            install.toolTip = " ".join(missing)
            install.connect("clicked()", self.on_install)
            form.addRow("Requirements:", install)

        self.batch_edit = ctk.ctkPathLineEdit()
        self.batch_edit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Dirs
        self.batch_edit.nameFilters = ["Batches (*.toml *.csv)", "All files (*)"]
        form.addRow("Batch:", self.batch_edit)
        self.reader_edit = qt.QLineEdit()
        self.reader_edit.placeholderText = "your name (result file names)"
        form.addRow("Reader:", self.reader_edit)
        open_button = qt.QPushButton("Open batch")
        open_button.connect("clicked()", self.on_open)
        form.addRow(open_button)

        self.case_list = qt.QListWidget()
        self.case_list.connect("currentRowChanged(int)", self.on_case_chosen)
        self.layout.addWidget(self.case_list)
        buttons = qt.QHBoxLayout()
        self.layout.addLayout(buttons)
        for text, handler in (
            ("Previous", self.on_previous),
            ("Next", self.on_next),
            ("Save", self.on_save),
            ("Segment Editor", self.on_segment_editor),
        ):
            button = qt.QPushButton(text)
            button.connect("clicked()", handler)
            buttons.addWidget(button)
        self.status = qt.QLabel("")
        self.status.wordWrap = True
        self.layout.addWidget(self.status)
        self.layout.addStretch(1)

    def cleanup(self):
        self.logic.close()

    def on_install(self):
        self.logic.core.install_requirements()
        self.status.text = "Packages installed. Restart Slicer to use them."

    def on_open(self):
        from CaseIteratorCoreLib.errors import CaseIteratorError

        try:
            count = self.logic.open(self.batch_edit.currentPath)
        except CaseIteratorError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="This batch cannot be opened")
            return
        self.case_list.clear()
        for case in self.logic.cases:
            self.case_list.addItem(case.label)
        self.status.text = f"{self.logic.batch.name}: {count} cases"
        if count:
            self.case_list.setCurrentRow(0)

    def on_case_chosen(self, row: int):
        from CaseIteratorCoreLib.errors import CaseIteratorError

        if row < 0 or row >= len(self.logic.cases):
            return
        try:
            with slicer.util.tryWithErrorDisplay("This case cannot be shown", waitCursor=True):
                self.logic.show(row)
        except CaseIteratorError:
            return
        self.status.text = f"Case {row + 1} of {len(self.logic.cases)}"

    def on_previous(self):
        if self.case_list.currentRow > 0:
            self.case_list.setCurrentRow(self.case_list.currentRow - 1)

    def on_next(self):
        if self.case_list.currentRow + 1 < self.case_list.count:
            self.case_list.setCurrentRow(self.case_list.currentRow + 1)

    def on_save(self):
        reader = self.reader_edit.text.strip()
        if not reader:
            slicer.util.warningDisplay("Enter your name first: it is part of the file name.")
            return
        if self.logic.segmentation_node is None:
            return
        with slicer.util.tryWithErrorDisplay("The result could not be saved", waitCursor=True):
            self.status.text = f"Saved: {self.logic.save(reader)}"

    def on_segment_editor(self):
        slicer.util.selectModule("SegmentEditor")


class CaseReaderTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: open a demo batch, show both cases, save a painted segment."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_read_and_save_demo_batch()

    def test_read_and_save_demo_batch(self):
        import numpy as np

        from CaseIteratorCoreLib.demo_data import write_demo_batch

        logic = CaseReaderLogic()
        with tempfile.TemporaryDirectory() as folder:
            batch_file = write_demo_batch(Path(folder) / "demo", 2, size=32, n_slices=8)
            self.assertEqual(logic.open(batch_file), 2)
            logic.show(1)
            logic.show(0)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 1)
            segment_id = logic.segmentation_node.GetSegmentation().GetNthSegmentID(0)
            mask = np.zeros((8, 32, 32), dtype=np.uint8)
            mask[3:5, 10:20, 10:20] = 1
            slicer.util.updateSegmentBinaryLabelmapFromArray(
                mask, logic.segmentation_node, segment_id, logic.volume_node
            )
            logic.batch = _seg_nrrd_output(logic.batch, Path(folder) / "results")
            saved = logic.save("tester")
            self.assertIn("tester", saved)
            logic.close()
        self.delayDisplay("Test passed")


def _seg_nrrd_output(batch: Any, folder: Path) -> Any:
    """``batch`` with its results as .seg.nrrd files in ``folder`` (for the test)."""
    import dataclasses

    output = dataclasses.replace(batch.output, format="seg.nrrd", folder=folder)
    return dataclasses.replace(batch, output=output)
