"""Fixtures for the core unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

PYDICOM_SERIES = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"


@pytest.fixture
def pydicom_series() -> Path:
    """Folder of the tiny real series shipped in pydicom's wheel (CT5N, CT2, MR700...)."""
    return PYDICOM_SERIES


@pytest.fixture(scope="session")
def demo_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small demo CT studies (64x64, 24 slices) and their batch file."""
    from CaseIteratorCoreLib.demo_data import write_demo_batch

    folder = tmp_path_factory.mktemp("demo")
    return write_demo_batch(folder, 2, size=64, n_slices=24)
