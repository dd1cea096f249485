"""Talking to a DICOMweb server: one HTTP session per server with auth, TLS, timeouts, retries.

Everything network-related goes through :func:`open_client` and :func:`server_errors`, so a
401 reads the same everywhere ("server 'pacs' refused ... check the user name and password in
$PACS_PASSWORD"), and no secret ever reaches a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from dicomweb_client import DICOMwebClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import CaseIteratorError
from .server_settings import AuthKind, ServerSettings

logger = logging.getLogger(__name__)

#: HTTP answers worth retrying: request timeout, too many requests, server-side trouble.
RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class ServerError(CaseIteratorError):
    """A DICOMweb server could not do what was asked; the message says which and why.

    Attributes
    ----------
    server
        The server's name and URL (without credentials).
    status
        The HTTP status code, when the server answered.
    """

    def __init__(self, server: str, message: str, status: int | None = None) -> None:
        self.server = server
        self.status = status
        super().__init__(message)


class ServerAuthError(ServerError):
    """The server refused the credentials (401) or the access (403)."""


class ServerUnreachable(ServerError):
    """No connection could be made, or it broke during a transfer."""


class ServerTimeout(ServerError):
    """The server did not answer within the configured timeout."""


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer`` without the token in ``repr`` or the session's headers."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


class _ServerAdapter(HTTPAdapter):
    """Applies the server's timeout when a caller gives none, and its TLS verification.

    The verification is applied here, not only as ``session.verify``, because requests lets
    ``$REQUESTS_CA_BUNDLE`` / ``$CURL_CA_BUNDLE`` override a session's CA bundle: the site's
    configured ``ca_bundle`` (or ``verify_tls = false``) must win over the environment.
    """

    def __init__(self, timeout: float, verify: bool | str | None, **kwargs: Any) -> None:
        self._timeout = timeout
        self._verify = verify
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # type: ignore[override]
        request.url = _literal_wildcards(request.url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._verify is not None:
            kwargs["verify"] = self._verify
        return super().send(request, **kwargs)


def _literal_wildcards(url: str) -> str:
    """Send QIDO-RS wildcards ``*`` and ``?`` literally in the query string.

    dicomweb-client percent-encodes them (``%2A``), which some servers (Orthanc 1.10) then
    match as a literal asterisk: ``PatientID=DEMO%2A`` finds nothing where ``DEMO*`` finds all.
    QIDO-RS defines the wildcard as the character itself.
    """
    path, mark, query = url.partition("?")
    if not mark:
        return url
    query = query.replace("%2A", "*").replace("%2a", "*").replace("%3F", "?").replace("%3f", "?")
    return f"{path}?{query}"


def make_session(settings: ServerSettings) -> requests.Session:
    """Build the HTTP session of a server: auth, TLS verification, timeout, retries with backoff.

    Raises
    ------
    SecretError
        When the password or token cannot be read (the message says where it was looked for).
    """
    session = requests.Session()
    if settings.auth is AuthKind.BASIC:
        assert settings.secret is not None and settings.username
        session.auth = requests.auth.HTTPBasicAuth(settings.username, settings.secret.read())
    elif settings.auth is AuthKind.BEARER:
        assert settings.secret is not None
        session.auth = _BearerAuth(settings.secret.read())
    if settings.ca_bundle is not None:
        session.verify = str(settings.ca_bundle)
    else:
        session.verify = settings.verify_tls
    if not settings.verify_tls:
        logger.warning("TLS verification is off for server %s", settings.describe())
    retry = Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=settings.backoff_s,
        status_forcelist=RETRY_STATUS,
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer reaches raise_for_status and its message
    )
    forced = (
        str(settings.ca_bundle) if settings.ca_bundle else (None if settings.verify_tls else False)
    )
    adapter = _ServerAdapter(settings.timeout_s, forced, max_retries=retry, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def open_client(settings: ServerSettings) -> DICOMwebClient:
    """A ``DICOMwebClient`` on the server's session.

    dicomweb-client's own retrying is switched off: the session's urllib3 retries already cover
    connection errors and 408/429/5xx, and two layers would multiply the waits.
    """
    with server_errors(settings, "connect"):
        session = make_session(settings)
    client = DICOMwebClient(url=settings.url, session=session, timeout=settings.timeout_s)
    client.set_http_retry_params(retry=False)
    return client


_AUTH_HINT = {
    AuthKind.NONE: "the server asks for credentials: set auth, username and password_env "
    "(or token_env) for it",
    AuthKind.BASIC: "check the user name and the password in {secret}",
    AuthKind.BEARER: "check that the token in {secret} is valid and not expired",
}


@contextmanager
def server_errors(settings: ServerSettings, operation: str) -> Iterator[None]:
    """Turn network and HTTP failures during ``operation`` into :class:`ServerError` types.

    The messages name the server and the operation and say what to check; they hold no
    secret (URLs are shown without credentials, headers never).
    """
    where = f"server {settings.describe()}"
    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        reason = exc.response.reason if exc.response is not None else ""
        if status in (401, 403):
            secret = settings.secret.describe() if settings.secret else "the site settings"
            hint = _AUTH_HINT[settings.auth].format(secret=secret)
            if status == 403:
                hint = "the account is known but not allowed to do this; ask the PACS admin"
            raise ServerAuthError(
                settings.describe(),
                f"{where} refused {operation} with {status} {reason}: {hint}",
                status,
            ) from None
        raise ServerError(
            settings.describe(),
            f"{where} failed {operation} with {status} {reason}; if it lasts, ask the PACS admin",
            status,
        ) from None
    except requests.exceptions.SSLError:
        raise ServerUnreachable(
            settings.describe(),
            f"{where}: the TLS certificate could not be verified during {operation}; if the "
            "server uses your hospital's own certificate authority, set ca_bundle to its PEM "
            "file",
        ) from None
    except requests.exceptions.RetryError as exc:
        raise ServerError(
            settings.describe(),
            f"{where} kept failing {operation} after {settings.retries} retries "
            f"({_root_reason(exc)}); try again later",
        ) from None
    except (
        requests.Timeout,
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
    ) as exc:
        if isinstance(exc, requests.Timeout) or _timed_out(exc):
            raise ServerTimeout(
                settings.describe(),
                f"{where} did not answer {operation} within {settings.timeout_s:g} s (after "
                f"{settings.retries} retries); the server or the network is slow or down",
            ) from None
        raise ServerUnreachable(
            settings.describe(),
            f"{where} cannot be reached during {operation} ({_root_reason(exc)}); check that "
            "the server is running and the network is up",
        ) from None


def _timed_out(exc: requests.RequestException) -> bool:
    """Whether a connection error is really a timeout that ran out of retries."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3 derives NewConnectionError (connection refused) from ConnectTimeoutError.
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _root_reason(exc: BaseException) -> str:
    """A short reason from a requests/urllib3 chain, without URLs (they may be long)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "Connection reset", "Connection aborted", "too many 5", "Max retries",
                   "IncompleteRead", "Remote end closed"):  # fmt: skip
        if marker.lower() in text.lower():
            return marker.lower()
    return type(exc).__name__
