"""Where CaseIterator keeps per-user data (progress, demo batch, caches)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "CaseIterator"

#: Environment variable that moves all per-user data (used by tests and reading stations).
DATA_DIR_ENV = "CASEITERATOR_DATA_DIR"


def user_data_dir() -> Path:
    """Return the per-user data folder, creating it; ``$CASEITERATOR_DATA_DIR`` overrides."""
    override = os.environ.get(DATA_DIR_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_reader() -> str:
    """Return the reader name to use when none is given: ``$CASEITERATOR_READER`` or the login."""
    name = os.environ.get("CASEITERATOR_READER")
    if name:
        return name
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "reader"
