"""The same demo studies give the same cases and voxels through every DICOM input mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase
from CaseIteratorCoreLib.loading import load_case
from CaseIteratorCoreLib.sources import open_source

from orthanc_server import OrthancServer
from slicer_dicom_db import build_slicer_database

pytestmark = pytest.mark.orthanc


def test_folder_databases_and_dicomweb_agree(tmp_path: Path, request) -> None:
    batch = write_demo_batch(tmp_path / "demo", 2, size=64, n_slices=16)
    files = sorted((tmp_path / "demo" / "dicom").rglob("*.dcm"))
    with LocalDicomDatabase(tmp_path / "db") as database:
        report = database.import_paths(tmp_path / "demo" / "dicom")
    assert report.imported == len(files)
    build_slicer_database(tmp_path / "slicer", files)
    # A server of its own: the session server holds other tests' demo studies.
    orthanc = OrthancServer()
    request.addfinalizer(lambda: orthanc.close(graceful=False))
    orthanc.upload_files(files)
    (tmp_path / "web.toml").write_text(
        f'[source]\ntype = "dicomweb"\nurl = "{orthanc.dicomweb_url}"\n'
        f'cache = "{tmp_path / "cache"}"\n\n[source.query]\nPatientID = "DEMO-00*"\n'
    )
    sources = {
        "dicom-folder": open_source(load_batch(batch)),
        "dicom-db": open_source(load_batch(tmp_path / "db")),
        "slicer-db": open_source(load_batch(tmp_path / "slicer")),
        "dicomweb": open_source(load_batch(tmp_path / "web.toml")),
    }
    assert {name: source.type for name, source in sources.items()} == {
        name: name for name in sources
    }
    listed = {
        name: sorted(source.iter_cases(), key=lambda c: c.id) for name, source in sources.items()
    }
    reference = listed["dicom-folder"]
    assert len(reference) == 2
    for name, cases in listed.items():
        assert [(c.id, c.name) for c in cases] == [(c.id, c.name) for c in reference], name
    for number, case in enumerate(reference):
        expected = load_case(sources["dicom-folder"], case).image
        for name in ("dicom-db", "slicer-db", "dicomweb"):
            loaded = load_case(sources[name], listed[name][number]).image
            np.testing.assert_array_equal(loaded.volume.array, expected.volume.array, err_msg=name)
            np.testing.assert_allclose(
                loaded.volume.geometry.ijk_to_lps(), expected.volume.geometry.ijk_to_lps()
            )
            assert loaded.dicom.sop_instance_uids == expected.dicom.sop_instance_uids, name
    for source in sources.values():
        source.close()
