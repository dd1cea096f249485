"""The outbox: results wait on disk until a DICOMweb server has confirmed them (STOW-RS).

Every result bound for a server is first written here, then sent; nothing is lost while the
server is down, the network is cut or the application is killed. The folder
(``user_data_dir()/"outbox"`` by default) holds one folder per item::

    items/<id>/instance.dcm     the result, byte for byte what will be sent
    items/<id>/item.json        its state: destination (name, URL; never a secret), UIDs,
                                attempts, last error, next attempt, state
    items/<id>/.lock            flock'ed by whoever is sending the item right now
    incoming/                   items being written (moved into items/ only when complete)

Durability
    An item is built in ``incoming/`` (files fsynced), then renamed into ``items/`` in one
    step, so ``items/`` only ever holds complete items. ``item.json`` is replaced atomically
    (temporary file, fsync, ``os.replace``): a reader never sees half a state.
Concurrency
    The application's sender thread and ``caseiterator outbox --retry`` may work at the same
    time. Whoever sends an item holds an exclusive ``flock`` on its ``.lock`` file and changes
    its state only while holding it; the other skips the item (``SendReport.busy``). The
    operating system drops the lock when its process dies, so an item found in state
    ``sending`` with a free lock was interrupted mid-send: its outcome is unknown.
Idempotency
    After an unknown outcome (connection cut or timeout during the upload, a killed process,
    a 5xx that may come from a proxy after the archive stored it) the server is asked first
    with QIDO-RS whether the SOP Instance UID is already there; if so the item is marked sent
    without sending again. STOW-RS of the same SOP Instance UID is idempotent on Orthanc and
    dcm4chee anyway: a duplicate would at worst be stored once.
Retries
    A failure that may pass (server down, timeout, 5xx, out of resources) is retried with
    exponential backoff and jitter: 5 s, 10 s, 20 s... capped at 10 min, forever (nothing is
    given up). A failure that will not pass by waiting (401/403, 404, a refused object, an
    unreadable secret) puts the item in ``needs-attention`` with the reason; it is sent again
    only when asked (:meth:`Outbox.retry_now`, ``caseiterator outbox --retry``).
Sent items
    Their file is kept for ``keep_sent`` (7 days) so the reader's last results stay at hand
    (resume without a download), then the item folder is removed.

How an item reaches its server: the item keeps the server's connection settings *without any
secret* (where the password or token is: ``$VARIABLE`` or a file path). When sending, the live
settings the application registered (:meth:`Outbox.register_server`) win, then the site
settings' server of the same name and URL, then that saved copy.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .atomic_files import fsync_folder, replace_file
from .dicom_files import dataset_bytes
from .dicomweb_connection import ServerAuthError, ServerError, open_client, server_errors
from .errors import CaseIteratorError
from .paths import user_data_dir
from .server_settings import AuthKind, SecretError, SecretRef, ServerSettings
from .tasks import CancelToken, ProgressCallback, no_progress

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; the reading stations are Linux
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ITEMS_DIR = "items"
INCOMING_DIR = "incoming"
INSTANCE_FILE = "instance.dcm"
STATE_FILE = "item.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1

#: First wait after a failed attempt; it doubles with each failure up to MAX_BACKOFF_S.
BACKOFF_S = 5.0
MAX_BACKOFF_S = 600.0
#: Each wait is drawn within +-JITTER of its nominal value, so stations that lost the same
#: server do not all come back at the same second.
JITTER = 0.2
#: How long the file of a sent item is kept.
KEEP_SENT = timedelta(days=7)
#: An ``incoming/`` folder older than this with no writer is a leftover of a killed enqueue.
_STALE_INCOMING_S = 600.0
#: HTTP answers a wait may cure; other 4xx need a person (wrong URL, refused object...).
_TRANSIENT_4XX = (408, 425, 429)
#: States a sender picks up (``sending`` with a free lock: its sender died mid-send).
_SENDABLE = ("queued", "sending")


def default_outbox_dir() -> Path:
    """The per-user outbox folder: ``user_data_dir() / "outbox"`` (not created here)."""
    return user_data_dir() / "outbox"


class OutboxError(CaseIteratorError):
    """The outbox cannot store or read a result; the message names the folder or file and the fix.

    Attributes
    ----------
    path
        The outbox folder or the item file concerned.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(message)


