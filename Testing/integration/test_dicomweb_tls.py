"""HTTPS to a real Orthanc: verification is on by default, a site CA bundle makes it work.

TLS is terminated by Testing/tls_terminator.py in front of Orthanc (Debian's Orthanc 1.10.1
crashes on HTTPS connections): a real handshake with a real certificate chain.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.dicomweb_connection import ServerUnreachable
from CaseIteratorCoreLib.sources import open_source

from orthanc_server import OrthancServer
from tls_terminator import TlsTerminator

pytestmark = pytest.mark.orthanc


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate for 127.0.0.1 signed by it with its key (openssl)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (bootstrap.sh installs it)")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    subject = ["-subj", "/CN=127.0.0.1"]
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=CaseIterator test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        *subject)  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def test_https_needs_the_site_ca_bundle(tmp_path: Path, orthanc: OrthancServer) -> None:
    ca, certificate, key = make_certificates(tmp_path)
    with TlsTerminator(orthanc.http_port, certificate, key) as tls:
        batch = tmp_path / "web.toml"
        base = (
            f'[source]\ntype = "dicomweb"\nurl = "{tls.url}/dicom-web"\n'
            f'cache = "{tmp_path / "cache"}"\nretries = 0\n'
        )
        batch.write_text(base)
        with pytest.raises(ServerUnreachable) as info:
            list(open_source(load_batch(batch)).iter_cases())
        assert "TLS certificate could not be verified" in str(info.value)
        assert "set ca_bundle" in str(info.value)
        batch.write_text(base + f'ca_bundle = "{ca}"\n')
        with open_source(load_batch(batch)) as source:
            list(source.iter_cases())  # the chain verifies: no error
            assert source.client._session.verify == str(ca)
