"""Received DICOM files into the local database: the multipart reader, ``store_files`` (byte for
byte, header-only indexing) and the background writer thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from CaseIteratorCoreLib.background_store import BackgroundStore
from CaseIteratorCoreLib.dicom_database import DicomDatabaseError, LocalDicomDatabase
from CaseIteratorCoreLib.errors import OperationCancelled
from CaseIteratorCoreLib.multipart_reader import MultipartError, boundary_of, iter_parts
from CaseIteratorCoreLib.tasks import CancelToken

from series_factory import write_series

BOUNDARY = b"b0undary-42"
RAW_MEDIA = (("application/octet-stream", "1.2.840.10008.1.2.1"),)


def multipart(bodies: list[bytes], *, close: bool = True, headers: bool = True) -> bytes:
    """A multipart/related body as a WADO-RS server sends it."""
    out = b""
    for body in bodies:
        out += b"--" + BOUNDARY + b"\r\n"
        if headers:
            out += b"Content-Type: application/dicom\r\nContent-Length: %d\r\n" % len(body)
        out += b"\r\n" + body + b"\r\n"
    if close:
        out += b"--" + BOUNDARY + b"--\r\n"
    return out


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- the multipart reader --------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 10**6])
def test_parts_come_out_whole_whatever_the_chunking(chunk: int) -> None:
    # Bodies that hold CRLFs, dashes and most of the boundary, split anywhere by the network.
    bodies = [b"first\r\n--b0undary-4", b"", b"\r\n\r\nthird --b0undary-43 part", b"x" * 300]
    parts = list(iter_parts(in_chunks(multipart(bodies), chunk), BOUNDARY))
    assert parts == bodies
    assert list(iter_parts(in_chunks(multipart(bodies, headers=False), chunk), BOUNDARY)) == bodies


def test_a_part_the_stream_was_cut_in_is_not_handed_out() -> None:
    data = multipart([b"one", b"two"], close=False)
    cut = data[: data.rindex(b"two") + 2]  # the connection dropped inside the last part
    assert list(iter_parts([cut], BOUNDARY)) == [b"one"]
    assert list(iter_parts([data], BOUNDARY)) == [b"one"]  # no closing delimiter: unsure


def test_content_types() -> None:
    assert (
        boundary_of(f'multipart/related; type="application/dicom"; boundary="{BOUNDARY.decode()}"')
        == BOUNDARY
    )
    assert boundary_of("application/dicom") is None
    assert list(iter_parts([b"ab", b"c"], None)) == [b"abc"]
    with pytest.raises(MultipartError, match="text/html"):
        boundary_of("text/html; charset=utf-8")


# -- store_files -----------------------------------------------------------------------------


def test_received_files_are_stored_byte_for_byte_and_served(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=5, rows=16, cols=12, seed="recv")
    received = [p.read_bytes() for p in paths]
    first = pydicom.dcmread(paths[0])
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    with LocalDicomDatabase(tmp_path / "db") as database:
        assert database.store_files(received) == 5
        assert database.store_files(received) == 0  # already there
        files = database.series_files(study, series)
        assert sorted(f.read_bytes() for f in files) == sorted(received)
        summary = database.series_summaries()[0]
        assert (summary.n_images, summary.modality) == (5, "CT")
        assert summary.description == str(first.get("SeriesDescription", ""))
        frames = database.client.retrieve_instance_frames(
            study, series, first.SOPInstanceUID, frame_numbers=[1], media_types=RAW_MEDIA
        )
        rows = database.client.search_for_instances(study, series)
    assert frames[0] == first.PixelData  # the frame offsets from the header-only read are right
    by_uid = {r["00080018"]["Value"][0]: r for r in rows}
    row = by_uid[first.SOPInstanceUID]
    assert row["00280010"]["Value"] == [16] and row["00200013"]["Value"] == [1]


def test_only_the_missing_instances_are_stored(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=4, seed="only")
    wanted = {str(pydicom.dcmread(p).SOPInstanceUID) for p in paths[2:]}
    with LocalDicomDatabase(tmp_path / "db") as database:
        assert database.store_files((p.read_bytes() for p in paths), only=wanted) == 2
        ds = pydicom.dcmread(paths[0])
        assert database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID) == wanted


def test_a_part_without_file_meta_is_decoded_and_stored(tmp_path: Path) -> None:
    path = write_series(tmp_path / "s", n=1, seed="bare")[0]
    ds = pydicom.dcmread(path)
    buffer = DicomBytesIO()  # the data set alone: no preamble, no file meta
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    bare = buffer.getvalue()
    assert bare[128:132] != b"DICM"
    with LocalDicomDatabase(tmp_path / "db") as database:
        assert database.store_files([bare]) == 1
        stored = pydicom.dcmread(
            database.series_files(ds.StudyInstanceUID, ds.SeriesInstanceUID)[0]
        )
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(stored.pixel_array, ds.pixel_array)


def test_a_truncated_instance_is_refused_by_name_after_the_ones_before_it(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=4, seed="trunc")
    received = [p.read_bytes() for p in paths]
    victim = pydicom.dcmread(paths[2]).SOPInstanceUID
    received[2] = received[2][:-50]
    with LocalDicomDatabase(tmp_path / "db") as database:
        with pytest.raises(DicomDatabaseError, match=f"{victim}.*truncated"):
            database.store_files(received)
        ds = pydicom.dcmread(paths[0])
        assert len(database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID)) == 2
    with pytest.raises(DicomDatabaseError, match="cannot be stored"):
        LocalDicomDatabase(tmp_path / "db2").store_files([b"not DICOM at all" * 20])


# -- the background writer -------------------------------------------------------------------


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dicom-store-writer"]


def test_background_store_stores_everything_and_ends_its_thread(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=9, seed="bg")
    with LocalDicomDatabase(tmp_path / "db") as database:
        # A queue smaller than two files: put() has to wait for the writer.
        with BackgroundStore(database, max_queued_bytes=1) as store:
            for path in paths:
                store.put(path.read_bytes())
        assert store.stored == 9 and not writer_threads()
        ds = pydicom.dcmread(paths[0])
        assert len(database.series_files(ds.StudyInstanceUID, ds.SeriesInstanceUID)) == 9


def test_a_writer_failure_reaches_the_retrieving_thread(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=3, seed="bgfail")
    with LocalDicomDatabase(tmp_path / "db") as database:
        with (
            pytest.raises(DicomDatabaseError, match="truncated"),
            BackgroundStore(database) as store,
        ):
            store.put(paths[0].read_bytes())
            store.put(paths[1].read_bytes()[:-10])
        assert not writer_threads()
        ds = pydicom.dcmread(paths[0])
        uids = database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert uids == {ds.SOPInstanceUID}


def test_what_was_queued_is_kept_when_the_retrieval_stops(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=3, seed="bgstop")
    with LocalDicomDatabase(tmp_path / "db") as database:
        with pytest.raises(ConnectionResetError), BackgroundStore(database) as store:
            store.put(paths[0].read_bytes())
            store.put(paths[1].read_bytes())
            raise ConnectionResetError("the network went away")
        assert not writer_threads()
        ds = pydicom.dcmread(paths[0])
        assert len(database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID)) == 2


def test_a_cancelled_store_stops_writing(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", n=3, seed="bgcancel")
    token = CancelToken()
    token.cancel()  # the reader jumped elsewhere: this series is not wanted now
    with LocalDicomDatabase(tmp_path / "db") as database:
        with pytest.raises(OperationCancelled), BackgroundStore(database, cancel=token) as store:
            for path in paths:
                store.put(path.read_bytes())
        assert not writer_threads()
        ds = pydicom.dcmread(paths[0])
        assert database.instance_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID) == set()