class OutboxState(StrEnum):
    """Where an item is; the values are what ``item.json`` and ``--json`` hold."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    NEEDS_ATTENTION = "needs-attention"


@dataclass(frozen=True)
class Destination:
    """A DICOMweb server an item goes to, as saved with the item: never a secret value.

    ``secret_env`` / ``secret_file`` say *where* the password or token is read from when
    sending, as in the site settings.
    """

    name: str
    url: str
    auth: str = AuthKind.NONE.value
    username: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    ca_bundle: str | None = None
    verify_tls: bool = True
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Destination:
        """The saved form of ``settings`` (a URL holding a user name or password is redacted)."""
        secret = settings.secret
        return cls(
            name=settings.name,
            url=settings.safe_url,
            auth=str(settings.auth),
            username=settings.username,
            secret_env=secret.env if secret else None,
            secret_file=str(secret.file) if secret and secret.file else None,
            ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
            verify_tls=settings.verify_tls,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            backoff_s=settings.backoff_s,
        )

    def to_settings(self) -> ServerSettings:
        """Server settings to send with (the secret is read from its place when sending)."""
        secret = None
        if self.secret_env or self.secret_file:
            secret = SecretRef(
                env=self.secret_env, file=Path(self.secret_file) if self.secret_file else None
            )
        return ServerSettings(
            name=self.name,
            url=self.url,
            auth=AuthKind(self.auth),
            username=self.username,
            secret=secret,
            ca_bundle=Path(self.ca_bundle) if self.ca_bundle else None,
            verify_tls=self.verify_tls,
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
        )

    def describe(self) -> str:
        """``'name' (url)`` for messages."""
        return f"{self.name!r} ({self.url})" if self.name else self.url


@dataclass(frozen=True)
class OutboxItem:
    """One result in the outbox and its sending state.

    Attributes
    ----------
    id
        Item identifier, sortable by creation time.
    folder
        The item's folder; the result is ``folder / "instance.dcm"`` (:attr:`path`).
    state
        Queued, sending, sent or needs-attention.
    destination
        The server it goes to (name and URL shown to people; no secret).
    study_uid, series_uid, sop_instance_uid, sop_class_uid
        The result's DICOM identity.
    case_id, reader, label
        Whose result of which case (``label`` is what people see, e.g. the case name).
    created_at
        When it was put into the outbox (UTC).
    attempts
        Attempts made so far (a QIDO-RS check counts as one).
    last_error
        Why the last attempt failed (names the server and what to check), None after success.
    next_attempt_at
        When the sender tries again (UTC); meaningless once sent.
    last_attempt_at, sent_at
        UTC times of the last attempt and of the confirmation.
    outcome_unknown
        The last attempt may have reached the server: check with QIDO-RS before sending again.
    note
        Extra information for people ("was already on the server").
    """

    id: str
    folder: Path
    state: OutboxState
    destination: Destination
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    case_id: str
    reader: str
    created_at: datetime
    next_attempt_at: datetime
    label: str = ""
    size: int = 0
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    outcome_unknown: bool = False
    note: str | None = None

    @property
    def path(self) -> Path:
        """The result file, as it is sent."""
        return self.folder / INSTANCE_FILE

    @property
    def pending(self) -> bool:
        """Whether the server has not confirmed it yet."""
        return self.state is not OutboxState.SENT

    def to_json(self) -> dict[str, Any]:
        """The state as saved in ``item.json`` (also what ``caseiterator outbox --json`` shows)."""
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "id": self.id,
            "state": self.state.value,
            "destination": asdict(self.destination),
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "case_id": self.case_id,
            "reader": self.reader,
            "label": self.label,
            "size": self.size,
            "created_at": _iso(self.created_at),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "last_attempt_at": _iso(self.last_attempt_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "sent_at": _iso(self.sent_at),
            "outcome_unknown": self.outcome_unknown,
            "note": self.note,
        }
        return data

    @classmethod
    def from_json(cls, folder: Path, data: dict[str, Any]) -> OutboxItem:
        """Read the state written by :meth:`to_json`."""
        return cls(
            id=str(data["id"]),
            folder=folder,
            state=OutboxState(data["state"]),
            destination=Destination(**data["destination"]),
            study_uid=str(data["study_uid"]),
            series_uid=str(data["series_uid"]),
            sop_instance_uid=str(data["sop_instance_uid"]),
            sop_class_uid=str(data.get("sop_class_uid", "")),
            case_id=str(data.get("case_id", "")),
            reader=str(data.get("reader", "")),
            label=str(data.get("label", "")),
            size=int(data.get("size", 0)),
            created_at=_parse_time(data["created_at"]),
            attempts=int(data.get("attempts", 0)),
            last_error=data.get("last_error"),
            last_attempt_at=_parse_time(data.get("last_attempt_at")),
            next_attempt_at=_parse_time(data["next_attempt_at"]),
            sent_at=_parse_time(data.get("sent_at")),
            outcome_unknown=bool(data.get("outcome_unknown", False)),
            note=data.get("note"),
        )


@dataclass(frozen=True)
class SendReport:
    """What one sending pass did.

    Attributes
    ----------
    sent
        Items the server confirmed (or that were found already there) in this pass.
    failed
        Items that failed and will be retried (their ``last_error`` says why, their
        ``next_attempt_at`` when).
    needs_attention
        Items that will not be retried without a person (wrong password, refused object...).
    busy
        Ids of due items another sender (thread or process) was sending at the same time.
    """

    sent: tuple[OutboxItem, ...] = ()
    failed: tuple[OutboxItem, ...] = ()
    needs_attention: tuple[OutboxItem, ...] = ()
    busy: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing failed in this pass."""
        return not self.failed and not self.needs_attention


