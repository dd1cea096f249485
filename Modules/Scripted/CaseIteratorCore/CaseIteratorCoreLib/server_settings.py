"""How to reach a DICOMweb server: URL, authentication, TLS, timeouts and retries.

The same keys are accepted in a batch's ``[source]`` (type ``dicomweb``) and in the site
settings' ``[[servers]]`` tables::

    url = "https://pacs.example.org/dicom-web"
    auth = "basic"                      # none | basic | bearer
    username = "reader"
    password_env = "PACS_PASSWORD"      # or password_file = "/etc/caseiterator/pacs.secret"
    # token_env / token_file for auth = "bearer"
    ca_bundle = "/etc/ssl/certs/hospital-ca.pem"
    verify_tls = true
    timeout_s = 30
    retries = 3

Secrets are never accepted in clear in these files: they come from an environment variable or a
file only its owner can read, and they never appear in messages, logs or ``repr``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import CaseIteratorError

#: Keys a server table may hold.
SERVER_KEYS = (
    "name",
    "url",
    "auth",
    "username",
    "password_env",
    "password_file",
    "token_env",
    "token_file",
    "ca_bundle",
    "verify_tls",
    "timeout_s",
    "retries",
    "backoff_s",
)
_CLEAR_SECRETS = ("password", "token", "secret", "api_key")


class AuthKind(StrEnum):
    """How the server wants the reader's station to authenticate."""

    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


class SecretError(CaseIteratorError):
    """A secret cannot be read; the message names where it was looked for, never its value."""


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file only its owner can read."""

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        """Where the secret comes from, for messages (never the secret)."""
        return f"${self.env}" if self.env else f"the file {self.file}"

    def read(self) -> str:
        """Return the secret.

        Raises
        ------
        SecretError
            When the variable is unset, or the file is missing, empty or readable by others.
        """
        if self.env:
            value = os.environ.get(self.env, "")
            if not value:
                raise SecretError(
                    f"the environment variable {self.env} is not set or empty; set it to the "
                    "secret before starting CaseIterator"
                )
            return value
        assert self.file is not None
        try:
            info = self.file.stat()
        except OSError as exc:
            raise SecretError(f"cannot read the secret file {self.file}: {exc.strerror}") from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"the secret file {self.file} can be read by other users (mode "
                f"{stat.filemode(info.st_mode)}); run: chmod 600 {self.file}"
            )
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid() and os.geteuid() != 0:
            raise SecretError(
                f"the secret file {self.file} belongs to another user; it must be yours"
            )
        value = self.file.read_text(encoding="utf-8").strip()
        if not value:
            raise SecretError(f"the secret file {self.file} is empty")
        return value


def redact_url(url: str) -> str:
    """Drop any user name or password written into a URL, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ServerSettings:
    """One DICOMweb server as configured (no secret values are held here, only where they are).

    Parameters
    ----------
    name
        Short name readers and admins use ("pacs", "research-archive").
    url
        DICOMweb root (QIDO-RS, WADO-RS and STOW-RS are below it).
    auth
        Authentication kind.
    username
        For basic authentication.
    secret
        Where the password (basic) or token (bearer) is.
    ca_bundle
        PEM file of the certificate authorities to trust for HTTPS (TLS verification stays on).
    verify_tls
        False only for test servers; a warning is shown when off.
    timeout_s
        Seconds to wait for a connection and for each read.
    retries
        Retries of a request after a connection error or a 408/429/5xx answer.
    backoff_s
        First wait between retries; it doubles each time.
    """

    name: str
    url: str
    auth: AuthKind = AuthKind.NONE
    username: str | None = None
    secret: SecretRef | None = field(default=None)
    ca_bundle: Path | None = None
    verify_tls: bool = True
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5

    @property
    def safe_url(self) -> str:
        """The URL without credentials, for messages."""
        return redact_url(self.url)

    def describe(self) -> str:
        """``name (url)`` for messages."""
        return f"{self.name!r} ({self.safe_url})" if self.name else self.safe_url

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        *,
        name: str,
        base_dir: Path,
        error: Callable[[str, str, str | None], Exception],
        extra_keys: tuple[str, ...] = (),
    ) -> ServerSettings:
        """Read server keys from a TOML table.

        Parameters
        ----------
        table
            The table (``[source]`` or one ``[[servers]]`` entry).
        name
            The server's name when the table has no ``name`` key.
        base_dir
            Relative file paths (secret files, CA bundle) are relative to it.
        error
            ``error(key, message, fix)`` builds the exception to raise (it knows the file/line).
        extra_keys
            Other keys the table may hold (checked by the caller).
        """
        refuse_clear_secrets(table, error)
        for key in table:
            if key not in SERVER_KEYS and key not in extra_keys:
                import difflib

                close = difflib.get_close_matches(key, SERVER_KEYS, n=1)
                raise error(
                    key,
                    f"unknown key {key!r} for a DICOMweb server.",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"Allowed keys: {', '.join(SERVER_KEYS)}.",
                )
        url = table.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise error(
                "url",
                f"url must be an http:// or https:// address, got {url!r}.",
                'write url = "https://host/dicom-web" (the DICOMweb root).',
            )
        try:
            auth = AuthKind(table.get("auth", "none"))
        except ValueError:
            raise error(
                "auth",
                f"auth {table.get('auth')!r} is not known.",
                "use one of: none, basic, bearer.",
            ) from None
        secret = _secret(table, auth, base_dir, error)
        username = table.get("username")
        if auth is AuthKind.BASIC and (not isinstance(username, str) or not username):
            raise error(
                "username", 'auth = "basic" needs a username.', 'add username = "..." next to auth.'
            )
        ca_bundle = table.get("ca_bundle")
        if ca_bundle is not None:
            ca_bundle = Path(ca_bundle).expanduser()
            if not ca_bundle.is_absolute():
                ca_bundle = base_dir / ca_bundle
            if not ca_bundle.is_file():
                raise error(
                    "ca_bundle",
                    f"the CA bundle {ca_bundle} does not exist.",
                    "give the PEM file of your hospital's certificate authority.",
                )
        numbers = {}
        for key, default, low in (
            ("timeout_s", 30.0, 0.1),
            ("retries", 3, 0),
            ("backoff_s", 0.5, 0),
        ):
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise error(key, f"{key} must be a number of at least {low}, got {value!r}.", None)
            numbers[key] = value
        verify = table.get("verify_tls", True)
        if not isinstance(verify, bool):
            raise error("verify_tls", f"verify_tls must be true or false, got {verify!r}.", None)
        return cls(
            name=str(table.get("name", name)),
            url=url.rstrip("/"),
            auth=auth,
            username=username,
            secret=secret,
            ca_bundle=ca_bundle,
            verify_tls=verify,
            timeout_s=float(numbers["timeout_s"]),
            retries=int(numbers["retries"]),
            backoff_s=float(numbers["backoff_s"]),
        )


