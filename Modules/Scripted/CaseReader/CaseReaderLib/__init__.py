"""CaseIterator reading UI: slice views, segment editor panel, case list, DICOM browser (Qt).

Imports the core (``CaseIteratorCoreLib``), never the application.
"""