def backoff_delay(
    failures: int,
    *,
    base: float = BACKOFF_S,
    cap: float = MAX_BACKOFF_S,
    jitter: float = JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: base, 2 base... up to cap.

    The nominal wait is scaled by a random factor in ``[1 - jitter, 1 + jitter]`` and then
    capped, so no wait exceeds ``cap``.
    """
    if failures < 1:
        return 0.0
    nominal = min(base * 2 ** min(failures - 1, 30), cap)
    factor = 1.0 + jitter * (2.0 * (rng or random).random() - 1.0) if jitter else 1.0
    return min(nominal * factor, cap)


class Outbox:
    """Results waiting on disk for a DICOMweb server, sent with STOW-RS and retried until
    confirmed (see the module notes for the guarantees).

    Parameters
    ----------
    folder
        The outbox folder (created when missing); ``user_data_dir()/"outbox"`` by default.
    servers
        Live server settings to send with, matched to an item by URL (see
        :meth:`register_server`); items whose server is not given here use the site settings'
        server of the same name and URL, else the settings saved with the item.
    backoff_s, max_backoff_s, jitter
        Retry schedule (see :func:`backoff_delay`).
    keep_sent
        How long the file of a sent item is kept before its folder is removed.
    rng
        Random source of the jitter (tests pass a seeded one).

    Raises
    ------
    OutboxError
        When the folder cannot be created (the message names it).
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        servers: Iterable[ServerSettings] = (),
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        jitter: float = JITTER,
        keep_sent: timedelta = KEEP_SENT,
        rng: random.Random | None = None,
    ) -> None:
        if fcntl is None:  # pragma: no cover
            raise OutboxError(Path(folder or "."), "the outbox needs POSIX file locks (fcntl)")
        self.folder = Path(folder).expanduser().absolute() if folder else default_outbox_dir()
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.jitter = jitter
        self.keep_sent = keep_sent
        self._rng = rng or random.Random()
        self._servers: dict[str, ServerSettings] = {}
        self._listeners: list[Callable[[], None]] = []
        self._guard = threading.Lock()
        self._enqueue_lock = threading.Lock()
        for settings in servers:
            self.register_server(settings)
        try:
            (self.folder / ITEMS_DIR).mkdir(parents=True, exist_ok=True)
            (self.folder / INCOMING_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(
                self.folder,
                f"cannot create the outbox folder {self.folder}: {exc.strerror}; check that "
                "the disk is mounted and writable, or move the data folder with "
                "$CASEITERATOR_DATA_DIR",
            ) from exc
        self._remove_stale_incoming()

    def __repr__(self) -> str:
        return f"Outbox({str(self.folder)!r})"

    # -- configuration ---------------------------------------------------------------------

    def register_server(self, settings: ServerSettings) -> None:
        """Send items bound for ``settings.url`` with these settings (the application's own)."""
        with self._guard:
            self._servers[settings.safe_url.rstrip("/")] = settings

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the calling thread) whenever an item becomes due at once."""
        with self._guard:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with self._guard, contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _notify(self) -> None:
        with self._guard:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback()
            except Exception:  # a listener's bug must not lose the caller's result
                logger.exception("outbox listener failed")

    # -- adding ----------------------------------------------------------------------------

    def enqueue(
        self,
        dataset_or_path: Dataset | Path | str,
        destination: ServerSettings,
        *,
        case_id: str,
        reader: str,
        label: str = "",
    ) -> OutboxItem:
        """Write a result into the outbox (durably) and make it due at once.

        Enqueuing the same SOP Instance UID for the same server again returns the item already
        there: a result is sent once.

        Parameters
        ----------
        dataset_or_path
            The DICOM object (a SEG) or the file holding it.
        destination
            The server to send it to.
        case_id, reader, label
            Whose result of which case, for listing and resuming.

        Returns
        -------
        OutboxItem
            The queued item; its file is on disk when this returns.

        Raises
        ------
        OutboxError
            When the object lacks a UID, cannot be encoded or read, or the disk refuses the
            write (the message names the file or folder and the fix).
        """
        if isinstance(dataset_or_path, Dataset):
            uids = self._uids(dataset_or_path, destination, case_id)  # before encoding fails
            content, _ = self._encode(dataset_or_path)
        else:
            content, header = self._encode(dataset_or_path)
            uids = self._uids(header, destination, case_id)
        sop = uids[2]
        dest = Destination.from_settings(destination)
        self.register_server(destination)
        with self._enqueue_lock:  # two saves of one result in this process make one item
            for item in self.items():
                if item.sop_instance_uid == sop and item.destination.url == dest.url:
                    return item
            item = self._new_item(content, dest, uids, case_id, reader, label)
        self._notify()
        return item

    def _new_item(
        self,
        content: bytes,
        dest: Destination,
        uids: tuple[str, str, str, str],
        case_id: str,
        reader: str,
        label: str,
    ) -> OutboxItem:
        study, series, sop, sop_class = uids
        now = _utcnow()
        item_id = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        item = OutboxItem(
            id=item_id,
            folder=self.folder / ITEMS_DIR / item_id,
            state=OutboxState.QUEUED,
            destination=dest,
            study_uid=study,
            series_uid=series,
            sop_instance_uid=sop,
            sop_class_uid=sop_class,
            case_id=case_id,
            reader=reader,
            label=label,
            size=len(content),
            created_at=now,
            next_attempt_at=now,
        )
        self._write_new_item(item, content)
        return item

    def _uids(
        self, ds: Dataset, destination: ServerSettings, case_id: str
    ) -> tuple[str, str, str, str]:
        """Study, series, SOP instance and SOP class UIDs of a result; refuse one lacking any."""
        keywords = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
        values = tuple(str(ds.get(k, "") or "").strip() for k in keywords)
        for keyword, value in zip(keywords, values, strict=True):
            if not value:
                raise OutboxError(
                    self.folder,
                    f"the result of case {case_id!r} has no {keyword}; it cannot be sent to "
                    f"server {destination.describe()} (the SEG writer must set it)",
                )
        return values  # type: ignore[return-value]

    def _encode(self, dataset_or_path: Dataset | Path | str) -> tuple[bytes, Dataset]:
        if isinstance(dataset_or_path, Dataset):
            ds = dataset_or_path
            try:
                return dataset_bytes(ds), ds
            except Exception as exc:  # pydicom raises many types for unencodable datasets
                raise OutboxError(
                    self.folder,
                    f"the result cannot be encoded as a DICOM file ({type(exc).__name__}: "
                    f"{exc}); it was not queued",
                ) from exc
        path = Path(dataset_or_path)
        try:
            content = path.read_bytes()
            header = pydicom.dcmread(BytesIO(content), stop_before_pixels=True)
        except OSError as exc:
            raise OutboxError(path, f"cannot read the result file {path}: {exc.strerror}") from exc
        except InvalidDicomError as exc:
            raise OutboxError(path, f"the result file {path} is not a DICOM file: {exc}") from exc
        return content, header

    def _write_new_item(self, item: OutboxItem, content: bytes) -> None:
        incoming = self.folder / INCOMING_DIR / f"{item.id}.{secrets.token_hex(4)}"
        try:
            incoming.mkdir(parents=True)
            with _ItemLock(incoming / LOCK_FILE) as locked:  # marks the write as alive
                assert locked
                replace_file(incoming / INSTANCE_FILE, content, mode=0o600)
                replace_file(incoming / STATE_FILE, _dump(item), mode=0o600)
                fsync_folder(incoming)
                os.rename(incoming, item.folder)  # all of it appears in items/ at once
            fsync_folder(item.folder.parent)
        except OSError as exc:
            shutil.rmtree(incoming, ignore_errors=True)
            fix = (
                "free disk space"
                if exc.errno == errno.ENOSPC
                else "check that the folder is writable"
            )
            raise OutboxError(
                self.folder,
                f"cannot write the result of case {item.case_id!r} into the outbox "
                f"{self.folder}: {exc.strerror}; {fix} and save again (the result was not "
                "queued)",
            ) from exc

    def _remove_stale_incoming(self) -> None:
        """Remove items a killed process was still writing (never listed, never sent)."""
        now = time.time()
        for folder in (self.folder / INCOMING_DIR).iterdir():
            try:
                if now - folder.stat().st_mtime < _STALE_INCOMING_S:
                    continue
                with _ItemLock(folder / LOCK_FILE, create=False) as locked:
                    if locked:
                        shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    # -- listing ---------------------------------------------------------------------------

    def items(self) -> list[OutboxItem]:
        """Every item, oldest first. An item whose sender died mid-send shows as queued with
        ``outcome_unknown`` (the next sender checks the server first)."""
        found = []
        root = self.folder / ITEMS_DIR
        for folder in sorted(root.iterdir()) if root.is_dir() else ():
            item = self._read(folder)
            if item is None:
                continue
            if item.state is OutboxState.SENDING and not _is_locked(folder / LOCK_FILE):
                item = replace(
                    item,
                    state=OutboxState.QUEUED,
                    outcome_unknown=True,
                    note="interrupted while sending; the server is checked before sending again",
                )
            found.append(item)
        return found

    def pending(self) -> list[OutboxItem]:
        """Items the server has not confirmed yet (queued, sending, needs-attention)."""
        return [item for item in self.items() if item.pending]

    def get(self, item_id: str) -> OutboxItem:
        """The item ``item_id``.

        Raises
        ------
        KeyError
            When there is no such item.
        """
        item = self._read(self.folder / ITEMS_DIR / item_id)
        if item is None:
            raise KeyError(f"no item {item_id!r} in the outbox {self.folder}")
        return item

    def next_due(self) -> datetime | None:
        """When the next queued item is due (UTC; may be in the past), None when none waits."""
        times = []
        for item in self.items():
            if item.state is OutboxState.QUEUED:
                times.append(item.next_attempt_at)
        return min(times) if times else None

    def _read(self, folder: Path) -> OutboxItem | None:
        try:
            data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            return OutboxItem.from_json(folder, data)
        except FileNotFoundError:
            return None  # removed (sent and expired) while listing
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("outbox item %s has an unreadable state file: %s", folder, exc)
            return None

    # -- sending ---------------------------------------------------------------------------

    def retry_now(self, ids: Iterable[str] | None = None) -> list[OutboxItem]:
        """Make items due at once, including those that need attention (after a fix).

        Parameters
        ----------
        ids
            The items to retry; all pending items when None.

        Returns
        -------
        list[OutboxItem]
            The items rescheduled (items being sent right now are left to their sender).
        """
        wanted = set(ids) if ids is not None else None
        now = _utcnow()
        changed = []
        for item in self.items():
            if not item.pending or (wanted is not None and item.id not in wanted):
                continue
            with _ItemLock(item.folder / LOCK_FILE) as locked:
                if not locked:
                    continue
                fresh = self._read(item.folder)
                if fresh is None or fresh.state is OutboxState.SENT:
                    continue
                unknown = fresh.outcome_unknown or fresh.state is OutboxState.SENDING
                changed.append(
                    self._save(
                        replace(
                            fresh,
                            state=OutboxState.QUEUED,
                            next_attempt_at=now,
                            outcome_unknown=unknown,
                        )
                    )
                )
        if changed:
            self._notify()
        return changed

    def send_due(
        self,
        now: datetime | None = None,
        *,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> SendReport:
        """Send every item whose next attempt is due, oldest first; return what happened.

        Also removes sent items older than ``keep_sent``. Never raises for a server or item
        problem: those are recorded in the item (``last_error``) and in the report.

        Parameters
        ----------
        now
            The current time (UTC); tests pass one to step through the retry schedule.
        progress
            Called as ``progress(done, total, message)`` per item.
        cancel
            Checked between items; items not reached stay queued as they were.
        """
        now = now or _utcnow()
        self._purge_sent(now)
        due = [
            item
            for item in self.items()
            if item.state is OutboxState.QUEUED and item.next_attempt_at <= now
        ]
        sent: list[OutboxItem] = []
        failed: list[OutboxItem] = []
        attention: list[OutboxItem] = []
        busy: list[str] = []
        # A server found unreachable in this pass: its other items wait with the same reason
        # instead of each spending a timeout on it.
        down: dict[str, OutboxItem] = {}
        pass_ = _SendPass(self)
        try:
            for done, item in enumerate(due):
                if cancel is not None and cancel.cancelled:
                    break
                progress(done, len(due), f"sending {item.label or item.sop_instance_uid}")
                with _ItemLock(item.folder / LOCK_FILE) as locked:
                    if not locked:
                        busy.append(item.id)
                        continue
                    fresh = self._read(item.folder)
                    if fresh is None or fresh.state not in (
                        OutboxState.QUEUED,
                        OutboxState.SENDING,
                    ):
                        continue
                    if fresh.state is OutboxState.QUEUED and fresh.next_attempt_at > now:
                        continue  # another sender handled it since the listing
                    failed_before = down.get(fresh.destination.url)
                    if failed_before is not None:
                        failed.append(self._defer(fresh, failed_before))
                        continue
                    result = self._send_locked(fresh, now, pass_)
                if result.state is OutboxState.SENT:
                    sent.append(result)
                elif result.state is OutboxState.NEEDS_ATTENTION:
                    attention.append(result)
                else:
                    failed.append(result)
                    if pass_.last_unreachable:
                        down[result.destination.url] = result
            progress(len(due), len(due), f"{len(sent)} sent, {len(failed) + len(attention)} failed")
        finally:
            pass_.close()
        return SendReport(tuple(sent), tuple(failed), tuple(attention), tuple(busy))

    def _defer(self, item: OutboxItem, like: OutboxItem) -> OutboxItem:
        return self._save(
            replace(
                item,
                state=OutboxState.QUEUED,
                last_error=like.last_error,
                next_attempt_at=max(item.next_attempt_at, like.next_attempt_at),
            )
        )

    def _send_locked(self, item: OutboxItem, now: datetime, pass_: _SendPass) -> OutboxItem:
        """Send one item whose lock the caller holds; record and return the outcome."""
        pass_.last_unreachable = False
        # In state "sending" with the lock free: its sender died during the upload.
        unknown = item.outcome_unknown or item.state is OutboxState.SENDING
        settings = self._settings_for(item.destination, pass_)
        attempt = replace(
            item,
            state=OutboxState.SENDING,
            attempts=item.attempts + 1,
            last_attempt_at=now,
            outcome_unknown=unknown,
        )
        self._save(attempt)  # a kill from here on is an unknown outcome
        where = settings.describe()
        sop = item.sop_instance_uid
        client = None
        try:
            client = pass_.client(settings)
            if unknown and self._on_server(client, settings, item):
                return self._sent(attempt, now, "was already on the server (not sent again)")
            try:
                ds = pydicom.dcmread(item.path)
            except (OSError, InvalidDicomError) as exc:
                return self._attention(
                    attempt,
                    f"the result file {item.path} cannot be read ({exc}); it cannot be sent to "
                    f"server {where}. Save the case again to queue a new copy.",
                )
            with server_errors(settings, f"the STOW-RS upload of result {sop}"):
                response = client.store_instances([ds], study_instance_uid=item.study_uid)
            failures = response.get("FailedSOPSequence") or []
            if len(failures) == 0:  # this Orthanc always sends the sequence, empty on success
                return self._sent(attempt, now, None)
            reason, transient = _failure_reason(failures, sop)
            if self._on_server(client, settings, item):
                return self._sent(attempt, now, "was already on the server")
            message = f"server {where} refused result {sop}: {reason}"
            if transient:
                return self._retry(attempt, now, message, unknown=False)
            return self._attention(attempt, message + "; ask the PACS admin why")
        except ServerAuthError as exc:
            return self._attention(attempt, str(exc))
        except SecretError as exc:
            return self._attention(attempt, f"cannot send to server {where}: {exc}")
        except ServerError as exc:
            status = exc.status
            if status is None:
                pass_.last_unreachable = True
                return self._retry(attempt, now, str(exc), unknown=True)
            if 400 <= status < 500 and status not in _TRANSIENT_4XX:
                if status == 409 and client and self._safe_on_server(client, settings, item):
                    return self._sent(attempt, now, "was already on the server")
                return self._attention(attempt, str(exc))
            # 5xx (after the session's retries) or 408/429: the upload may have been stored.
            return self._retry(attempt, now, str(exc), unknown=status >= 500)

    def _safe_on_server(self, client: Any, settings: ServerSettings, item: OutboxItem) -> bool:
        try:
            return self._on_server(client, settings, item)
        except ServerError:
            return False

    def _on_server(self, client: Any, settings: ServerSettings, item: OutboxItem) -> bool:
        """Whether the server already holds the item's SOP instance (QIDO-RS)."""
        with server_errors(settings, f"the QIDO-RS check for result {item.sop_instance_uid}"):
            found = client.search_for_instances(
                item.study_uid,
                item.series_uid,
                search_filters={"SOPInstanceUID": item.sop_instance_uid},
                fields=["SOPInstanceUID"],
            )
        for entry in found:
            value = Dataset.from_json(entry).get("SOPInstanceUID", "")
            if str(value) == item.sop_instance_uid:
                return True
        return False

    def _sent(self, item: OutboxItem, now: datetime, note: str | None) -> OutboxItem:
        logger.info("result %s sent to %s", item.sop_instance_uid, item.destination.describe())
        return self._save(
            replace(
                item,
                state=OutboxState.SENT,
                sent_at=now,
                last_error=None,
                outcome_unknown=False,
                note=note,
            )
        )

    def _retry(self, item: OutboxItem, now: datetime, reason: str, *, unknown: bool) -> OutboxItem:
        failures = item.attempts
        delay = backoff_delay(
            failures,
            base=self.backoff_s,
            cap=self.max_backoff_s,
            jitter=self.jitter,
            rng=self._rng,
        )
        # info, not warning: the item's state shows it, and it is retried on its own.
        logger.info("result %s not sent (attempt %d): %s", item.sop_instance_uid, failures, reason)
        return self._save(
            replace(
                item,
                state=OutboxState.QUEUED,
                last_error=reason,
                next_attempt_at=now + timedelta(seconds=delay),
                outcome_unknown=item.outcome_unknown or unknown,
                note=None,
            )
        )

    def _attention(self, item: OutboxItem, reason: str) -> OutboxItem:
        logger.warning("result %s needs attention: %s", item.sop_instance_uid, reason)
        return self._save(replace(item, state=OutboxState.NEEDS_ATTENTION, last_error=reason))

    def _settings_for(self, destination: Destination, pass_: _SendPass) -> ServerSettings:
        with self._guard:
            live = self._servers.get(destination.url.rstrip("/"))
        if live is not None:
            return live
        site = pass_.site_servers().get(destination.name)
        if site is not None and site.safe_url.rstrip("/") == destination.url.rstrip("/"):
            return site
        return destination.to_settings()

    # -- state files -----------------------------------------------------------------------

    def _save(self, item: OutboxItem) -> OutboxItem:
        """Replace the item's state file atomically (the caller holds the item's lock)."""
        try:
            replace_file(item.folder / STATE_FILE, _dump(item), mode=0o600)
        except OSError as exc:
            raise OutboxError(
                item.folder,
                f"cannot update the outbox item {item.folder}: {exc.strerror}; free disk space "
                "(the result itself is kept)",
            ) from exc
        return item

    def _purge_sent(self, now: datetime) -> None:
        for item in self.items():
            if item.state is not OutboxState.SENT or item.sent_at is None:
                continue
            if now - item.sent_at < self.keep_sent:
                continue
            with _ItemLock(item.folder / LOCK_FILE) as locked:
                if not locked:
                    continue
                trash = self.folder / INCOMING_DIR / f"expired-{item.id}"
                try:
                    os.rename(item.folder, trash)  # vanishes from the listing in one step
                except OSError:
                    continue
            shutil.rmtree(trash, ignore_errors=True)


