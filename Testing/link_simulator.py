"""A link simulator: a local TCP proxy that makes a fast server look like one on a slower network.

Tests and benchmarks put it between the client and a server (a real Orthanc, a tiny
``http.server``) to get a hospital PACS link, a remote archive, a slow or hanging server, or a
network cut, all on loopback::

    with LinkSimulator("127.0.0.1", orthanc.http_port, MBIT100) as link:
        client = DICOMwebClient(url=link.url + "/dicom-web")
        ...
        link.set_profile(replace(MBIT100, response_delay_s=5.0))  # the server becomes slow
        link.stall()  # the server hangs: no byte moves until resume()
        link.drop_connections()  # network cut: every open connection is reset

``LinkSimulatorProcess`` runs the same proxy in a process of its own (benchmarks: the link's
CPU is then not the measured app's), or by hand, for manual benchmarks (prints the URL to use,
runs until Ctrl-C)::

    python Testing/link_simulator.py --target 127.0.0.1:8042 --profile 100mbit --port 0

Model
-----
Each accepted client connection opens one connection to the target; the proxy forwards bytes
unchanged in both directions (HTTP keep-alive, chunked and multipart responses, half-closes).

* Bandwidth: a pacer per direction, i.e. a token bucket one slice deep (no burst credit): a
  slice of ``n`` bytes leaves the link ``n * 8 / bandwidth`` seconds after the previous one.
  The client->server pacer belongs to one connection; the server->client pacer is **shared by
  all connections of one simulator**, as a real access link is: parallel downloads split the
  cap between them instead of each getting it.
* Latency: a delay line. A slice becomes available to the other side ``rtt / 2`` after it has
  left the pacer, so latency and bandwidth add once (no sleep per chunk that would stack).
  A new connection also waits one ``rtt`` before its first bytes move (the TCP handshake).
* Slow server: after bytes from the client, the next bytes from the server are held
  ``response_delay_s`` before they enter the link (time to first byte of each response).
* Bounded buffering: each direction queues at most about a bandwidth-delay product (plus
  10 ms of slack); beyond that the proxy stops reading and TCP pushes back on the sender.

The proxy runs an asyncio loop in one non-daemon thread, on a ``select()`` selector because
epoll's timeouts are whole milliseconds (a 1 ms one-way delay would be 1-2 ms). ``select()``
handles file descriptors below 1024 only, plenty for a test process. ``close()`` stops the
loop, closes every socket and joins the thread.

Accuracy (measured on a 2-core machine): timers fire 0.1-0.3 ms late, so a request over
``GIGABIT`` takes about 2.7 ms more than direct, over ``MBIT100`` about 21 ms more. Throughput
is exact while the machine keeps up: 50 MB arrive at 0.98-0.99 of the 1 Gbit/s and 100 Mbit/s
caps with curl as the client, the proxy using ~20 % of a core at 1 Gbit/s; a ``requests``
client reaches 0.90 of 1 Gbit/s (its own CPU time, not the link's). Check
``bytes_forwarded`` over time before trusting a benchmark on a busier machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Smallest slice the pacer moves at once; with about 1 ms of data per slice at fast rates.
MIN_SLICE_BYTES = 16 * 1024
SLICE_S = 0.001
#: Queued bytes per direction beyond the bandwidth-delay product (scheduling jitter).
QUEUE_SLACK_S = 0.010
MIN_WINDOW_BYTES = 64 * 1024
#: Queue bound per direction when the bandwidth is unlimited.
UNLIMITED_WINDOW_BYTES = 4 * 1024 * 1024
#: How long a client whose target refused may keep its half-closed connection.
REFUSED_LINGER_S = 1.0
#: How long a call from another thread (stall, drop_connections...) waits for the loop.
COMMAND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LinkProfile:
    """The shape of one simulated network link.

    Parameters
    ----------
    name
        Short name (the CLI's ``--profile``).
    bandwidth_bps
        Capacity in bits per second, in each direction; ``None`` is unlimited.
    rtt_s
        Round-trip time in seconds; each direction adds half of it.
    response_delay_s
        Extra delay before the first byte of each server response (a slow server).
    """

    name: str
    bandwidth_bps: float | None
    rtt_s: float = 0.0
    response_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.bandwidth_bps is not None and not self.bandwidth_bps > 0:
            raise ValueError(f"bandwidth_bps must be > 0 or None, not {self.bandwidth_bps}")
        if self.rtt_s < 0 or self.response_delay_s < 0:
            raise ValueError("rtt_s and response_delay_s must be >= 0")

    @property
    def one_way_s(self) -> float:
        """Latency of one direction, ``rtt_s / 2``."""
        return self.rtt_s / 2

    def describe(self) -> str:
        """Return e.g. ``"100mbit: 100 Mbit/s, 20 ms RTT"``."""
        rate = "unlimited" if self.bandwidth_bps is None else f"{self.bandwidth_bps / 1e6:g} Mbit/s"
        text = f"{self.name}: {rate}, {self.rtt_s * 1e3:g} ms RTT"
        if self.response_delay_s:
            text += f", {self.response_delay_s * 1e3:g} ms response delay"
        return text


LOOPBACK = LinkProfile("loopback", None, 0.0)
#: Hospital PACS on the local network.
GIGABIT = LinkProfile("1gbit", 1e9, 0.002)
#: Remote or cloud archive.
MBIT100 = LinkProfile("100mbit", 100e6, 0.020)
PROFILES: dict[str, LinkProfile] = {p.name: p for p in (LOOPBACK, GIGABIT, MBIT100)}


def _window_bytes(profile: LinkProfile) -> int:
    """Most bytes one direction queues before it stops reading from its sender."""
    if profile.bandwidth_bps is None:
        return UNLIMITED_WINDOW_BYTES
    in_flight = profile.bandwidth_bps / 8 * (profile.one_way_s + QUEUE_SLACK_S)
    return int(in_flight) + MIN_WINDOW_BYTES


def _slice_bytes(profile: LinkProfile) -> int:
    if profile.bandwidth_bps is None:
        return sys.maxsize  # nothing to pace: forward reads whole
    return max(MIN_SLICE_BYTES, int(profile.bandwidth_bps / 8 * SLICE_S))


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: the proxy must pass each write on at once, as the sender made it.

    asyncio sets it only on sockets whose ``proto`` is TCP, not on accepted ones (``proto`` 0):
    without it a small write after another waits for the peer's delayed ACK (~40 ms).
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` with a TCP reset (RST), as a cut network looks to the peer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Pacer:
    """Serialises bytes onto one link direction at the profile's bandwidth."""

    def __init__(self) -> None:
        self.free_at = 0.0  # loop time at which the link has sent everything given so far

    def departure(self, now: float, size: int, bandwidth_bps: float | None) -> float:
        """Return when ``size`` bytes offered at ``now`` have left the link."""
        if bandwidth_bps is None:
            return now
        self.free_at = max(now, self.free_at) + size * 8 / bandwidth_bps
        return self.free_at


class _Direction:
    """One direction of one connection: a delay line from ``src`` to ``dst``."""

    def __init__(self, conn: _Connection, pacer: _Pacer, downstream: bool) -> None:
        self.conn = conn
        self.pacer = pacer
        self.downstream = downstream
        # (due time, bytes or None for EOF), due times never decrease.
        self.queue: collections.deque[tuple[float, memoryview | None]] = collections.deque()
        self.queued = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.dst_blocked = False  # dst's transport buffer is full (pause_writing)
        self.eof_delivered = False

    @property
    def src(self) -> asyncio.Transport | None:
        return self.conn.server if self.downstream else self.conn.client

    @property
    def dst(self) -> asyncio.Transport | None:
        return self.conn.client if self.downstream else self.conn.server

    def push(self, data: bytes) -> None:
        sim = self.conn.sim
        profile = sim._profile
        now = sim._loop.time()
        step = _slice_bytes(profile)
        view = memoryview(data)
        for start in range(0, len(view), step):
            piece = view[start : start + step]
            left = self.pacer.departure(now, len(piece), profile.bandwidth_bps)
            self.last_due = max(self.last_due, left + profile.one_way_s)
            self.queue.append((self.last_due, piece))
        self.queued += len(view)
        if self.queued >= _window_bytes(profile):
            self.conn.set_reading(self.src, "window", reading=False)
        self.pump()

    def push_eof(self) -> None:
        sim = self.conn.sim
        self.last_due = max(self.last_due, sim._loop.time() + sim._profile.one_way_s)
        self.queue.append((self.last_due, None))
        self.pump()

    def _on_timer(self) -> None:
        self.timer = None
        self.pump()

    def pump(self) -> None:
        """Hand every slice that is due to ``dst``; arm a timer for the next one."""
        if self.timer is not None:
            return  # the head has not changed: its timer will pump
        dst = self.dst
        sim = self.conn.sim
        if sim._stalled or self.dst_blocked or dst is None or dst.is_closing():
            return
        loop = sim._loop
        now = loop.time()
        while self.queue and not self.dst_blocked and not dst.is_closing():
            due, piece = self.queue[0]
            if due > now:
                self.timer = loop.call_at(due, self._on_timer)
                break
            self.queue.popleft()
            if piece is None:
                self.eof_delivered = True
                if dst.can_write_eof():
                    dst.write_eof()
                self.conn.finish_if_done()
                return
            self.queued -= len(piece)
            dst.write(piece)  # may call pause_writing, which sets dst_blocked
            if self.downstream:
                sim.bytes_forwarded += len(piece)
            else:
                sim.bytes_uploaded += len(piece)
        if self.queued < _window_bytes(sim._profile) // 2:
            self.conn.set_reading(self.src, "window", reading=True)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class _Connection:
    """One client connection and its connection to the target."""

    def __init__(self, sim: LinkSimulator) -> None:
        self.sim = sim
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.up = _Direction(self, _Pacer(), downstream=False)
        self.down = _Direction(self, sim._down_pacer, downstream=True)
        self.pauses: dict[int, set[str]] = {}  # id(transport) -> reasons it does not read
        self.awaiting_response = False
        self.hold: asyncio.TimerHandle | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.closing = False
        self.refused = False  # the target refused the connection
        self.open_transports = 0

    # -- flow control ----------------------------------------------------------------------

    def set_reading(self, transport: asyncio.Transport | None, reason: str, reading: bool) -> None:
        """Pause or resume reading ``transport`` for ``reason``; it reads when no reason is left."""
        if transport is None or transport.is_closing():
            return
        reasons = self.pauses.setdefault(id(transport), set())
        if reading:
            reasons.discard(reason)
            if not reasons:
                transport.resume_reading()
        else:
            reasons.add(reason)
            transport.pause_reading()

    # -- life cycle ------------------------------------------------------------------------

    def client_made(self, transport: asyncio.Transport) -> None:
        self.client = transport
        self.open_transports += 1
        _set_nodelay(transport)
        sim = self.sim
        sim._conns.add(self)
        sim.connections += 1
        self.set_reading(transport, "connecting", reading=False)
        self.connect_task = sim._loop.create_task(self._connect())

    async def _connect(self) -> None:
        sim = self.sim
        try:
            await sim._loop.create_connection(
                lambda: _ServerSide(self), sim.target_host, sim.target_port
            )
        except OSError:
            self._refuse()
            return
        if sim._profile.rtt_s > 0:
            await asyncio.sleep(sim._profile.rtt_s)  # the TCP handshake crosses the link
        if not self.closing:
            self.set_reading(self.client, "connecting", reading=True)

    def _refuse(self) -> None:
        """The target refused: close the client's connection cleanly (FIN, not a reset).

        Its request is read and discarded first (closing a socket with unread bytes sends a
        reset); the connection closes when the client closes its end, or after a second.
        """
        self.refused = True
        if self.client is not None and not self.closing:
            self.client.write_eof()
            self.set_reading(self.client, "connecting", reading=True)
            self.hold = self.sim._loop.call_later(REFUSED_LINGER_S, self.close)

    def server_made(self, transport: asyncio.Transport) -> None:
        self.server = transport
        self.open_transports += 1
        _set_nodelay(transport)
        if self.closing:
            transport.abort()

    def client_data(self, data: bytes) -> None:
        if self.refused or self.closing:
            return
        self.awaiting_response = True
        self.up.push(data)

    def server_data(self, data: bytes) -> None:
        if self.closing:
            return
        delay = self.sim._profile.response_delay_s
        if self.awaiting_response and delay > 0:
            # A slow server: hold the first bytes of the response and stop reading meanwhile.
            self.set_reading(self.server, "slow-server", reading=False)
            self.hold = self.sim._loop.call_later(delay, self._release, data)
        else:
            self.down.push(data)
        self.awaiting_response = False

    def _release(self, data: bytes) -> None:
        self.hold = None
        self.down.push(data)
        self.set_reading(self.server, "slow-server", reading=True)

    def finish_if_done(self) -> None:
        """Close both sides once each direction has delivered its EOF."""
        if self.up.eof_delivered and self.down.eof_delivered:
            self.close(reset=False)

    def close(self, *, reset: bool = False) -> None:
        """Close both sides: gracefully (flushing what was written) or with a reset."""
        if not self.closing:
            self.closing = True
            if self.hold is not None:
                self.hold.cancel()
                self.hold = None
            self.up.cancel()
            self.down.cancel()
            if self.connect_task is not None:
                self.connect_task.cancel()
        for transport in (self.client, self.server):
            if transport is not None:
                if reset:
                    _reset(transport)
                elif not transport.is_closing():
                    transport.close()

    def lost(self, transport: asyncio.Transport, exc: Exception | None) -> None:
        self.open_transports -= 1
        self.pauses.pop(id(transport), None)
        if not self.closing:
            # The peer vanished: pass a reset on as a reset, anything else as a close.
            self.close(reset=exc is not None)
        if self.open_transports <= 0:
            self.sim._conns.discard(self)


class _ClientSide(asyncio.Protocol):
    def __init__(self, sim: LinkSimulator) -> None:
        self.conn = _Connection(sim)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.client_made(transport)

    def data_received(self, data: bytes) -> None:
        self.conn.client_data(data)

    def eof_received(self) -> bool:
        if self.conn.refused:
            self.conn.close()
        else:
            self.conn.up.push_eof()
        return True  # keep the other half open: the server may still answer

    def pause_writing(self) -> None:
        self.conn.down.dst_blocked = True

    def resume_writing(self) -> None:
        self.conn.down.dst_blocked = False
        self.conn.down.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.transport, exc)


