"""Site policy: which batch sources a station may read and where its results go.

Read from the ``[sources]`` and ``[output]`` tables of the site settings
(:mod:`.site_settings`; the first file holding a table wins, so the admin's
``/etc/caseiterator/site.toml`` beats the reader's own file)::

    [sources]
    types = ["dicomweb", "dicom-db"]      # batch source types allowed (default: all)
    servers = ["pacs"]                    # a dicomweb batch must name one of these site servers
                                          # (server = "pacs"); a batch with its own url is refused
    folders = ["/data/studies"]           # csv, dicom-folder, dicom-db and slicer-db batches must
                                          # read from inside these folders (path and csv root)

    [output]                              # each key set here replaces the batch's [output] key
    destination = "/data/results"         # "source" or an absolute folder
    format = "dicom-seg"                  # dicom-seg | seg.nrrd
    seg_type = "binary"                   # binary | labelmap

A key left out fixes nothing. The site's ``[output]`` wins over the batch's because a batch
file is written by anyone (the DICOM browser writes one per selection) while where patient
results land is the site's decision (a PACS, a controlled share); a batch that says otherwise
is not refused, its ``[output]`` is overridden and the override logged.

Batches are opened through :func:`load_site_batch`, which refuses with a
:class:`~.errors.SitePolicyError` naming the batch file and key, the rule and the site file
that set it, and the fix. A table that is itself wrong is a :class:`~.errors.SiteSettingsError`
naming the site file, key and line.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .batch_file import (
    OUTPUT_FORMATS,
    SEG_TYPES,
    SOURCE_TYPES,
    BatchDefinition,
    KeyLocator,
    OutputSpec,
    SourceSpec,
    load_batch,
    outside_folders,
)
from .errors import SitePolicyError, SiteSettingsError
from .server_settings import ServerSettings
from .site_settings import SiteSettings, load_site_settings

log = logging.getLogger(__name__)

SOURCES_KEYS = ("types", "servers", "folders")
OUTPUT_KEYS = ("destination", "format", "seg_type")
#: Source types whose ``[source]`` keys name local files or folders (checked against folders).
_LOCAL_PATH_KEYS = {
    "csv": ("path", "root"),
    "dicom-folder": ("path",),
    "dicom-db": ("path",),
    "slicer-db": ("path",),
}
_ASK_ADMIN = "ask your site admin to allow it"


@dataclass(frozen=True)
class PolicyRule:
    """Where a rule of the policy was set, for messages: ``[sources] servers in <file>, line 3``."""

    table: str
    key: str
    file: Path
    line: int | None = None

    def describe(self) -> str:
        """The rule and the site file (and line) that set it."""
        where = f"{self.file}" + (f", line {self.line}" if self.line else "")
        return f"[{self.table}] {self.key} in the site settings {where}"


@dataclass(frozen=True)
class SitePolicy:
    """What the site allows a batch to read and fixes about its output.

    Attributes
    ----------
    types, servers, folders
        Allowed source types, site server names and folders; None where the site fixes none.
    destination
        ``"source"`` or an absolute folder; None: the batch's own.
    format, seg_type
        The output format and DICOM SEG kind; None: the batch's own.
    rules
        Where each rule was set, by ``table.key`` (for messages).
    """

    types: tuple[str, ...] | None = None
    servers: tuple[str, ...] | None = None
    folders: tuple[Path, ...] | None = None
    destination: str | None = None
    format: str | None = None
    seg_type: str | None = None
    rules: Mapping[str, PolicyRule] | None = None

    def _refuse(self, spec: SourceSpec, key: str, rule: str, message: str, fix: str):
        where = (self.rules or {}).get(rule) or PolicyRule(*rule.split("."), Path("site.toml"))
        line = spec.locator.line_of(f"source.{key}") if spec.locator else None
        return SitePolicyError(
            spec.origin,
            f"{message} (refused by {where.describe()}).",
            site_file=where.file,
            rule=rule,
            line=line,
            key=f"source.{key}",
            fix=fix,
        )

    def check_source(self, spec: SourceSpec) -> None:
        """Refuse a ``[source]`` the site does not allow.

        Raises
        ------
        SitePolicyError
            Naming the batch file and key, the rule, the site file that set it and the fix.
        """
        if self.types is not None and spec.type not in self.types:
            allowed = ", ".join(self.types) or "none"
            raise self._refuse(
                spec,
                "type",
                "sources.types",
                f"this station does not read {spec.type!r} batches (allowed: {allowed})",
                f"use a batch of an allowed type, or {_ASK_ADMIN}.",
            )
        if spec.type == "dicomweb" and self.servers is not None:
            self._check_server(spec)
        if self.folders is not None:
            for key in _LOCAL_PATH_KEYS.get(spec.type, ()):
                self._check_folder(spec, key)

    def _check_server(self, spec: SourceSpec) -> None:
        assert self.servers is not None
        allowed = ", ".join(self.servers) or "none"
        first = self.servers[0] if self.servers else None
        use = f'write server = "{first}" under [source]' if first else "use another source"
        name = spec.options.get("server")
        if name is None:
            # The batch's own url (never shown: it may carry a user name).
            raise self._refuse(
                spec,
                "url" if "url" in spec.options else "type",
                "sources.servers",
                f"this station reads DICOMweb only from the site's servers ({allowed}), "
                "not from a url written in the batch",
                f"{use} (instead of url and its keys), or {_ASK_ADMIN}.",
            )
        if name not in self.servers:
            raise self._refuse(
                spec,
                "server",
                "sources.servers",
                f"server {name!r} is not one this station may read from (allowed: {allowed})",
                f"{use}, or {_ASK_ADMIN}.",
            )

    def _check_folder(self, spec: SourceSpec, key: str) -> None:
        assert self.folders is not None
        value = spec.options.get(key)
        if not isinstance(value, str) or not value:
            return  # missing or wrong: the source's own check says so
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = spec.base_dir / path
        refused = outside_folders(path, self.folders)
        if refused is None:
            return
        raise self._refuse(
            spec,
            key,
            "sources.folders",
            f"{key} {refused}",
            f"move the data into one of those folders, or {_ASK_ADMIN}.",
        )

    def output(self, batch_output: OutputSpec) -> OutputSpec:
        """``batch_output`` with what the site fixes (the site wins; see the module docstring)."""
        values: dict[str, Any] = {}
        if self.format is not None:
            values["format"] = self.format
        if self.seg_type is not None:
            values["seg_type"] = self.seg_type
        if self.destination is not None:
            values["folder"] = None if self.destination == "source" else Path(self.destination)
        return replace(batch_output, **values)

    def apply(self, batch: BatchDefinition) -> BatchDefinition:
        """Check ``batch`` and return it with the site's output.

        Raises
        ------
        SitePolicyError
            When the site does not allow the batch's source.
        """
        self.check_source(batch.source)
        if self.folders is not None:
            # Each file a table names is checked too (csv_table): a row may point anywhere.
            batch = replace(batch, source=replace(batch.source, allowed_folders=self.folders))
        output = self.output(batch.output)
        if output != batch.output:
            log.info(
                "batch %s: output %s replaced by the site's %s", batch.path, batch.output, output
            )
            batch = replace(batch, output=output)
        return batch

    def allowed_servers(
        self, servers: Mapping[str, ServerSettings]
    ) -> Mapping[str, ServerSettings]:
        """The servers a batch may read from (all of them when the site fixes none)."""
        if self.types is not None and "dicomweb" not in self.types:
            return {}
        if self.servers is None:
            return servers
        return {name: server for name, server in servers.items() if name in self.servers}


def _origin(settings: SiteSettings, table: str) -> tuple[Path, KeyLocator | None]:
    """The site file whose ``table`` was taken (the first holding it, as the merge does)."""
    for path in settings.files:
        try:
            text = path.read_text(encoding="utf-8")
            if table in tomllib.loads(text):
                return path, KeyLocator(text)
        except (OSError, tomllib.TOMLDecodeError):
            continue  # load_site_settings read it a moment ago; nothing better to say
    return (settings.files[0] if settings.files else Path("site.toml")), None


class _Table:
    """One policy table of the site settings, with errors naming its file, key and line."""

    def __init__(self, settings: SiteSettings, name: str, keys: tuple[str, ...]) -> None:
        self.name = name
        self.data: Mapping[str, Any] = settings.tables.get(name, {})
        self.file, self.locator = _origin(settings, name)
        if not isinstance(self.data, Mapping):
            raise self.error("", f"{name} must be a table: write [{name}] on its own line.")
        for key in self.data:
            if key not in keys:
                raise self.error(
                    key, f"unknown key {key!r} in [{name}].", f"allowed keys: {', '.join(keys)}."
                )

    def error(self, key: str, message: str, fix: str | None = None) -> SiteSettingsError:
        dotted = f"{self.name}.{key}" if key else self.name
        line = self.locator.line_of(dotted) if self.locator else None
        return SiteSettingsError(self.file, message, line=line, key=dotted, fix=fix)

    def rule(self, key: str) -> PolicyRule:
        line = self.locator.line_of(f"{self.name}.{key}") if self.locator else None
        return PolicyRule(self.name, key, self.file, line)

    def strings(self, key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(
                key,
                f"{key} must be a list of non-empty strings, got {value!r}.",
                f'write {key} = ["..."].',
            )
        unknown = [v for v in value if allowed is not None and v not in allowed]
        if unknown:
            raise self.error(
                key, f"{unknown[0]!r} is not known in {key}.", f"use: {', '.join(allowed or ())}."
            )
        return tuple(value)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.data.get(key)
        if value is not None and value not in allowed:
            raise self.error(
                key, f"{key} {value!r} is not known.", f"use one of: {', '.join(allowed)}."
            )
        return value


def _absolute(table: _Table, key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise table.error(
            key,
            f"{key} {value!r} is a relative path; the site settings need absolute folders.",
            f'write the whole path, e.g. "/data/{value.strip("./")}".',
        )
    return path


def site_policy(settings: SiteSettings) -> SitePolicy:
    """The policy of ``settings`` (``[sources]`` and ``[output]``).

    Raises
    ------
    SiteSettingsError
        On an unknown key, a wrong type, an unknown source type or server, or a relative
        folder, naming the site file, the key and its line.
    """
    sources = _Table(settings, "sources", SOURCES_KEYS)
    output = _Table(settings, "output", OUTPUT_KEYS)
    types = sources.strings("types", SOURCE_TYPES)
    servers = sources.strings("servers")
    for name in servers or ():
        if name not in settings.servers:
            raise sources.error(
                "servers",
                f"server {name!r} is not a [[servers]] table of the site settings.",
                f'add [[servers]] with name = "{name}" and its url, or remove it from servers.',
            )
    folders = sources.strings("folders")
    for folder in folders or ():
        _absolute(sources, "folders", folder)
    destination = output.data.get("destination")
    if destination is not None and destination != "source":
        if not isinstance(destination, str) or not destination:
            raise output.error(
                "destination", f'destination must be "source" or a folder, got {destination!r}.'
            )
        destination = str(_absolute(output, "destination", destination))
    rules = {
        f"{table.name}.{key}": table.rule(key) for table in (sources, output) for key in table.data
    }
    return SitePolicy(
        types=types,
        servers=servers,
        folders=tuple(Path(f).expanduser() for f in folders) if folders is not None else None,
        destination=destination,
        format=output.choice("format", OUTPUT_FORMATS),
        seg_type=output.choice("seg_type", SEG_TYPES),
        rules=rules,
    )


def load_site_policy() -> SitePolicy:
    """The policy of the site settings files (:func:`.site_settings.load_site_settings`)."""
    return site_policy(load_site_settings())


def load_site_batch(
    path: str | os.PathLike[str], policy: SitePolicy | None = None
) -> BatchDefinition:
    """Load a batch as this station may read it: checked against the site and with its output.

    Parameters
    ----------
    path
        As for :func:`.batch_file.load_batch`.
    policy
        The site's policy; read from the site settings when None.

    Raises
    ------
    BatchDefinitionError
        When the batch is unusable; :class:`~.errors.SitePolicyError` when the site refuses it.
    SiteSettingsError
        When the site settings are wrong.
    """
    if policy is None:
        policy = load_site_policy()
    return policy.apply(load_batch(path))


__all__ = [
    "OUTPUT_KEYS",
    "SOURCES_KEYS",
    "PolicyRule",
    "SitePolicy",
    "load_site_batch",
    "load_site_policy",
    "site_policy",
]