class _SendPass:
    """Clients and site settings shared by the items of one sending pass."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._clients: dict[tuple[str, int], Any] = {}
        self._site: dict[str, ServerSettings] | None = None
        self.last_unreachable = False

    def client(self, settings: ServerSettings) -> Any:
        key = (settings.url, id(settings))
        if key not in self._clients:
            self._clients[key] = open_client(settings)
        return self._clients[key]

    def site_servers(self) -> dict[str, ServerSettings]:
        if self._site is None:
            from .site_settings import load_site_settings

            try:
                self._site = dict(load_site_settings().servers)
            except CaseIteratorError as exc:
                logger.warning("site settings not usable for the outbox: %s", exc)
                self._site = {}
        return self._site

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client._session.close()
        self._clients.clear()


class OutboxSender:
    """A background thread that sends the outbox's due items and sleeps until the next one.

    It wakes when an item is enqueued or retried in this process (:meth:`Outbox.add_listener`),
    when the next retry is due, and at least every ``poll_s`` seconds (to notice items another
    process changed). ``on_report`` is called on the sender thread after each pass that did
    something; a Qt application must hand it to the GUI thread itself.

    Parameters
    ----------
    outbox
        The outbox to send.
    on_report
        Called with each :class:`SendReport` that sent or failed something.
    poll_s
        Longest sleep between passes.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        on_report: Callable[[SendReport], None] | None = None,
        poll_s: float = 60.0,
    ) -> None:
        self.outbox = outbox
        self.on_report = on_report
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel = CancelToken()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (a second call does nothing while it runs)."""
        if self.running:
            return
        self._stop.clear()
        self._cancel = CancelToken()
        self.outbox.add_listener(self.wake)
        self._thread = threading.Thread(target=self._run, name="OutboxSender", daemon=False)
        self._thread.start()

    def wake(self) -> None:
        """Send due items now (thread-safe)."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and join the thread.

        An upload in progress is not cut: the call returns once it ends (at most the server's
        timeout). Items not reached stay queued for the next start.

        Raises
        ------
        TimeoutError
            When ``timeout`` is given and the thread is still sending after it.
        """
        self.outbox.remove_listener(self.wake)
        self._stop.set()
        self._cancel.cancel()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the outbox sender did not stop within {timeout} s")
        self._thread = None

    def __enter__(self) -> OutboxSender:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.outbox.send_due(cancel=self._cancel)
            except Exception:  # keep sending later; the error is in the log
                logger.exception("outbox sending pass failed")
                report = None
            worth_telling = report is not None and (
                report.sent or report.failed or report.needs_attention
            )
            if worth_telling and self.on_report is not None:
                try:
                    self.on_report(report)
                except Exception:
                    logger.exception("outbox report callback failed")
            if self._stop.is_set():
                break
            self._wake.wait(self._sleep_s())
            self._wake.clear()

    def _sleep_s(self) -> float:
        try:
            due = self.outbox.next_due()
        except Exception:
            logger.exception("outbox listing failed")
            return self.poll_s
        if due is None:
            return self.poll_s
        # At least a little: a due item another process holds must not make this spin.
        return max(0.2, min(self.poll_s, (due - _utcnow()).total_seconds()))


# -- helpers ---------------------------------------------------------------------------------


class _ItemLock:
    """An exclusive, non-blocking ``flock`` on a file; ``with`` yields whether it was taken."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self._path = path
        self._create = create
        self._fd: int | None = None

    def __enter__(self) -> bool:
        flags = os.O_RDWR | (os.O_CREAT if self._create else 0)
        try:
            self._fd = os.open(self._path, flags, 0o600)
        except FileNotFoundError:
            if self._create:
                raise
            return True  # no lock file: nobody can hold it
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _is_locked(path: Path) -> bool:
    try:
        with _ItemLock(path, create=False) as locked:
            return not locked
    except OSError:
        return False


def _failure_reason(failures: Any, sop: str) -> tuple[str, bool]:
    """Text for a STOW-RS FailedSOPSequence, and whether waiting may cure it."""
    codes = []
    for entry in failures:
        code = entry.get("FailureReason")
        if code is not None:
            codes.append(int(code))
    if not codes:
        return "failure without a reason code", True
    text = ", ".join(f"0x{c:04X} ({_FAILURE_TEXT.get(c >> 8, 'refused')})" for c in codes)
    transient = all(0xA700 <= c <= 0xA7FF or c == 0x0110 for c in codes)
    return f"failure reason {text}", transient


_FAILURE_TEXT = {
    0xA7: "out of resources on the server",
    0xA9: "data set does not match its SOP class",
    0xC0: "cannot understand",
    0x01: "processing failure",
    0x02: "refused",
}


def _dump(item: OutboxItem) -> bytes:
    return (json.dumps(item.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _parse_time(value: str | None) -> Any:  # datetime, or None for None
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


__all__ = [
    "Destination",
    "Outbox",
    "OutboxError",
    "OutboxItem",
    "OutboxSender",
    "OutboxState",
    "SendReport",
    "backoff_delay",
    "default_outbox_dir",
]
