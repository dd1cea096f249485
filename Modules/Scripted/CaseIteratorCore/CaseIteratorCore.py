"""CaseIterator core as a 3D Slicer scripted module (desktop Slicer only).

The real code lives in ``CaseIteratorCoreLib`` and runs without Slicer's application; this
file only registers the module when desktop Slicer loads it.
"""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class CaseIteratorCore(ScriptedLoadableModule):
    """Module entry: batches, sources, loading and progress (no user interface of its own)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "CaseIterator Core"
        parent.categories = ["CaseIterator"]
        parent.contributors = ["CaseIterator developers"]
        parent.helpText = "Batches of imaging cases: sources, checks, loading, progress."
        parent.hidden = True
