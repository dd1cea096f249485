"""A real Orthanc DICOMweb server for tests and benchmarks.

``OrthancServer`` starts the Debian ``orthanc`` binary as a plain subprocess with its own JSON
configuration, storage and index in a temporary folder, on free loopback ports, with the
DICOMweb plugin (``orthanc-dicomweb``) loaded::

    with OrthancServer() as orthanc:
        client = DICOMwebClient(url=orthanc.dicomweb_url)
        ...

Orthanc 1.10 binds all interfaces whatever its configuration says: run it (and whatever talks
to it) inside a private network namespace that has only loopback. ``Testing/run_tests.sh``
does that for the test suite.

The binary is ``$ORTHANC_BIN`` when set, else ``shutil.which("Orthanc")`` or ``/usr/sbin/Orthanc``;
the plugin with ``$ORTHANC_DICOMWEB_PLUGIN`` or the Debian path. When either is missing,
``OrthancUnavailable`` is raised.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
from requests.auth import HTTPBasicAuth

DEFAULT_BINARY = "/usr/sbin/Orthanc"
DEFAULT_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed on this machine."""


class OrthancStartError(RuntimeError):
    """Orthanc was found but did not start (the message holds the end of its log)."""


def find_orthanc_binary() -> str:
    """Return the path of the Orthanc executable or raise ``OrthancUnavailable``."""
    override = os.environ.get("ORTHANC_BIN")
    candidates = [override] if override else [shutil.which("Orthanc"), DEFAULT_BINARY]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if override:
        raise OrthancUnavailable(f"ORTHANC_BIN={override} is not an executable file")
    raise OrthancUnavailable(
        "Orthanc is not installed (no 'Orthanc' on PATH, no /usr/sbin/Orthanc). "
        "Install it with: apt-get install orthanc orthanc-dicomweb  (./bootstrap.sh test does)"
    )


def find_dicomweb_plugin() -> str:
    """Return the path of the Orthanc DICOMweb plugin or raise ``OrthancUnavailable``."""
    candidate = os.environ.get("ORTHANC_DICOMWEB_PLUGIN") or DEFAULT_DICOMWEB_PLUGIN
    if os.path.isfile(candidate):
        return candidate
    raise OrthancUnavailable(
        f"The Orthanc DICOMweb plugin is not installed ({candidate} is missing). "
        "Install it with: apt-get install orthanc-dicomweb  (./bootstrap.sh test does)"
    )


