"""Shared resources of CaseIterator: icons, branding, style sheet, segment terminology."""

from pathlib import Path

#: Folder holding the resource files.
RESOURCES_DIR = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """Return the path of a resource file under :data:`RESOURCES_DIR`."""
    return RESOURCES_DIR.joinpath(*parts)
