"""The CaseIterator application: command line, main window, site settings, branding."""

from CaseIteratorCoreLib import __version__

__all__ = ["__version__"]