def refuse_clear_secrets(
    table: Mapping[str, Any], error: Callable[[str, str, str | None], Exception]
) -> None:
    """Refuse a password or token written in clear in a settings or batch file."""
    for key in table:
        if key in _CLEAR_SECRETS:
            raise error(
                key,
                f"{key!r} written in clear is refused: the file may be copied, backed up or "
                "shown on screen.",
                f'remove it and set {key}_env = "VARIABLE" (an environment variable) or '
                f'{key}_file = "/path" (a file only you can read, chmod 600).',
            )


def _secret(table: Mapping[str, Any], auth: AuthKind, base_dir: Path, error) -> SecretRef | None:
    kind = {AuthKind.BASIC: "password", AuthKind.BEARER: "token"}.get(auth)
    if kind is None:
        return None
    env, file = table.get(f"{kind}_env"), table.get(f"{kind}_file")
    if (env is None) == (file is None):
        raise error(
            f"{kind}_env",
            f'auth = "{auth}" needs exactly one of {kind}_env or {kind}_file.',
            f'set {kind}_env = "VARIABLE" or {kind}_file = "/path/to/secret" (chmod 600).',
        )
    if env is not None:
        if not isinstance(env, str) or not env:
            raise error(f"{kind}_env", f"{kind}_env must name an environment variable.", None)
        return SecretRef(env=env)
    path = Path(str(file)).expanduser()
    return SecretRef(file=path if path.is_absolute() else base_dir / path)
