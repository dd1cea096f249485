"""The real-Orthanc harness works: STOW-RS in, QIDO-RS finds, WADO-RS gives the same pixels.

These tests prove the test infrastructure itself (``Testing/orthanc_server.py`` and the
``orthanc`` fixtures), so that a failing DICOMweb test elsewhere points at the product code.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from requests.auth import HTTPBasicAuth

pytestmark = pytest.mark.orthanc

N_SLICES = 3
SIZE = 16


def _write_tiny_ct_series(
    folder: Path, study_uid: str, series_uid: str, frame_of_reference_uid: str
) -> None:
    """Write a deterministic 3-slice 16x16 CT series with consistent geometry (pydicom only)."""
    rng = np.random.default_rng(1234)
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    for index in range(N_SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Harness^Test"
        ds.PatientID = "HARNESS-1"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.Modality = "CT"
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.8, 0.8]
        ds.SliceThickness = 2.5
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        pixels = rng.integers(-1000, 1000, size=(SIZE, SIZE), dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice_{index:03d}.dcm", enforce_file_format=True)


def write_ct_series(folder: Path) -> tuple[str, str, list[Dataset]]:
    """Write a small CT series into ``folder``; return (study UID, series UID, datasets).

    Uses the product's demo phantom when ``CaseIteratorCoreLib.demo_data`` exists, else a tiny
    pydicom series written here.
    """
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from CaseIteratorCoreLib import demo_data
    except ImportError:
        demo_data = None
    if demo_data is not None:
        ph = demo_data.phantom(0, size=32, n_slices=N_SLICES)
        demo_data.write_ct_series(
            ph, folder, study_uid=study_uid, series_uid=series_uid, frame_of_reference_uid=for_uid
        )
    else:
        _write_tiny_ct_series(folder, study_uid, series_uid, for_uid)
    datasets = [pydicom.dcmread(path) for path in sorted(folder.rglob("*")) if path.is_file()]
    assert len(datasets) == N_SLICES, f"expected {N_SLICES} files in {folder}"
    assert {ds.SeriesInstanceUID for ds in datasets} == {series_uid}
    return study_uid, series_uid, datasets


def _store_and_check(client: DICOMwebClient, datasets: list[Dataset]) -> None:
    response = client.store_instances(datasets)
    # With this Orthanc the answer always holds a FailedSOPSequence: it must be empty.
    assert len(response.get("FailedSOPSequence", [])) == 0
    assert len(response.ReferencedSOPSequence) == len(datasets)


def test_stow_qido_wado_round_trip(orthanc, tmp_path):
    study_uid, series_uid, uploaded = write_ct_series(tmp_path / "series")
    client = DICOMwebClient(url=orthanc.dicomweb_url)

    _store_and_check(client, uploaded)

    found = client.search_for_series(
        search_filters={"SeriesInstanceUID": series_uid},
        fields=["NumberOfSeriesRelatedInstances"],
    )
    assert len(found) == 1
    series = Dataset.from_json(found[0])
    assert series.StudyInstanceUID == study_uid
    assert series.SeriesInstanceUID == series_uid
    assert int(series.NumberOfSeriesRelatedInstances) == N_SLICES

    retrieved = client.retrieve_series(study_uid, series_uid)
    assert len(retrieved) == N_SLICES
    by_uid = {ds.SOPInstanceUID: ds for ds in retrieved}
    assert set(by_uid) == {ds.SOPInstanceUID for ds in uploaded}
    for original in uploaded:
        copy = by_uid[original.SOPInstanceUID]
        np.testing.assert_array_equal(copy.pixel_array, original.pixel_array)
        assert list(copy.ImagePositionPatient) == list(original.ImagePositionPatient)


def test_rest_upload_is_visible_through_dicomweb(orthanc, tmp_path):
    study_uid, series_uid, _ = write_ct_series(tmp_path / "series")
    files = sorted(p for p in (tmp_path / "series").rglob("*") if p.is_file())

    answers = orthanc.upload_files(files)

    assert [a["Status"] for a in answers] == ["Success"] * N_SLICES
    client = DICOMwebClient(url=orthanc.dicomweb_url)
    instances = client.search_for_instances(
        study_instance_uid=study_uid, search_filters={"SeriesInstanceUID": series_uid}
    )
    assert len(instances) == N_SLICES


def test_authentication(orthanc_factory, tmp_path):
    server = orthanc_factory(users={"reader": "s3cret"})
    _, series_uid, datasets = write_ct_series(tmp_path / "series")

    good = requests.Session()
    good.auth = HTTPBasicAuth("reader", "s3cret")
    client = DICOMwebClient(url=server.dicomweb_url, session=good)
    _store_and_check(client, datasets)
    assert len(client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})) == 1

    for auth in (HTTPBasicAuth("reader", "wrong"), HTTPBasicAuth("nobody", "s3cret"), None):
        bad = requests.Session()
        bad.auth = auth
        with pytest.raises(requests.HTTPError) as info:
            DICOMwebClient(url=server.dicomweb_url, session=bad).search_for_series()
        assert info.value.response.status_code == 401


def test_restart_keeps_storage_and_port(orthanc_factory, tmp_path):
    server = orthanc_factory()
    study_uid, series_uid, datasets = write_ct_series(tmp_path / "series")
    _store_and_check(DICOMwebClient(url=server.dicomweb_url), datasets)
    url = server.url

    server.kill()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/system", timeout=5)
    server.restart()

    assert server.url == url
    client = DICOMwebClient(url=server.dicomweb_url)
    assert len(client.retrieve_series(study_uid, series_uid)) == N_SLICES
