"""CaseIterator reading UI as a 3D Slicer scripted module (desktop Slicer only).

The real code lives in ``CaseReaderLib``; this file only registers the module when desktop
Slicer loads it.
"""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class CaseReader(ScriptedLoadableModule):
    """Module entry: the reading workflow (views, segment editor, case list, DICOM browser)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "Case Reader"
        parent.categories = ["CaseIterator"]
        parent.dependencies = ["CaseIteratorCore"]
        parent.contributors = ["CaseIterator developers"]
        parent.helpText = "Read and segment the cases of a batch one after another."
