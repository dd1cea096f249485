"""Generic test fixtures: per-test data folder and the real Orthanc server.

Module-specific fixtures belong in ``Testing/unit/conftest.py`` (and siblings), not here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTING_DIR = Path(__file__).resolve().parent
if str(TESTING_DIR) not in sys.path:
    sys.path.insert(0, str(TESTING_DIR))  # so tests and benchmarks can `import orthanc_server`

from orthanc_server import OrthancServer, start_orthanc  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the ``orthanc`` fixture get the ``orthanc`` marker (for ``-m``)."""
    for item in items:
        if "orthanc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.orthanc)


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    """One real Orthanc (DICOMweb, no authentication) shared by the whole test session.

    Tests share its storage: use fresh UIDs per test, or call ``orthanc.clear()``.
    """
    server = start_orthanc()
    try:
        yield server
    finally:
        server.close(graceful=False)  # its storage is thrown away: no need to wait ~3.5 s


@pytest.fixture
def orthanc_factory() -> Iterator[Callable[..., OrthancServer]]:
    """Start extra Orthanc servers of one test's own (``users=``, ``extra_config=``, ...).

    For tests that need authentication, or that stop, kill or restart the server. Every
    server started through the factory is closed when the test ends.
    """
    servers: list[OrthancServer] = []

    def factory(**kwargs: object) -> OrthancServer:
        server = start_orthanc(**kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close(graceful=False)  # its storage is thrown away: no need to wait ~3.5 s


@pytest.fixture(autouse=True)
def caseiterator_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point ``$CASEITERATOR_DATA_DIR`` at a fresh folder: tests never touch the user's data.

    Autouse; request it by name to get the folder.
    """
    data_dir = tmp_path_factory.mktemp("caseiterator-data")
    monkeypatch.setenv("CASEITERATOR_DATA_DIR", str(data_dir))
    # No site settings unless a test writes its own: the machine's /etc file must not leak in.
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", "")
    return data_dir
