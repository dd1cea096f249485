"""The link simulator (``Testing/link_simulator.py``) forwards bytes exactly and shapes them.

Real sockets on 127.0.0.1 only: a tiny ``http.server`` in a thread is the target.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from link_simulator import (
    GIGABIT,
    LOOPBACK,
    MBIT100,
    PROFILES,
    LinkProfile,
    LinkSimulator,
    LinkSimulatorProcess,
)
from orthanc_server import OrthancServer, free_port

LINK_SIMULATOR = Path(__file__).resolve().parents[1] / "link_simulator.py"
MB = 1_000_000


@functools.lru_cache(maxsize=8)
def payload(size: int) -> bytes:
    """Deterministic random bytes (incompressible, every byte value)."""
    return random.Random(size).randbytes(size)


class _Handler(BaseHTTPRequestHandler):
    """``GET /blob/N``: N random bytes; ``GET /chunked``: a chunked reply; ``POST``: echo."""

    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in two writes: with Nagle, the body waits for the delayed ACK
    # of the headers (~40 ms), direct or not.
    disable_nagle_algorithm = True
    timeout = 60  # a forgotten connection does not keep its thread for ever (sendall too)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/blob/"):
            self._reply(payload(int(self.path.removeprefix("/blob/"))))
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in chunked_pieces():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._reply(b"ok")

    def do_POST(self) -> None:
        self._reply(self.rfile.read(int(self.headers["Content-Length"])))

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def chunked_pieces() -> list[bytes]:
    data = payload(300_000)
    return [data[i : i + 7001] for i in range(0, len(data), 7001)]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a reset by the simulator
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, int]]:
    """A keep-alive HTTP server on 127.0.0.1 (host, port), in a thread."""
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-backend")
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def link(backend: tuple[str, int]) -> Iterator[Callable[[LinkProfile], LinkSimulator]]:
    """Start link simulators in front of ``backend``; all are closed after the test."""
    sims: list[LinkSimulator] = []

    def start(profile: LinkProfile) -> LinkSimulator:
        sims.append(LinkSimulator(*backend, profile))
        return sims[-1]

    yield start
    for sim in sims:
        sim.close()


def raw_get(port: int, path: str) -> bytes:
    """Send ``GET path`` with ``Connection: close`` and return every byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def open_sockets() -> set[str]:
    """This process's open sockets (``socket:[inode]``), from ``/proc/self/fd``."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


# -- profiles --------------------------------------------------------------------------------


def test_profiles() -> None:
    assert PROFILES == {"loopback": LOOPBACK, "1gbit": GIGABIT, "100mbit": MBIT100}
    assert (GIGABIT.bandwidth_bps, GIGABIT.rtt_s) == (1e9, 0.002)
    assert (MBIT100.bandwidth_bps, MBIT100.rtt_s) == (100e6, 0.020)
    assert LOOPBACK.bandwidth_bps is None and LOOPBACK.rtt_s == 0.0
    with pytest.raises(ValueError):
        LinkProfile("bad", 0.0)
    with pytest.raises(ValueError):
        LinkProfile("bad", None, rtt_s=-1)


# -- forwarding ------------------------------------------------------------------------------


def test_forwards_large_payloads_byte_exactly_with_keep_alive(link: Callable) -> None:
    sim = link(LOOPBACK)
    with requests.Session() as session:
        for size in (12 * MB, 1, 3 * MB + 17):
            response = session.get(f"{sim.url}/blob/{size}", timeout=30)
            assert response.status_code == 200
            assert response.content == payload(size)
        upload = payload(4 * MB + 3)
        assert session.post(sim.url + "/echo", data=upload, timeout=30).content == upload
    assert sim.connections == 1  # all four requests on one kept-alive connection
    assert sim.bytes_forwarded > 19 * MB
    assert sim.bytes_uploaded > 4 * MB


def test_forwards_chunked_responses_byte_exactly(link: Callable, backend: tuple) -> None:
    sim = link(dataclasses.replace(MBIT100, rtt_s=0.002))
    direct = raw_get(backend[1], "/chunked")
    proxied = raw_get(sim.port, "/chunked")
    assert b"Transfer-Encoding: chunked" in direct
    # Identical bytes but for the Date header, which may have ticked.
    assert len(proxied) == len(direct)
    assert proxied.split(b"\r\n\r\n", 1)[1] == direct.split(b"\r\n\r\n", 1)[1]
    with requests.get(sim.url + "/chunked", timeout=10) as response:
        assert response.content == b"".join(chunked_pieces())


# -- shaping ---------------------------------------------------------------------------------


def test_a_link_in_its_own_process_forwards_exactly_and_stops(backend: tuple) -> None:
    with LinkSimulatorProcess(*backend, GIGABIT) as sim:
        process = sim._process
        started = time.perf_counter()
        body = requests.get(f"{sim.url}/blob/{10 * MB}", timeout=30).content
        elapsed = time.perf_counter() - started
    assert body == payload(10 * MB)
    assert elapsed >= 10 * MB * 8 / GIGABIT.bandwidth_bps  # shaped like the in-process link
    assert process.returncode is not None  # closed: the process is gone
    with pytest.raises(ValueError, match="named profiles"):
        LinkSimulatorProcess(*backend, dataclasses.replace(GIGABIT, rtt_s=0.5))


def test_bandwidth_is_capped(link: Callable) -> None:
    cap = 20e6
    sim = link(LinkProfile("20mbit", cap))
    size = 8 * MB
    with requests.Session() as session:
        session.get(sim.url + "/small", timeout=10)  # connect first: time the transfer only
        started = time.perf_counter()
        body = session.get(f"{sim.url}/blob/{size}", timeout=30).content
        elapsed = time.perf_counter() - started
    assert body == payload(size)
    rate = size * 8 / elapsed
    print(f"20 Mbit/s cap: {rate / 1e6:.2f} Mbit/s in {elapsed:.2f} s ({rate / cap:.3f} x cap)")
    assert 0.6 * cap < rate < 1.15 * cap


def test_parallel_downloads_share_the_cap(link: Callable) -> None:
    cap = 40e6
    sim = link(LinkProfile("40mbit", cap))
    size = 2 * MB

    def download(_: int) -> bytes:
        return requests.get(f"{sim.url}/blob/{size}", timeout=30).content

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(download, range(3)))
    elapsed = time.perf_counter() - started
    assert bodies == [payload(size)] * 3
    rate = 3 * size * 8 / elapsed
    print(f"3 parallel downloads, 40 Mbit/s cap: {rate / 1e6:.2f} Mbit/s together")
    assert rate < 1.15 * cap  # each on its own would get the whole cap


def test_round_trip_time_is_added(link: Callable) -> None:
    sim = link(LinkProfile("slow-rtt", None, rtt_s=0.1))
    with requests.Session() as session:
        started = time.perf_counter()
        assert session.get(sim.url + "/small", timeout=10).content == b"ok"
        first = time.perf_counter() - started  # TCP handshake + request/response: 2 RTT
        started = time.perf_counter()
        assert session.get(sim.url + "/small", timeout=10).content == b"ok"
        second = time.perf_counter() - started  # kept-alive connection: 1 RTT
    print(f"100 ms RTT: first request {first * 1e3:.1f} ms, second {second * 1e3:.1f} ms")
    assert first >= 0.2
    assert 0.1 <= second < 0.5


def test_response_delay_makes_the_client_time_out(link: Callable) -> None:
    slow = LinkProfile("slow-server", None, response_delay_s=1.0)
    sim = link(slow)
    started = time.perf_counter()
    with pytest.raises(requests.ReadTimeout):
        requests.get(sim.url + "/small", timeout=0.3)
    assert time.perf_counter() - started < 0.9
    sim.set_profile(LOOPBACK)  # the server recovers
    assert requests.get(sim.url + "/small", timeout=0.3).content == b"ok"
    sim.set_profile(dataclasses.replace(slow, response_delay_s=0.2))
    with requests.Session() as session:
        for _ in range(2):  # every response on a kept-alive connection waits
            started = time.perf_counter()
            assert session.get(sim.url + "/small", timeout=5).content == b"ok"
            assert time.perf_counter() - started >= 0.2


# -- failures --------------------------------------------------------------------------------


def test_stall_and_resume(link: Callable) -> None:
    sim = link(LOOPBACK)
    with requests.Session() as session, concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert session.get(sim.url + "/small", timeout=5).content == b"ok"
        sim.stall()
        future = pool.submit(session.get, f"{sim.url}/blob/{MB}", timeout=10)
        time.sleep(0.3)
        assert not future.done()  # the server hangs
        sim.resume()
        assert future.result(timeout=5).content == payload(MB)
    sim.stall()
    with pytest.raises(requests.ReadTimeout):
        requests.get(sim.url + "/small", timeout=0.3)
    sim.resume()


def test_drop_connections_cuts_open_connections(link: Callable) -> None:
    sim = link(LOOPBACK)
    with requests.Session() as session, concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert session.get(sim.url + "/small", timeout=5).content == b"ok"
        sim.stall()
        future = pool.submit(session.get, sim.url + "/small", timeout=10)
        time.sleep(0.2)  # the request waits in the stalled link
        sim.drop_connections()
        with pytest.raises(requests.ConnectionError):
            future.result(timeout=5)
    assert wait_until(lambda: sim.open_connections == 0)
    sim.resume()
    assert requests.get(sim.url + "/small", timeout=5).content == b"ok"  # still listening


def test_refused_target_closes_the_client_cleanly() -> None:
    with LinkSimulator("127.0.0.1", free_port(), LOOPBACK) as sim:
        started = time.perf_counter()
        with pytest.raises(requests.ConnectionError):
            requests.get(sim.url + "/small", timeout=5)
        assert time.perf_counter() - started < 2
        assert sim.connections == 1
        assert wait_until(lambda: sim.open_connections == 0)


def test_close_leaves_no_thread_or_socket(backend: tuple[str, int]) -> None:
    threads_before = set(threading.enumerate())
    sockets_before = open_sockets()
    sim = LinkSimulator(*backend, MBIT100)
    with requests.Session() as session:
        assert session.get(sim.url + "/small", timeout=5).content == b"ok"
        sim.stall()
        with pytest.raises(requests.ReadTimeout):  # leave a request hanging in the link
            session.get(sim.url + "/small", timeout=0.2)
    held = requests.Session()
    sim.resume()
    held.get(sim.url + "/small", timeout=5)  # and a kept-alive connection open
    sim.close()
    sim.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("LinkSimulator")]
    held.close()
    # The backend's handler threads end once the proxy closed their connections.
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before), threading.enumerate()
    assert wait_until(lambda: open_sockets() <= sockets_before)
    with pytest.raises(RuntimeError):
        sim.stall()


def test_cli_prints_its_url_and_forwards(backend: tuple[str, int]) -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, str(LINK_SIMULATOR)),
            *("--target", f"127.0.0.1:{backend[1]}", "--profile", "100mbit", "--port", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url + "/blob/1000", timeout=5).content == payload(1000)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "1 connections, " in stderr


# -- a real DICOMweb server ------------------------------------------------------------------


def test_carries_dicomweb_from_orthanc(orthanc: OrthancServer, tmp_path: Path) -> None:
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original.StudyInstanceUID = generate_uid()
    original.SeriesInstanceUID = generate_uid()
    original.SOPInstanceUID = original.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "ct.dcm"
    original.save_as(path)
    orthanc.upload_files([path])
    with (
        LinkSimulator("127.0.0.1", orthanc.http_port, MBIT100) as sim,
        requests.Session() as session,
    ):
        client = DICOMwebClient(url=sim.url + "/dicom-web", session=session)
        found = client.search_for_instances(original.StudyInstanceUID)
        assert [pydicom.Dataset.from_json(f).SOPInstanceUID for f in found] == [
            original.SOPInstanceUID
        ]
        retrieved = client.retrieve_instance(
            original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID
        )
        assert retrieved.SOPInstanceUID == original.SOPInstanceUID
        assert retrieved.PixelData == original.PixelData
        assert sim.connections == 1
        assert sim.bytes_forwarded > 10_000  # less than the pixels: Orthanc gzips its answers
