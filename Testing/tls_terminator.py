"""A real TLS endpoint in front of a plain-HTTP server (for HTTPS tests against Orthanc).

Debian's Orthanc 1.10.1 crashes (SIGSEGV) on its first HTTPS connection when ``SslEnabled`` is
on, so HTTPS tests put this terminator in front of it: Python's ``ssl`` module does a real
handshake with a real certificate, then bytes are piped to Orthanc's HTTP port.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path


class TlsTerminator:
    """Listen with TLS on 127.0.0.1 and forward each connection to ``target_port`` in clear.

    Parameters
    ----------
    target_port
        The plain-HTTP port on 127.0.0.1 to forward to.
    certificate, key
        PEM files of the server certificate and its key.
    """

    def __init__(self, target_port: int, certificate: Path, key: Path) -> None:
        self._target = ("127.0.0.1", target_port)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certificate), str(key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept_thread = threading.Thread(target=self._accept, name="tls-accept")
        self._accept_thread.start()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), name="tls-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that refused our certificate: nothing to forward
            return
        upstream = socket.create_connection(self._target)
        self._sockets += [client, upstream]
        pump = threading.Thread(target=self._pipe, args=(upstream, client), name="tls-down")
        self._threads.append(pump)
        pump.start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening, close every connection and join every thread."""
        self._stop.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()
        self._accept_thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TlsTerminator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
