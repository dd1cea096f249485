"""CaseIterator core: batches, sources, loading, checks and progress.

This package never imports Qt (a checked contract, see ``pyproject.toml``); the reading UI
(``CaseReaderLib``) and the application (``CaseIteratorApp``) build on it.
"""

__version__ = "0.1.0"
