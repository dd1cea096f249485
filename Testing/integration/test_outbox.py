"""The outbox against a real Orthanc: STOW-RS round trip, server stopped or killed mid-send, the
sending process killed, an upload stored but unconfirmed, wrong credentials, the command line.

Faults are real: Orthanc is killed or stopped, the sending process gets SIGKILL, the network is
cut by the link simulator (Testing/link_simulator.py) between the client and Orthanc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from CaseIteratorApp import outbox_command
from CaseIteratorCoreLib.batch_file import BatchDefinition, load_batch
from CaseIteratorCoreLib.cases import Case
from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase
from CaseIteratorCoreLib.outbox import Outbox, OutboxSender, OutboxState
from CaseIteratorCoreLib.result_store import ResultStore, ResumeLookupError, ResumeOrigin
from CaseIteratorCoreLib.server_settings import AuthKind, SecretRef, ServerSettings
from CaseIteratorCoreLib.sources import open_source

from link_simulator import LOOPBACK, LinkProfile, LinkSimulator
from orthanc_server import OrthancServer

pytestmark = pytest.mark.orthanc

REPO = Path(__file__).resolve().parents[2]


# -- data --------------------------------------------------------------------------------------


def ct_series(n: int = 8, size: int = 32, patient: str = "OUTBOX-1") -> list[Dataset]:
    """A small CT series (in memory) with what highdicom needs of its source images."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    slices = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
            patient,
            "Out^Box",
            "",
            "O",
        )
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.full((size, size), k, "<i2").tobytes()
        slices.append(ds)
    return slices


def binary_seg(source: list[Dataset], reader: str, series_number: int = 100) -> Dataset:
    """A BINARY DICOM SEG of one full segment over ``source``, made by ``reader``."""
    mask = np.ones((len(source), source[0].Rows, source[0].Columns), dtype=bool)
    segment = hd.seg.SegmentDescription(
        1,
        "Liver",
        codes.SCT.Organ,
        codes.SCT.Liver,
        hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source,
        mask,
        "BINARY",
        [segment],
        hd.UID(),
        series_number,
        hd.UID(),
        1,
        "CaseIterator",
        "CaseIterator",
        "0.1",
        "1",
        content_creator_name=f"{reader}^",
        omit_empty_frames=False,
    )


def settings_for(url: str, **kwargs: object) -> ServerSettings:
    return ServerSettings(name="pacs", url=url, **kwargs)  # type: ignore[arg-type]


