"""CaseIterator core as a 3D Slicer scripted module (desktop Slicer only).

The real code lives in ``CaseIteratorCoreLib`` and runs without Slicer's application (the
pip install and the bundle use it as is); this file registers the module when desktop Slicer
loads it, and gives Slicer a logic that opens batches and loads cases into ``slicer.mrmlScene``.

It imports only inside desktop 3D Slicer: the ``slicer`` package of the ``slicer-core`` wheel
has no ``ScriptedLoadableModule``, and importing this file there raises an ImportError that
says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

try:
    import slicer
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
except ImportError as exc:  # pip install, bundle, tests: use CaseIteratorCoreLib directly
    raise ImportError(
        "CaseIteratorCore.py is the module entry of desktop 3D Slicer and imports only there "
        "(slicer.ScriptedLoadableModule is missing). Outside Slicer use the package "
        "CaseIteratorCoreLib, or the caseiterator command."
    ) from exc

#: Python packages the core needs that desktop Slicer does not ship, as pinned in the
#: application's pyproject.toml (import name: requirement). Slicer ships numpy, pydicom,
#: SimpleITK and requests.
REQUIREMENTS = {
    "highdicom": "highdicom==0.28.2",
    "dicomweb_client": "dicomweb-client==0.61.2",
    "pylibjpeg": "pylibjpeg==2.1.0",
    "libjpeg": "pylibjpeg-libjpeg==2.5.0",
    "openjpeg": "pylibjpeg-openjpeg==2.6.0",
    "rle": "pylibjpeg-rle==2.2.0",
    "jpeg_ls": "pyjpegls==1.5.1",
    "platformdirs": "platformdirs==4.14.5",
    "rich": "rich==15.0.0",
    "tomli_w": "tomli-w==1.2.0",
}


class CaseIteratorCore(ScriptedLoadableModule):
    """Module entry: batches, sources, loading and progress (no user interface of its own)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "CaseIterator Core"
        parent.categories = ["CaseIterator"]
        parent.contributors = ["CaseIterator developers"]
        parent.helpText = (
            "Batches of imaging cases: sources (CSV tables, DICOM folders and databases, "
            "DICOMweb servers), checks, loading, results and reading progress. Used by the "
            "Case Reader module."
        )
        parent.acknowledgementText = "Generalises SlicerCaseIterator (J. van Griethuysen)."
        parent.hidden = True


class CaseIteratorCoreWidget(ScriptedLoadableModuleWidget):
    """The hidden module's panel (only reachable by name): points to Case Reader."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import qt

        label = qt.QLabel("CaseIterator's core has no panel of its own: use Case Reader.")
        label.wordWrap = True
        self.layout.addWidget(label)
        self.layout.addStretch(1)


class CaseIteratorCoreLogic(ScriptedLoadableModuleLogic):
    """Open batches and load their cases into Slicer's scene, with the core's checks."""

    @staticmethod
    def missing_requirements() -> list[str]:
        """The pinned requirements whose package is not importable in Slicer's Python."""
        return [req for name, req in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]

    def install_requirements(self) -> None:
        """Install the missing requirements into Slicer's Python (``slicer.util.pip_install``)."""
        missing = self.missing_requirements()
        if missing:
            slicer.util.pip_install(" ".join(missing))

    def open_batch(self, path: str | Path) -> tuple[Any, Any, list[Any]]:
        """Load a batch (.toml, CSV table or folder) and list its cases.

        Returns
        -------
        tuple
            The batch definition, its open source (close it when done) and the cases.

        Raises
        ------
        CaseIteratorCoreLib.errors.CaseIteratorError
            When the batch cannot be used (the message names the file, line and fix).
        """
        from CaseIteratorCoreLib.site_policy import load_site_batch
        from CaseIteratorCoreLib.sources import open_source

        batch = load_site_batch(Path(path))  # the site's rules hold inside Slicer too
        source = open_source(batch)
        return batch, source, list(source.iter_cases())

    def load_case(self, source: Any, case: Any, scene: Any = None) -> Any:
        """Load ``case`` (checked, as the reading application does) as a volume node.

        Returns
        -------
        vtkMRMLScalarVolumeNode
            The case's main image in ``scene`` (``slicer.mrmlScene`` by default), shown with
            the window the header or the voxels suggest.

        Raises
        ------
        CaseIteratorCoreLib.errors.CaseLoadError
            When the main image cannot be read (its problems say why).
        """
        from CaseIteratorCoreLib.loading import load_case
        from CaseIteratorCoreLib.mrml_volume import volume_to_node

        loaded = load_case(source, case)
        return volume_to_node(
            scene if scene is not None else slicer.mrmlScene,
            loaded.image.volume,
            case.label,
            window=loaded.image.window,
        )


class CaseIteratorCoreTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): a demo batch into the scene."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_demo_case_loads_into_the_scene()

    def test_demo_case_loads_into_the_scene(self):
        import tempfile

        from CaseIteratorCoreLib.demo_data import write_demo_batch

        self.delayDisplay("Writing a small demo batch")
        logic = CaseIteratorCoreLogic()
        self.assertEqual(logic.missing_requirements(), [])
        with tempfile.TemporaryDirectory() as folder:
            batch_file = write_demo_batch(Path(folder), 1, size=32, n_slices=8)
            _batch, source, cases = logic.open_batch(batch_file)
            try:
                self.assertEqual(len(cases), 1)
                node = logic.load_case(source, cases[0])
            finally:
                source.close()
        self.assertEqual(node.GetImageData().GetDimensions(), (32, 32, 8))
        self.delayDisplay("Test passed")
