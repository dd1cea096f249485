"""The reading-station part of the site settings: kiosk, allowed folders, reader, tools.

Read from the tables of :func:`CaseIteratorCoreLib.site_settings.load_site_settings` (the
admin's file wins over the reader's)::

    [station]
    kiosk = true                          # full screen, only the reading workflow
    allowed_folders = ["/data/batches"]   # the only folders a file dialog may show
    batch = "/data/batches/liver.toml"    # opened when no batch is given

    [reader]
    name = "dr.smith"                     # this station's reader (never asked)
    names = ["dr.a", "dr.b"]              # or: readers choose from this list (no free name)

    [tools]
    effects = ["paint", "erase", "draw"]  # editing tools shown (default: all)

``[sources]`` (allowed source types, servers, folders) and ``[output]`` (destination, format,
seg_type fixed for every batch) are read by :mod:`CaseIteratorCoreLib.site_policy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from CaseIteratorCoreLib.errors import SiteSettingsError
from CaseIteratorCoreLib.site_settings import SiteSettings
from CaseReaderLib.segment_editing import EFFECTS

_STATION_KEYS = ("kiosk", "allowed_folders", "batch")
_READER_KEYS = ("name", "names")
_TOOLS_KEYS = ("effects",)


@dataclass(frozen=True)
class StationSettings:
    """What the site fixes for this reading station.

    Attributes
    ----------
    kiosk
        Run full screen with only the reading workflow.
    allowed_folders
        Folders file dialogs may show (empty: no restriction outside kiosk mode, and no file
        dialog at all in kiosk mode).
    batch
        Batch opened when none is given on the command line.
    reader
        The fixed reader name, or None.
    readers
        Names readers choose from (empty: any name).
    effects
        Editing tools shown, or None for all.
    """

    kiosk: bool = False
    allowed_folders: tuple[Path, ...] = ()
    batch: Path | None = None
    reader: str | None = None
    readers: tuple[str, ...] = ()
    effects: tuple[str, ...] | None = None


def _file(settings: SiteSettings) -> Path:
    return settings.files[0] if settings.files else Path("site.toml")


def _table(settings: SiteSettings, name: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    table = settings.tables.get(name, {})
    if not isinstance(table, Mapping):
        raise SiteSettingsError(_file(settings), f"[{name}] must be a table.", key=name)
    for key in table:
        if key not in keys:
            raise SiteSettingsError(
                _file(settings),
                f"unknown key {key!r} in [{name}].",
                key=f"{name}.{key}",
                fix=f"allowed keys: {', '.join(keys)}.",
            )
    return table


def _strings(settings: SiteSettings, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SiteSettingsError(
            _file(settings),
            f"{key} must be a list of non-empty strings, got {value!r}.",
            key=key,
            fix=f'write {key} = ["..."].',
        )
    return tuple(value)


def station_settings(settings: SiteSettings) -> StationSettings:
    """The station settings of ``settings``.

    Raises
    ------
    SiteSettingsError
        On an unknown key, a wrong type or an unknown tool, naming the file and the key.
    """
    station = _table(settings, "station", _STATION_KEYS)
    reader = _table(settings, "reader", _READER_KEYS)
    tools = _table(settings, "tools", _TOOLS_KEYS)
    kiosk = station.get("kiosk", False)
    if not isinstance(kiosk, bool):
        raise SiteSettingsError(
            _file(settings), f"kiosk must be true or false, got {kiosk!r}.", key="station.kiosk"
        )
    folders = _strings(settings, "station.allowed_folders", station.get("allowed_folders", []))
    batch = station.get("batch")
    if batch is not None and not isinstance(batch, str):
        raise SiteSettingsError(
            _file(settings), f"batch must be a path, got {batch!r}.", key="station.batch"
        )
    name = reader.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise SiteSettingsError(
            _file(settings), f"name must be a reader name, got {name!r}.", key="reader.name"
        )
    names = _strings(settings, "reader.names", reader.get("names", []))
    effects = None
    if "effects" in tools:
        effects = _strings(settings, "tools.effects", tools["effects"])
        known = {e.key for e in EFFECTS}
        unknown = [e for e in effects if e not in known]
        if unknown:
            raise SiteSettingsError(
                _file(settings),
                f"unknown editing tool(s) {', '.join(map(repr, unknown))}.",
                key="tools.effects",
                fix=f"choose among: {', '.join(sorted(known))}.",
            )
    return StationSettings(
        kiosk=kiosk,
        allowed_folders=tuple(Path(f).expanduser() for f in folders),
        batch=Path(batch).expanduser() if batch else None,
        reader=name.strip() if isinstance(name, str) else None,
        readers=names,
        effects=effects,
    )
