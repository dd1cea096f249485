"""The outbox on disk, without a server: durability, retry schedule, locking, the sender thread.

Sending fails for real here: the destination is a loopback port nothing listens on (connection
refused). The server round trips are in ``Testing/integration/test_outbox.py``.
"""

from __future__ import annotations

import fcntl
import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from CaseIteratorCoreLib.outbox import (
    MAX_BACKOFF_S,
    Outbox,
    OutboxError,
    OutboxSender,
    OutboxState,
    backoff_delay,
    default_outbox_dir,
)
from CaseIteratorCoreLib.server_settings import AuthKind, SecretRef, ServerSettings

#: Nothing listens on the discard port of loopback: every connection is refused at once.
DEAD = ServerSettings(name="pacs", url="http://127.0.0.1:9/dicom-web", retries=0, timeout_s=2)


def instance(description: str = "result") -> Dataset:
    """A small DICOM instance with the UIDs a result carries."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SeriesDescription = description
    return ds


def test_backoff_doubles_from_5_s_and_caps_at_10_min() -> None:
    schedule = [backoff_delay(n, jitter=0) for n in range(1, 12)]
    assert schedule[:4] == [5, 10, 20, 40]
    assert max(schedule) == MAX_BACKOFF_S == 600
    assert schedule[-1] == 600
    rng = random.Random(1)
    jittered = [backoff_delay(3, rng=rng) for _ in range(200)]
    assert all(16 <= d <= 24 for d in jittered)  # 20 s +- 20 %
    assert len({round(d, 3) for d in jittered}) > 100  # stations do not retry in lockstep
    assert all(backoff_delay(20, rng=rng) <= 600 for _ in range(50))


def test_default_folder_is_in_the_user_data_folder(caseiterator_data_dir: Path) -> None:
    assert default_outbox_dir() == caseiterator_data_dir / "outbox"
    assert Outbox().folder == caseiterator_data_dir / "outbox"


def test_enqueued_result_is_on_disk_and_survives_a_new_outbox(tmp_path: Path) -> None:
    ds = instance()
    item = Outbox(tmp_path / "outbox").enqueue(ds, DEAD, case_id="case-1", reader="alice")
    assert item.state is OutboxState.QUEUED
    assert pydicom.dcmread(item.path).SOPInstanceUID == ds.SOPInstanceUID
    # A new process (a new Outbox on the same folder) sees the same item.
    again = Outbox(tmp_path / "outbox")
    [listed] = again.items()
    assert listed.id == item.id
    assert (listed.case_id, listed.reader) == ("case-1", "alice")
    assert listed.destination.describe() == "'pacs' (http://127.0.0.1:9/dicom-web)"
    assert again.pending() == [listed]
    # Enqueuing the same instance for the same server again does not make a second item.
    assert again.enqueue(ds, DEAD, case_id="case-1", reader="alice").id == item.id
    assert len(again.items()) == 1
    # Nothing half-written is left in the folder.
    assert not list((tmp_path / "outbox").rglob("*.partial"))
    assert list((tmp_path / "outbox" / "incoming").iterdir()) == []


def test_enqueue_a_file(tmp_path: Path) -> None:
    ds = instance()
    path = tmp_path / "seg.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = Outbox(tmp_path / "outbox").enqueue(path, DEAD, case_id="c", reader="r")
    assert item.path.read_bytes() == path.read_bytes()
    with pytest.raises(OutboxError, match=r"not a DICOM file"):
        (tmp_path / "junk.dcm").write_text("hello")
        Outbox(tmp_path / "outbox").enqueue(tmp_path / "junk.dcm", DEAD, case_id="c", reader="r")


def test_result_without_uid_is_refused_with_the_reason(tmp_path: Path) -> None:
    ds = instance()
    del ds.SOPInstanceUID
    with pytest.raises(OutboxError, match=r"case 'c7' has no SOPInstanceUID.*'pacs'"):
        Outbox(tmp_path / "outbox").enqueue(ds, DEAD, case_id="c7", reader="r")
    assert Outbox(tmp_path / "outbox").items() == []


def test_state_holds_where_the_secret_is_never_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PACS_PASSWORD", "hunter2-very-secret")
    server = ServerSettings(
        name="pacs",
        url="http://127.0.0.1:9/dicom-web",
        auth=AuthKind.BASIC,
        username="reader1",
        secret=SecretRef(env="TEST_PACS_PASSWORD"),
        retries=0,
    )
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(instance(), server, case_id="c", reader="r")
    outbox.send_due()
    for path in (tmp_path / "outbox").rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    state = json.loads((item.folder / "item.json").read_text())
    assert state["destination"]["secret_env"] == "TEST_PACS_PASSWORD"
    assert "hunter2" not in (outbox.get(item.id).last_error or "")


def test_failures_follow_the_backoff_schedule_and_keep_the_reason(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", jitter=0)
    item = outbox.enqueue(instance(), DEAD, case_id="c", reader="r")
    t0 = datetime.now(UTC)
    report = outbox.send_due(now=t0)
    [failed] = report.failed
    assert failed.attempts == 1
    assert failed.state is OutboxState.QUEUED
    assert failed.next_attempt_at == t0 + timedelta(seconds=5)
    assert "'pacs' (http://127.0.0.1:9/dicom-web) cannot be reached" in failed.last_error
    assert "check that the server is running" in failed.last_error
    # Not due yet: nothing is tried.
    assert outbox.send_due(now=t0 + timedelta(seconds=4.9)) == type(report)()
    assert outbox.get(item.id).attempts == 1
    waits = []
    now = t0
    for _ in range(9):
        now = outbox.get(item.id).next_attempt_at
        outbox.send_due(now=now)
        waits.append((outbox.get(item.id).next_attempt_at - now).total_seconds())
    assert waits == [10, 20, 40, 80, 160, 320, 600, 600, 600]
    after = outbox.get(item.id)
    assert after.attempts == 10
    assert after.path.is_file()  # nothing is given up or lost
    assert after.outcome_unknown  # a connection error may hide a stored upload


def test_second_item_for_a_dead_server_waits_without_its_own_timeout(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", jitter=0)
    first = outbox.enqueue(instance(), DEAD, case_id="a", reader="r")
    second = outbox.enqueue(instance(), DEAD, case_id="b", reader="r")
    t0 = datetime.now(UTC)
    report = outbox.send_due(now=t0)
    assert {i.id for i in report.failed} == {first.id, second.id}
    assert outbox.get(first.id).attempts == 1
    assert outbox.get(second.id).attempts == 0  # not tried: its server was just found down
    assert outbox.get(second.id).last_error == outbox.get(first.id).last_error
    assert outbox.get(second.id).next_attempt_at == outbox.get(first.id).next_attempt_at


def test_item_held_by_another_sender_is_left_alone(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(instance(), DEAD, case_id="c", reader="r")
    # Another process sending it holds the flock on its lock file (the documented protocol).
    with open(item.folder / ".lock", "rb+") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = outbox.send_due()
        assert report.busy == (item.id,)
        assert outbox.get(item.id).attempts == 0
        assert outbox.retry_now() == []  # being sent: left to its sender
    assert len(outbox.send_due().failed) == 1


def test_interrupted_send_shows_as_queued_with_unknown_outcome(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(instance(), DEAD, case_id="c", reader="r")
    # A process died while sending: state "sending" on disk, nobody holds the lock.
    state = json.loads((item.folder / "item.json").read_text())
    state["state"] = "sending"
    (item.folder / "item.json").write_text(json.dumps(state))
    [listed] = outbox.items()
    assert listed.state is OutboxState.QUEUED
    assert listed.outcome_unknown
    assert "interrupted" in listed.note


def test_stale_incoming_item_is_removed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    leftover = outbox.folder / "incoming" / "20260101T000000Z-dead.beef"
    leftover.mkdir()
    (leftover / "instance.dcm").write_bytes(b"half")
    old = time.time() - 3600
    import os

    os.utime(leftover, (old, old))
    Outbox(tmp_path / "outbox")
    assert not leftover.exists()
    assert Outbox(tmp_path / "outbox").items() == []


def test_retry_now_makes_failed_items_due(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    item = outbox.enqueue(instance(), DEAD, case_id="c", reader="r")
    outbox.send_due()
    assert outbox.get(item.id).next_attempt_at > datetime.now(UTC)
    assert outbox.send_due().failed == ()
    [again] = outbox.retry_now([item.id])
    assert again.next_attempt_at <= datetime.now(UTC)
    assert len(outbox.send_due().failed) == 1
    assert outbox.get(item.id).attempts == 2


def test_sender_thread_wakes_on_enqueue_and_stops_cleanly(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", backoff_s=60)
    reports = []
    tried = threading.Event()

    def on_report(report) -> None:
        reports.append(report)
        tried.set()

    sender = OutboxSender(outbox, on_report=on_report, poll_s=30)
    sender.start()
    try:
        time.sleep(0.2)  # the first pass found nothing; the thread sleeps up to 30 s
        outbox.enqueue(instance(), DEAD, case_id="c", reader="r")
        assert tried.wait(10), "the sender did not wake up on enqueue"
        assert reports[0].failed[0].attempts == 1
    finally:
        started = time.monotonic()
        sender.stop()
    assert time.monotonic() - started < 5
    assert not sender.running
    assert not [t for t in threading.enumerate() if t.name == "OutboxSender"]
    assert outbox.pending()[0].path.is_file()