def orthanc_available() -> bool:
    """Return True when both the Orthanc binary and its DICOMweb plugin are installed."""
    try:
        find_orthanc_binary()
        find_dicomweb_plugin()
    except OrthancUnavailable:
        return False
    return True


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """A real Orthanc with the DICOMweb plugin, run as a subprocess on loopback.

    Parameters
    ----------
    users
        ``{name: password}``; when given, HTTP basic authentication is enabled and only these
        users are accepted. ``None`` (the default) disables authentication.
    work_dir
        Folder for the configuration, storage, index and log. A temporary folder (removed by
        ``close()``/``__exit__``) when ``None``.
    extra_config
        More Orthanc configuration keys, merged over the defaults (top level only).
    start
        Start the server at once (default). Otherwise call ``start()``.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        work_dir: str | os.PathLike[str] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        self.binary = find_orthanc_binary()
        self.plugin = find_dicomweb_plugin()
        self.users: dict[str, str] = dict(users or {})
        self._owns_dir = work_dir is None
        self.work_dir = Path(
            tempfile.mkdtemp(prefix="caseiterator-orthanc-") if work_dir is None else work_dir
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = free_port()
        self.config_path = self.work_dir / "orthanc.json"
        self.log_path = self.work_dir / "orthanc.log"
        self._write_config(extra_config or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        if start:
            self.start()

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The REST root, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS), ``url + "/dicom-web"``."""
        return self.url + "/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        """Credentials of the first registered user, or None without authentication."""
        if not self.users:
            return None
        name, password = next(iter(self.users.items()))
        return (name, password)

    def session(self) -> requests.Session:
        """Return a ``requests.Session`` that carries ``auth`` (for ``DICOMwebClient``)."""
        session = requests.Session()
        if self.auth is not None:
            session.auth = HTTPBasicAuth(*self.auth)
        return session

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start Orthanc and wait until ``GET /system`` answers."""
        if self.running:
            return
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (kept open while running)
        self._log_file.write(f"---- starting {self.binary} {self.config_path}\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(
            [self.binary, "--no-jobs", str(self.config_path)],
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the test run does not hit Orthanc first
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise OrthancStartError(
                    f"Orthanc exited with code {self._process.returncode} while starting "
                    f"(port {self.http_port}).\n{self.log_tail()}"
                )
            try:
                response = requests.get(self.url + "/system", auth=self.auth, timeout=2)
            except requests.RequestException as exc:
                last_error = exc
            else:
                if response.status_code == 200:
                    return
                last_error = RuntimeError(f"GET /system answered {response.status_code}")
            time.sleep(0.05)
        raise OrthancStartError(
            f"Orthanc did not answer GET {self.url}/system within {timeout:.0f} s "
            f"(last error: {last_error}).\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop Orthanc: SIGTERM, wait up to ``timeout`` s (it takes ~3.5 s), then SIGKILL."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def kill(self) -> None:
        """Kill Orthanc at once (SIGKILL), as a crashed or unplugged server would vanish."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._close_log()

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stop (if running) and start again on the same storage, index and ports."""
        self.stop()
        self.start(timeout)

    def close(self, graceful: bool = True) -> None:
        """Stop Orthanc and remove its temporary folder (when this object created it).

        ``graceful=False`` kills it instead of waiting ~3.5 s for a clean stop (for tests
        whose storage is thrown away anyway).
        """
        if graceful:
            self.stop()
        else:
            self.kill()
        if self._owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the Orthanc log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no Orthanc log)"
        tail = text.splitlines()[-lines:]
        return "---- Orthanc log (last lines) ----\n" + "\n".join(tail)

    # -- REST helpers ----------------------------------------------------------------------

    def upload_files(self, paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
        """Upload DICOM files through the REST API (``POST /instances``).

        Returns Orthanc's answer for each file (``ID``, ``Status``, ``ParentSeries``, ...).
        Raises ``requests.HTTPError`` when a file is refused.
        """
        answers = []
        with self.session() as session:
            for path in paths:
                data = Path(path).read_bytes()
                response = session.post(
                    self.url + "/instances",
                    data=data,
                    headers={"Content-Type": "application/dicom"},
                    timeout=60,
                )
                response.raise_for_status()
                answers.append(response.json())
        return answers

    def get_json(self, path: str) -> Any:
        """``GET`` a REST path (e.g. ``/statistics``) and return the decoded JSON."""
        with self.session() as session:
            response = session.get(self.url + path, timeout=30)
            response.raise_for_status()
            return response.json()

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance) on the server."""
        with self.session() as session:
            for patient in self.get_json("/patients"):
                session.delete(f"{self.url}/patients/{patient}", timeout=60).raise_for_status()

    # -- configuration ---------------------------------------------------------------------

    def _write_config(self, extra: Mapping[str, Any]) -> None:
        config: dict[str, Any] = {
            "Name": "CaseIteratorTest",
            "StorageDirectory": str(self.work_dir / "storage"),
            "IndexDirectory": str(self.work_dir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "CITEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": dict(self.users),
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "StableAge": 1,
            "SaveJobs": False,
            "HttpDescribeErrors": True,
            "LuaScripts": [],
        }
        config.update(extra)
        self.config_path.write_text(json.dumps(config, indent=2))


__all__ = [
    "OrthancServer",
    "OrthancStartError",
    "OrthancUnavailable",
    "find_dicomweb_plugin",
    "find_orthanc_binary",
    "free_port",
    "orthanc_available",
    "orthanc_required",
    "start_orthanc",
]


#: Set by Testing/run_tests.sh: a missing Orthanc then fails the orthanc tests (no silent skip).
REQUIRE_ORTHANC_ENV = "CASEITERATOR_REQUIRE_ORTHANC"


def orthanc_required() -> bool:
    return os.environ.get(REQUIRE_ORTHANC_ENV, "") not in ("", "0")


def start_orthanc(**kwargs: Any) -> OrthancServer:
    """Start an ``OrthancServer``; skip (or fail, when required) if Orthanc is not installed."""
    import pytest

    try:
        return OrthancServer(**kwargs)
    except OrthancUnavailable as exc:
        if orthanc_required():
            pytest.fail(f"{REQUIRE_ORTHANC_ENV}=1 but {exc}", pytrace=False)
        pytest.skip(f"Orthanc not available: {exc}")
