"""Site settings: what a site admin fixes for a reading station (servers first).

Files are read in order; a later file adds to an earlier one but never overrides what the admin
file fixed (the admin file is the first one):

1. ``/etc/caseiterator/site.toml`` (the admin's, read-only for readers);
2. ``<user config folder>/CaseIterator/site.toml`` (``~/.config/CaseIterator/site.toml``).

``$CASEITERATOR_SITE_SETTINGS`` replaces the reader's part of that list (paths separated by
``:``), for tests and for stations that keep the file elsewhere. The admin's file, when there is
one, is always read first: a reader who can set environment variables cannot leave the site's
rules behind. Example::

    [[servers]]
    name = "pacs"
    url = "https://pacs.example.org/dicom-web"
    auth = "basic"
    username = "reader1"
    password_env = "CASEITERATOR_PACS_PASSWORD"
    ca_bundle = "/etc/ssl/certs/hospital-ca.pem"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs

from .batch_file import KeyLocator
from .errors import SiteSettingsError
from .paths import APP_NAME
from .server_settings import ServerSettings

ADMIN_FILE = Path("/etc/caseiterator/site.toml")
ENV = "CASEITERATOR_SITE_SETTINGS"
#: Top-level tables of a site file; the reading-station keys are read by the application.
TOP_KEYS = ("servers", "station", "reader", "output", "prefetch", "tools", "sources")


def site_settings_paths() -> list[Path]:
    """The site files to read, in order (admin first)."""
    override = os.environ.get(ENV)
    if override is None:
        return [ADMIN_FILE, Path(platformdirs.user_config_dir(APP_NAME, False)) / "site.toml"]
    paths = [Path(p) for p in override.split(os.pathsep) if p]
    if ADMIN_FILE.is_file() and ADMIN_FILE not in paths:
        paths.insert(0, ADMIN_FILE)  # the admin's rules hold whatever the environment says
    return paths


@dataclass(frozen=True)
class SiteSettings:
    """The merged site settings.

    Attributes
    ----------
    servers
        Configured DICOMweb servers by name.
    tables
        The other top-level tables as read (for the application's station settings).
    files
        The files that were found and read, admin first.
    """

    servers: Mapping[str, ServerSettings] = field(default_factory=dict)
    tables: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def server(self, name: str) -> ServerSettings:
        """Return the server called ``name``.

        Raises
        ------
        KeyError
            With the known names in the message.
        """
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise KeyError(f"no server named {name!r} in the site settings ({known})") from None


def load_site_settings(paths: list[Path] | None = None) -> SiteSettings:
    """Read and merge the site files (missing files are fine; wrong ones are refused).

    Raises
    ------
    SiteSettingsError
        Naming the file, the line, the key and the fix.
    """
    servers: dict[str, ServerSettings] = {}
    tables: dict[str, Any] = {}
    found = []
    for path in paths if paths is not None else site_settings_paths():
        if not path.is_file():
            continue
        found.append(path)
        data, locator = _read(path)
        for key in data:
            if key not in TOP_KEYS:
                raise SiteSettingsError(
                    path,
                    f"unknown top-level key {key!r}.",
                    line=locator.line_of(key),
                    key=key,
                    fix=f"allowed keys: {', '.join(TOP_KEYS)}.",
                )
        for server in _servers(path, data.get("servers", []), locator):
            servers.setdefault(server.name, server)  # the admin's (earlier) definition wins
        for key, value in data.items():
            if key != "servers":
                tables.setdefault(key, value)
    return SiteSettings(MappingProxyType(servers), MappingProxyType(tables), tuple(found))


def _read(path: Path) -> tuple[dict, KeyLocator]:
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), KeyLocator(text)
    except OSError as exc:
        raise SiteSettingsError(path, f"cannot read the site settings: {exc.strerror}.") from exc
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        raise SiteSettingsError(
            path, f"not valid TOML: {exc}.", line=int(found.group(1)) if found else None
        ) from exc


def _servers(path: Path, entries: Any, locator: KeyLocator) -> list[ServerSettings]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SiteSettingsError(
            path,
            "servers must be [[servers]] tables.",
            line=locator.line_of("servers"),
            key="servers",
        )
    result, names = [], set()
    for index, entry in enumerate(entries):
        where = f"servers[{index}]"

        def error(key: str, message: str, fix: str | None, where=where) -> SiteSettingsError:
            return SiteSettingsError(
                path, message, line=locator.line_of(f"{where}.{key}"), key=f"{where}.{key}", fix=fix
            )

        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name or ""):
            raise error(
                "name",
                f"server {index + 1} needs a name of letters, digits, . _ -; got {name!r}.",
                'add name = "pacs".',
            )
        if name in names:
            raise error("name", f"server name {name!r} is used twice.", None)
        names.add(name)
        result.append(
            ServerSettings.from_table(entry, name=name, base_dir=path.parent, error=error)
        )
    return result