def seg_count(server: OrthancServer, sop_uid: str) -> int:
    """How many instances the server holds with this SOP Instance UID (REST, not DICOMweb)."""
    with server.session() as session:
        found = session.post(
            server.url + "/tools/find",
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}},
            timeout=30,
        )
        found.raise_for_status()
        return len(found.json())


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def later(minutes: float = 60) -> datetime:
    """A time at which every retry is due."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


# -- tests -------------------------------------------------------------------------------------


def test_round_trip_result_is_on_the_server_with_its_references(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    source = ct_series()
    DICOMwebClient(orthanc.dicomweb_url).store_instances(source)
    seg = binary_seg(source, "alice")
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(seg, settings_for(orthanc.dicomweb_url), case_id="case-1", reader="alice")

    report = outbox.send_due()

    assert [i.id for i in report.sent] == [item.id]
    done = outbox.get(item.id)
    assert done.state is OutboxState.SENT and done.attempts == 1 and done.last_error is None
    assert done.path.is_file()  # kept for a while after the confirmation
    assert outbox.pending() == []
    client = DICOMwebClient(orthanc.dicomweb_url)
    found = client.search_for_series(source[0].StudyInstanceUID, search_filters={"Modality": "SEG"})
    assert [Dataset.from_json(f).SeriesInstanceUID for f in found] == [seg.SeriesInstanceUID]
    [meta] = client.retrieve_series_metadata(seg.StudyInstanceUID, seg.SeriesInstanceUID)
    stored = Dataset.from_json(meta, bulk_data_uri_handler=lambda uri: b"")
    assert stored.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert str(stored.ContentCreatorName) == "alice^"
    assert seg_count(orthanc, seg.SOPInstanceUID) == 1
    # Nothing is sent twice: a further pass has nothing to do.
    assert outbox.send_due().sent == ()


def test_orthanc_killed_during_the_upload_then_back(
    tmp_path: Path, orthanc_factory: Callable[..., OrthancServer]
) -> None:
    server = orthanc_factory()
    source = ct_series(n=40, size=128)
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    seg = binary_seg(source, "alice")
    size = len(pydicom.dcmread(_saved(seg, tmp_path)).PixelData)
    assert size >= 80_000
    slow = LinkProfile("slow", 1e6, 0.002)  # ~0.7 s for this SEG
    with LinkSimulator("127.0.0.1", server.http_port, slow) as link:
        destination = settings_for(link.url + "/dicom-web", retries=0, timeout_s=10)
        outbox = Outbox(tmp_path / "outbox", jitter=0)
        item = outbox.enqueue(seg, destination, case_id="case-1", reader="alice")
        result: list = []
        sending = threading.Thread(target=lambda: result.append(outbox.send_due()))
        sending.start()
        wait_for(lambda: link.bytes_uploaded > size // 4, 10, "the upload to start")
        server.kill()  # the server vanishes mid-upload
        sending.join(30)
        assert not sending.is_alive()
        [failed] = result[0].failed
        assert failed.state is OutboxState.QUEUED
        assert failed.attempts == 1
        assert f"server 'pacs' ({link.url}/dicom-web)" in failed.last_error
        assert "cannot be reached" in failed.last_error
        assert failed.path.is_file()  # nothing lost
        assert pydicom.dcmread(failed.path).SOPInstanceUID == seg.SOPInstanceUID
        # While the server is down, retries fail the same way and the item stays queued.
        assert outbox.send_due(now=later()).failed[0].attempts == 2
        server.start()
        link.set_profile(LOOPBACK)
        report = outbox.send_due(now=later(120))
    assert [i.id for i in report.sent] == [item.id]
    assert seg_count(server, seg.SOPInstanceUID) == 1


def test_orthanc_stopped_while_sending_several_results(
    tmp_path: Path, orthanc_factory: Callable[..., OrthancServer]
) -> None:
    server = orthanc_factory()
    source = ct_series()
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    segs = [binary_seg(source, "alice", 100 + n) for n in range(3)]
    outbox = Outbox(tmp_path / "outbox")
    destination = settings_for(server.dicomweb_url, retries=0, timeout_s=5)
    for n, seg in enumerate(segs):
        outbox.enqueue(seg, destination, case_id=f"case-{n}", reader="alice")
    server.stop()
    report = outbox.send_due()
    assert len(report.failed) == 3 and report.sent == ()
    assert all(i.state is OutboxState.QUEUED and i.path.is_file() for i in outbox.items())
    # A restarted application (a new Outbox on the same folder) sends them once it is back.
    server.start()
    report = Outbox(tmp_path / "outbox").send_due(now=later())
    assert len(report.sent) == 3
    assert [seg_count(server, s.SOPInstanceUID) for s in segs] == [1, 1, 1]


_SENDER_SCRIPT = """
import sys
from pathlib import Path
from CaseIteratorCoreLib.outbox import Outbox
print("start", flush=True)
Outbox(Path(sys.argv[1])).send_due()
print("done", flush=True)
"""


def test_sending_process_killed_mid_upload_every_result_arrives_exactly_once(
    tmp_path: Path, orthanc_factory: Callable[..., OrthancServer]
) -> None:
    server = orthanc_factory()
    source = ct_series(n=40, size=128)
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    segs = [binary_seg(source, "alice", 100 + n) for n in range(3)]
    size = len(_saved(segs[0], tmp_path).read_bytes())
    slow = LinkProfile("slow", 2e6, 0.002)  # ~0.4 s per SEG
    with LinkSimulator("127.0.0.1", server.http_port, slow) as link:
        destination = settings_for(link.url + "/dicom-web", retries=0, timeout_s=10)
        outbox = Outbox(tmp_path / "outbox")
        items = [
            outbox.enqueue(seg, destination, case_id=f"case-{n}", reader="alice")
            for n, seg in enumerate(segs)
        ]
        sender = subprocess.Popen(
            [sys.executable, "-c", _SENDER_SCRIPT, str(tmp_path / "outbox")],
            stdout=subprocess.PIPE,
            env=os.environ.copy(),
        )
        try:
            # Kill it in the middle of the second upload.
            wait_for(lambda: link.bytes_uploaded > 1.5 * size, 30, "the second upload")
            sender.send_signal(signal.SIGKILL)
        finally:
            sender.wait(10)
            sender.stdout.close()
        assert sender.returncode == -signal.SIGKILL
        states = [outbox.get(i.id) for i in items]
        assert states[0].state is OutboxState.SENT
        assert states[1].state is OutboxState.SENDING  # on disk: the kill came mid-send
        assert [i.state for i in outbox.items()][1] is OutboxState.QUEUED  # as listed
        assert outbox.items()[1].outcome_unknown
        assert states[2].state is OutboxState.QUEUED and states[2].attempts == 0
        # The server restarts too; then a new process resumes.
        server.restart()
        link.set_profile(LOOPBACK)
        before = link.bytes_uploaded
        report = Outbox(tmp_path / "outbox").send_due(now=later())
        uploaded = link.bytes_uploaded - before
    assert sorted(i.id for i in report.sent) == sorted(i.id for i in items[1:])
    assert uploaded < 2.2 * size  # the first result was not sent again
    assert [seg_count(server, s.SOPInstanceUID) for s in segs] == [1, 1, 1]
    assert all(i.state is OutboxState.SENT for i in Outbox(tmp_path / "outbox").items())


def test_stored_but_unconfirmed_upload_is_not_sent_again(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    source = ct_series(n=20, size=64)
    DICOMwebClient(orthanc.dicomweb_url).store_instances(source)
    seg = binary_seg(source, "alice")
    size = len(_saved(seg, tmp_path).read_bytes())
    # The server's answer is held back 3 s; the connection is cut once the server stored it.
    held = LinkProfile("held-answer", None, 0.0, response_delay_s=3.0)
    with LinkSimulator("127.0.0.1", orthanc.http_port, held) as link:
        destination = settings_for(link.url + "/dicom-web", retries=0, timeout_s=20)
        outbox = Outbox(tmp_path / "outbox")
        item = outbox.enqueue(seg, destination, case_id="case-1", reader="alice")
        result: list = []
        sending = threading.Thread(target=lambda: result.append(outbox.send_due()))
        sending.start()
        wait_for(lambda: seg_count(orthanc, seg.SOPInstanceUID) == 1, 10, "Orthanc to store it")
        link.drop_connections()
        sending.join(30)
        [failed] = result[0].failed
        assert failed.outcome_unknown
        assert "cannot be reached" in failed.last_error
        link.set_profile(LOOPBACK)
        before = link.bytes_uploaded
        report = outbox.send_due(now=later())
        uploaded = link.bytes_uploaded - before
    [sent] = report.sent
    assert sent.id == item.id
    assert sent.note == "was already on the server (not sent again)"
    assert uploaded < size / 4  # a QIDO-RS query, no second upload
    assert seg_count(orthanc, seg.SOPInstanceUID) == 1


def test_wrong_password_needs_attention_with_a_clear_reason_and_no_secret(
    tmp_path: Path,
    orthanc_factory: Callable[..., OrthancServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = orthanc_factory(users={"reader1": "right-horse-battery"})
    source = ct_series()
    DICOMwebClient(server.dicomweb_url, session=server.session()).store_instances(source)
    monkeypatch.setenv("OUTBOX_TEST_PASSWORD", "wrong-staple-secret")
    destination = settings_for(
        server.dicomweb_url,
        auth=AuthKind.BASIC,
        username="reader1",
        secret=SecretRef(env="OUTBOX_TEST_PASSWORD"),
    )
    seg = binary_seg(source, "alice")
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(seg, destination, case_id="case-1", reader="alice")

    report = outbox.send_due()

    [attention] = report.needs_attention
    assert attention.state is OutboxState.NEEDS_ATTENTION
    reason = attention.last_error
    assert f"server 'pacs' ({server.dicomweb_url}) refused" in reason
    assert "401" in reason
    assert "check the user name and the password in $OUTBOX_TEST_PASSWORD" in reason
    for path in (tmp_path / "outbox").rglob("*"):
        if path.is_file():
            assert b"wrong-staple-secret" not in path.read_bytes()
            assert b"right-horse-battery" not in path.read_bytes()
    # Not retried blindly: later passes leave it alone.
    assert outbox.send_due(now=later(600)).needs_attention == ()
    assert outbox.get(item.id).attempts == 1
    # The reader fixes the password and asks for a retry.
    monkeypatch.setenv("OUTBOX_TEST_PASSWORD", "right-horse-battery")
    assert [i.id for i in outbox.retry_now()] == [item.id]
    assert [i.id for i in outbox.send_due().sent] == [item.id]
    assert seg_count(server, seg.SOPInstanceUID) == 1


def test_sender_thread_delivers_once_the_server_is_back(
    tmp_path: Path, orthanc_factory: Callable[..., OrthancServer]
) -> None:
    server = orthanc_factory()
    source = ct_series()
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    server.kill()
    seg = binary_seg(source, "alice")
    outbox = Outbox(tmp_path / "outbox", backoff_s=0.3, max_backoff_s=1.0)
    reports = []
    with OutboxSender(outbox, on_report=reports.append, poll_s=5):
        item = outbox.enqueue(
            seg, settings_for(server.dicomweb_url, retries=0), case_id="c", reader="alice"
        )
        wait_for(lambda: outbox.get(item.id).attempts >= 2, 10, "two failed attempts")
        server.start()
        wait_for(lambda: outbox.get(item.id).state is OutboxState.SENT, 10, "the send")
    assert not [t for t in threading.enumerate() if t.name == "OutboxSender"]
    assert any(r.sent for r in reports)
    assert seg_count(server, seg.SOPInstanceUID) == 1


def test_live_settings_win_over_the_saved_copy(tmp_path: Path, orthanc: OrthancServer) -> None:
    source = ct_series()
    DICOMwebClient(orthanc.dicomweb_url).store_instances(source)
    seg = binary_seg(source, "alice")
    saved = settings_for(orthanc.dicomweb_url, timeout_s=0.001)  # would time out
    Outbox(tmp_path / "outbox").enqueue(seg, saved, case_id="c", reader="alice")
    live = replace(saved, timeout_s=30)
    report = Outbox(tmp_path / "outbox", servers=[live]).send_due()
    assert len(report.sent) == 1


def test_outbox_command_lists_and_retries(
    tmp_path: Path,
    orthanc_factory: Callable[..., OrthancServer],
    capsys: pytest.CaptureFixture[str],
    caseiterator_data_dir: Path,
) -> None:
    server = orthanc_factory()
    source = ct_series()
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    server.kill()
    seg = binary_seg(source, "alice")
    outbox = Outbox()  # the default folder, as the application uses it
    assert outbox.folder == caseiterator_data_dir / "outbox"
    item = outbox.enqueue(
        seg,
        settings_for(server.dicomweb_url, retries=0),
        case_id="case-1",
        reader="alice",
        label="DEMO-001 · CT",
    )
    outbox.send_due()

    assert outbox_command.run_outbox(as_json=True) == 1  # something is pending
    listed = json.loads(capsys.readouterr().out)
    [entry] = listed["items"]
    assert entry["id"] == item.id
    assert entry["state"] == "queued"
    assert entry["destination"] == {"name": "pacs", "url": server.dicomweb_url}
    assert entry["attempts"] == 1
    assert "cannot be reached" in entry["last_error"]
    assert entry["next_attempt_at"]

    assert outbox_command.run_outbox() == 1
    text = capsys.readouterr().out
    assert "DEMO-001" in text and "queued" in text and server.dicomweb_url in text

    server.start()
    assert outbox_command.run_outbox(retry=True, as_json=True) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["items"][0]["state"] == "sent"
    assert after["sent_now"] == 1
    assert seg_count(server, seg.SOPInstanceUID) == 1

    # Through the command line parser, as `caseiterator outbox --retry` runs it.
    import argparse

    parser = argparse.ArgumentParser()
    outbox_command.register(parser.add_subparsers())
    args = parser.parse_args(["outbox", "--retry"])
    assert args.run(args) == 0


# -- the result store with a DICOMweb batch ----------------------------------------------------


def web_case(tmp_path: Path, url: str, source: list[Dataset]) -> tuple[BatchDefinition, Case]:
    """The case of ``source`` as a DICOMweb batch on ``url`` lists it."""
    batch_file = tmp_path / "web.toml"
    batch_file.write_text(
        f'[source]\ntype = "dicomweb"\nurl = "{url}"\ncache = "{tmp_path / "cache"}"\n'
        f'[source.query]\nPatientID = "{source[0].PatientID}"\n'
    )
    batch = load_batch(batch_file)
    with open_source(batch) as web:
        [case] = list(web.iter_cases())
    return batch, case


def test_result_store_sends_to_the_source_server_and_resumes_from_it(
    tmp_path: Path, orthanc: OrthancServer
) -> None:
    source = ct_series(patient="RESUME-1")
    DICOMwebClient(orthanc.dicomweb_url).store_instances(source)
    batch, case = web_case(tmp_path, orthanc.dicomweb_url, source)
    server = settings_for(orthanc.dicomweb_url)
    outbox = Outbox(tmp_path / "outbox")
    alice = ResultStore(batch, "alice", outbox=outbox, servers=[server])
    assert alice.find_latest(case) is None

    older = binary_seg(source, "alice", 101)
    older.ContentDate, older.ContentTime = "20260102", "100000"
    newer = binary_seg(source, "alice", 102)
    newer.ContentDate, newer.ContentTime = "20260102", "140200"
    bobs = binary_seg(source, "bob", 103)  # the newest SEG of the series, by another reader
    bobs.ContentDate, bobs.ContentTime = "20260102", "235900"
    saved = [alice.save(case, seg_dataset=older), alice.save(case, seg_dataset=newer)]
    ResultStore(batch, "bob", outbox=outbox, servers=[server]).save(case, seg_dataset=bobs)
    assert saved[1].outbox_item is not None
    assert saved[1].files == (saved[1].outbox_item.path,)
    assert f"server 'pacs' ({orthanc.dicomweb_url}) (through the outbox)" == saved[1].place

    # Not sent yet: the reader resumes from the outbox copy.
    point = alice.find_latest(case)
    assert point.origin is ResumeOrigin.OUTBOX
    assert point.sop_instance_uid == newer.SOPInstanceUID
    assert "not yet sent" in point.describe()
    assert len(outbox.send_due().sent) == 3

    # Another workstation (its own outbox and cache): found on the server, retrieved once.
    elsewhere = ResultStore(
        batch,
        "alice",
        outbox=Outbox(tmp_path / "other-outbox"),
        servers=[server],
        cache=LocalDicomDatabase(tmp_path / "other-cache"),
    )
    point = elsewhere.find_latest(case)
    assert point.origin is ResumeOrigin.SERVER
    assert point.sop_instance_uid == newer.SOPInstanceUID
    assert point.series_number == 102
    assert point.path.is_relative_to(tmp_path / "other-cache")
    assert pydicom.dcmread(point.path).SOPInstanceUID == newer.SOPInstanceUID
    assert point.describe() == (
        f"resumed from your save of 2026-01-02 14:02 (server 'pacs' ({orthanc.dicomweb_url}))"
    )
    assert elsewhere.find_latest(case).path == point.path  # cached: no second download
    bob = ResultStore(
        batch, "bob", outbox=Outbox(tmp_path / "o3"), servers=[server], cache=elsewhere._cache
    )
    assert bob.find_latest(case).sop_instance_uid == bobs.SOPInstanceUID
    carol = ResultStore(
        batch, "carol", outbox=Outbox(tmp_path / "o4"), servers=[server], cache=elsewhere._cache
    )
    assert carol.find_latest(case) is None


def test_resume_with_the_server_down_offers_the_local_copy(
    tmp_path: Path, orthanc_factory: Callable[..., OrthancServer]
) -> None:
    server = orthanc_factory()
    source = ct_series(patient="RESUME-2")
    DICOMwebClient(server.dicomweb_url).store_instances(source)
    batch, case = web_case(tmp_path, server.dicomweb_url, source)
    settings = settings_for(server.dicomweb_url, retries=0)
    store = ResultStore(batch, "alice", outbox=Outbox(tmp_path / "outbox"), servers=[settings])
    seg = binary_seg(source, "alice", 101)
    store.save(case, seg_dataset=seg)
    server.kill()
    with pytest.raises(ResumeLookupError) as info:
        store.find_latest(case)
    message = str(info.value)
    assert f"case {case.label}" in message
    assert f"'pacs' ({server.dicomweb_url}) cannot be reached" in message
    assert info.value.fallback.origin is ResumeOrigin.OUTBOX
    assert info.value.fallback.sop_instance_uid == seg.SOPInstanceUID


def _saved(ds: Dataset, folder: Path) -> Path:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