class _ServerSide(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.server_made(transport)

    def data_received(self, data: bytes) -> None:
        self.conn.server_data(data)

    def eof_received(self) -> bool:
        self.conn.down.push_eof()
        return True

    def pause_writing(self) -> None:
        self.conn.up.dst_blocked = True

    def resume_writing(self) -> None:
        self.conn.up.dst_blocked = False
        self.conn.up.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.transport, exc)


class LinkSimulator:
    """A TCP proxy on loopback that shapes the traffic to a target server (see the module doc).

    Parameters
    ----------
    target_host, target_port
        The server to forward to, e.g. ``"127.0.0.1"`` and ``orthanc.http_port``.
    profile
        The link to simulate; change it later with ``set_profile``.
    listen_host, listen_port
        Where the proxy listens; port 0 (the default) picks a free port (see ``port``).

    Attributes
    ----------
    port
        The port the proxy listens on.
    bytes_forwarded
        Bytes handed to clients (server -> client) so far.
    bytes_uploaded
        Bytes handed to the target (client -> server) so far.
    connections
        Client connections accepted so far.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        profile: LinkProfile,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._profile = profile
        self._stalled = False
        self._down_pacer = _Pacer()  # shared: parallel downloads share the link
        self._conns: set[_Connection] = set()
        self.bytes_forwarded = 0
        self.bytes_uploaded = 0
        self.connections = 0
        # Bind here, so that a busy port raises in the caller and ``port`` is known at once.
        self._listen_sock = socket.create_server((listen_host, listen_port))
        self.port: int = self._listen_sock.getsockname()[1]
        self._loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name=f"LinkSimulator-{self.port}", daemon=False
        )
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise self._start_error

    # -- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL clients use instead of the target's."""
        host = "127.0.0.1" if self.listen_host in ("", "0.0.0.0") else self.listen_host
        return f"http://{host}:{self.port}"

    @property
    def profile(self) -> LinkProfile:
        return self._profile

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        return len(self._conns)

    def set_profile(self, profile: LinkProfile) -> None:
        """Change the link from now on; bytes already queued keep their times."""
        self._call(lambda: setattr(self, "_profile", profile))

    def stall(self) -> None:
        """Stop forwarding bytes in both directions (a hung server) until ``resume()``.

        Connections are still accepted. Bytes already handed to the OS still arrive.
        """
        self._call(lambda: setattr(self, "_stalled", True))

    def resume(self) -> None:
        """Forward again after ``stall()``; what queued meanwhile moves at once."""

        def resume() -> None:
            self._stalled = False
            for conn in list(self._conns):
                conn.up.pump()
                conn.down.pump()

        self._call(resume)

    def drop_connections(self) -> None:
        """Reset every open connection, both to clients and to the target (a network cut).

        The proxy keeps listening: new connections work (unless ``stall()`` is on).
        """

        def drop() -> None:
            for conn in list(self._conns):
                conn.close(reset=True)

        self._call(drop)

    def close(self) -> None:
        """Reset all connections, close every socket and join the proxy's thread."""
        thread = self._thread
        if thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close() from the simulator's own thread would never return")
        if thread.is_alive() and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(CLOSE_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"{thread.name} did not stop within {CLOSE_TIMEOUT_S} s")
        self._thread = None

    def __enter__(self) -> LinkSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        target = f"{self.target_host}:{self.target_port}"
        return f"LinkSimulator({self.url} -> {target}, {self._profile.describe()})"

    # -- the loop thread -------------------------------------------------------------------

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the loop thread and return its result (loop state is not locked)."""
        if self._thread is None:
            raise RuntimeError("the link simulator is closed")
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(COMMAND_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._started.is_set():
                self._start_error = exc
            else:
                raise
        finally:
            self._started.set()
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()
                self._listen_sock.close()  # closed already unless the start failed

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await self._loop.create_server(lambda: _ClientSide(self), sock=self._listen_sock)
        self._started.set()
        await self._stop.wait()
        server.close()
        tasks: list[Any] = []
        for conn in list(self._conns):
            if conn.connect_task is not None:
                tasks.append(conn.connect_task)
            conn.close(reset=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        # Aborted transports close their sockets in callbacks scheduled on the loop.
        for _ in range(100):
            if not self._conns:
                break
            await asyncio.sleep(0)
        await server.wait_closed()


class LinkSimulatorProcess:
    """A :class:`LinkSimulator` in a process of its own (the CLI below), for benchmarks.

    In the benchmark's process the proxy's thread shares the GIL with the app it measures: at
    1 Gbit/s its pacing costs ~20 % of a core, taken from the app's downloads and decodes,
    while curl, measured through the same link, has the GIL of the benchmark to itself. A real
    network costs the app nothing, so benchmarks run the link apart. Only ``url``,
    ``profile`` and ``close`` are offered (no stall or drop: tests use the in-process one).

    Parameters
    ----------
    target_host, target_port, profile
        As for :class:`LinkSimulator`.
    """

    def __init__(self, target_host: str, target_port: int, profile: LinkProfile) -> None:
        import subprocess

        self.profile = profile
        if PROFILES.get(profile.name) != profile:
            raise ValueError(f"only the named profiles run in a process, not {profile}")
        target = f"{target_host}:{target_port}"
        self._process: Any = subprocess.Popen(
            [sys.executable, __file__, "--target", target, "--profile", profile.name],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the link simulator process did not start ({self.url!r})")

    def close(self) -> None:
        """Stop the process (SIGTERM: it closes its sockets) and wait for it."""
        process = self._process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(CLOSE_TIMEOUT_S)
            except Exception:
                process.kill()
                process.wait()
        process.stdout.close()

    def __enter__(self) -> LinkSimulatorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run a link simulator until Ctrl-C (or SIGTERM); the first line on stdout is its URL.

    Parameters
    ----------
    argv
        The arguments, without the program name (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="link_simulator.py",
        description="A TCP proxy that shapes traffic to a server like a slower network link.",
    )
    parser.add_argument("--target", required=True, help="HOST:PORT of the server, e.g. Orthanc")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=LOOPBACK.name)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--bandwidth-mbps", type=float, help="override the profile's bandwidth")
    parser.add_argument("--rtt-ms", type=float, help="override the profile's round trip")
    parser.add_argument("--response-delay-ms", type=float, help="add a slow-server delay")
    args = parser.parse_args(argv)
    host, _, port_text = args.target.rpartition(":")
    if not host or not port_text.isdigit():
        parser.error(f"--target must be HOST:PORT, not {args.target!r}")
    profile = PROFILES[args.profile]
    if args.bandwidth_mbps is not None:
        profile = dataclasses.replace(
            profile, name="custom", bandwidth_bps=args.bandwidth_mbps * 1e6
        )
    if args.rtt_ms is not None:
        profile = dataclasses.replace(profile, name="custom", rtt_s=args.rtt_ms / 1e3)
    if args.response_delay_ms is not None:
        profile = dataclasses.replace(profile, response_delay_s=args.response_delay_ms / 1e3)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a benchmark harness stops it cleanly with terminate()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with LinkSimulator(
            host, int(port_text), profile, listen_host=args.listen, listen_port=args.port
        ) as sim:
            print(sim.url, flush=True)
            print(
                f"-> {host}:{port_text} over {profile.describe()}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            started = time.monotonic()
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            print(
                f"{sim.connections} connections, {sim.bytes_forwarded} bytes down, "
                f"{sim.bytes_uploaded} bytes up in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli())
