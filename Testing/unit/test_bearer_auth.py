"""Bearer tokens reach the server in the Authorization header, and nowhere else."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.dicomweb_connection import ServerAuthError
from CaseIteratorCoreLib.sources import open_source

TOKEN = "eyJ-test-token-123"


class _QidoHandler(BaseHTTPRequestHandler):
    """A minimal QIDO-RS endpoint: empty study list for the right token, 401 otherwise."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        header = self.headers.get("Authorization", "")
        _QidoHandler.seen.append(header)
        if header != f"Bearer {TOKEN}":
            self.send_response(401, "Unauthorized")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def qido_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QidoHandler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    _QidoHandler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()
    thread.join()


def test_bearer_token_from_env(
    tmp_path: Path, qido_server: str, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    batch = tmp_path / "web.toml"
    batch.write_text(
        f'[source]\ntype = "dicomweb"\nurl = "{qido_server}"\nauth = "bearer"\n'
        f'token_env = "TEST_TOKEN"\nretries = 0\ncache = "{tmp_path / "cache"}"\n'
    )
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    source = open_source(load_batch(batch))
    assert list(source.iter_cases()) == []
    assert _QidoHandler.seen == [f"Bearer {TOKEN}"]
    assert TOKEN not in repr(source.client._session.auth) and TOKEN not in caplog.text

    monkeypatch.setenv("TEST_TOKEN", "expired-token")
    with pytest.raises(ServerAuthError) as info:
        list(open_source(load_batch(batch)).iter_cases())
    assert "check that the token in $TEST_TOKEN is valid and not expired" in str(info.value)
    assert "expired-token" not in str(info.value)
