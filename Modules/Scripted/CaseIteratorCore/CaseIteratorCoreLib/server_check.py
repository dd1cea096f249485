"""Checking a configured DICOMweb server: reachable, QIDO-RS works, STOW-RS allowed."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from .dicomweb_connection import ServerError, ServerUnreachable, open_client, server_errors
from .errors import CaseIteratorError
from .server_settings import ServerSettings

#: An empty multipart STOW-RS request: it stores nothing, but the answer says whether the
#: endpoint exists and accepts this station's credentials.
_PROBE_BOUNDARY = "caseiterator-probe"
_PROBE_TYPE = f'multipart/related; type="application/dicom"; boundary={_PROBE_BOUNDARY}'


@dataclass(frozen=True)
class ServerCheck:
    """The outcome of :func:`check_server`.

    ``stow`` is None when it could not be checked (the server was not reachable).
    """

    server: ServerSettings
    reachable: bool
    qido: bool
    stow: bool | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the server can be used to read and to send results."""
        return self.reachable and self.qido and bool(self.stow)


def check_server(settings: ServerSettings) -> ServerCheck:
    """Check one server with a QIDO-RS search (1 study) and an empty STOW-RS request."""
    notes: list[str] = []
    try:
        client = open_client(settings)
    except CaseIteratorError as exc:  # an unreadable secret: nothing was sent
        return ServerCheck(settings, False, False, None, (str(exc),))
    reachable, qido = True, False
    try:
        with server_errors(settings, "a QIDO-RS study search"):
            client.search_for_studies(limit=1)
        qido = True
    except ServerUnreachable as exc:
        reachable = False
        notes.append(str(exc))
    except ServerError as exc:
        reachable = exc.status is not None
        notes.append(str(exc))
    stow = None
    if reachable:
        stow = _probe_stow(settings, client._session, notes)
    client._session.close()
    return ServerCheck(settings, reachable, qido, stow, tuple(notes))


def _probe_stow(settings: ServerSettings, session: requests.Session, notes: list[str]) -> bool:
    try:
        with server_errors(settings, "the STOW-RS check"):
            response = session.post(
                settings.url + "/studies",
                data=f"--{_PROBE_BOUNDARY}--\r\n".encode(),
                headers={"Content-Type": _PROBE_TYPE, "Accept": "application/dicom+json"},
            )
    except ServerError as exc:
        notes.append(str(exc))
        return False
    status = response.status_code
    if status in (401, 403):
        notes.append(f"STOW-RS refused with {status}: results cannot be sent with this account")
        return False
    if status in (404, 405, 501):
        notes.append(f"STOW-RS is not offered (HTTP {status}): set another output destination")
        return False
    if status >= 500:
        notes.append(f"STOW-RS check failed with HTTP {status}")
        return False
    return True  # 2xx, or 400/409/415 for the empty request: the endpoint takes posts
