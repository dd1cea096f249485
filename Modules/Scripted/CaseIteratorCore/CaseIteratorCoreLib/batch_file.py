"""Batch definitions: a TOML batch file, or a bare CSV table or DICOM folder with defaults.

A batch file looks like::

    name = "Liver lesions"

    [source]
    type = "dicom-folder"        # csv | dicom-folder | dicom-db | slicer-db | dicomweb
    path = "images"              # relative paths are relative to this file

    [output]
    format = "dicom-seg"         # dicom-seg | seg.nrrd
    destination = "source"       # "source" or a folder

    [[segments]]
    name = "Liver"
    category = "SCT:123037004:Anatomical Structure"
    type = "SCT:10200004:Liver"
    color = "#dd8265"

    [prefetch]
    depth = 2
    max_memory_mb = 2048

    [compare]                    # comparison mode (caseiterator compare), see docs/comparison.md
    columns = ["mask", "prediction"]   # csv: the columns holding the segmentations, or
    reference = "mask"           # the one the others are compared with (default: the first)
    resample = false             # resample a segmentation on another grid (nearest neighbour)

    [[compare.series]]           # DICOM batches: SEG series of the case, one table each
    name = "AI"
    description = "^AI"          # regular expression searched in SeriesDescription, and/or
    reader = "Doe^Jane"          # ContentCreatorName

Every error names the file, the key and its line, and says what to write instead.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BatchDefinitionError
from .terminology import Code, parse_color

SOURCE_TYPES = ("csv", "dicom-folder", "dicom-db", "slicer-db", "dicomweb")
OUTPUT_FORMATS = ("dicom-seg", "seg.nrrd")
CSV_SUFFIXES = (".csv", ".tsv")
#: The index file that marks a local DICOM database folder (see :mod:`.dicom_database`).
DICOM_DB_INDEX = ".dicom-file-client.db"

_TOP_KEYS = ("name", "id", "source", "output", "segments", "prefetch", "compare")
_OUTPUT_KEYS = ("format", "destination", "seg_type")
#: DICOM SEG kinds: BINARY (default, any segments) or LABELMAP (smaller; segments must not overlap).
SEG_TYPES = ("binary", "labelmap")
_SEGMENT_KEYS = ("name", "category", "type", "region", "color")
_PREFETCH_KEYS = ("depth", "max_memory_mb")
_COMPARE_KEYS = ("columns", "series", "reference", "resample")
_COMPARE_SERIES_KEYS = ("name", "reader", "description")
_MAX_DEFAULT_CACHE_MB = 4096


@dataclass(frozen=True)
class SegmentTemplate:
    """A segment the reader is offered, with its DICOM terminology and display colour."""

    name: str
    category: Code
    type: Code
    color: tuple[int, int, int]
    region: Code | None = None


#: Offered when a batch names no segments (Slicer's generic default).
DEFAULT_SEGMENT = SegmentTemplate(
    name="Segment 1",
    category=Code("SCT", "85756007", "Tissue"),
    type=Code("SCT", "85756007", "Tissue"),
    color=(241, 214, 145),
)


@dataclass(frozen=True)
class OutputSpec:
    """Where and how results are written."""

    format: str = "dicom-seg"
    #: ``None`` means "back to the source"; otherwise a folder.
    folder: Path | None = None
    #: ``binary`` or ``labelmap`` (DICOM SEG kind).
    seg_type: str = "binary"

    @property
    def to_source(self) -> bool:
        """Whether results go back where the images came from."""
        return self.folder is None


def default_cache_mb() -> int:
    """A quarter of the machine's memory, at most 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1024
    return int(min(total / 4 / 2**20, _MAX_DEFAULT_CACHE_MB))


@dataclass(frozen=True)
class PrefetchSpec:
    """How many cases to keep ready ahead, and the memory cap of that cache."""

    depth: int = 2
    max_memory_mb: int = field(default_factory=default_cache_mb)


@dataclass(frozen=True)
class SegSeriesRule:
    """Which DICOM SEG series of a case is one of the segmentations compared.

    Parameters
    ----------
    name
        The name of this segmentation in tables ("AI", "Reader 2").
    reader
        ContentCreatorName of the SEG (compared as :func:`.result_store.same_reader` does).
    description
        Regular expression searched (case-insensitively) in the SEG's SeriesDescription.
    """

    name: str
    reader: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class CompareSpec:
    """The ``[compare]`` table: which segmentations of each case are compared.

    Exactly one of ``columns`` (CSV batches) and ``series`` (DICOM batches) is given.
    """

    columns: tuple[str, ...] = ()
    series: tuple[SegSeriesRule, ...] = ()
    #: Name of the segmentation the others are compared with.
    reference: str = ""
    #: Resample a segmentation that is not on the image grid (nearest neighbour) instead of
    #: reporting the case.
    resample: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the compared segmentations, the reference first."""
        names = list(self.columns) or [rule.name for rule in self.series]
        return (self.reference, *[n for n in names if n != self.reference])


class KeyLocator:
    """Finds the line of a (dotted) key in TOML text, for error messages.

    ``tomllib`` reports syntax errors with positions but not where a key is; this scans the
    text for table headers and ``key =`` lines. ``segments[2].color`` means the ``color`` key of
    the third ``[[segments]]`` table.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()

    def line_of(self, dotted: str) -> int | None:
        """Return the 1-based line of ``dotted`` (``table.sub.key`` or ``array[n].key``)."""
        parts = dotted.split(".")
        table_parts, key = parts[:-1], parts[-1]
        table, index = self._table_and_index(table_parts)
        key_name, _ = _split_index(key)
        current, counts = "", {}
        header_line = None
        for number, line in enumerate(self._lines, start=1):
            header = self._HEADER.match(line)
            if header:
                current = header.group(2).replace('"', "").replace(" ", "")
                if header.group(1) == "[[":
                    counts[current] = counts.get(current, -1) + 1
                if current == table and counts.get(current, 0) == index:
                    header_line = number
                if current == ".".join([*table_parts, key_name]).replace('"', ""):
                    return number  # the key is itself a table
                continue
            match = self._KEY.match(line)
            in_table = current == table and counts.get(current, 0) == index
            if match and in_table and match.group(1).strip('"') == key_name:
                return number
        return header_line

    @staticmethod
    def _table_and_index(table_parts: list[str]) -> tuple[str, int]:
        index = 0
        names = []
        for part in table_parts:
            name, idx = _split_index(part)
            names.append(name)
            if idx is not None:
                index = idx
        return ".".join(names), index


def _split_index(part: str) -> tuple[str, int | None]:
    match = re.match(r"^(.*)\[(\d+)\]$", part)
    if match:
        return match.group(1), int(match.group(2))
    return part, None


def outside_folders(path: Path, folders: Sequence[Path]) -> str | None:
    """Why ``path`` is not inside any of ``folders``; None when it is.

    Both sides are resolved: "..", and links out of an allowed folder, do not get out.
    """
    real = path.resolve()
    if any(real.is_relative_to(folder.resolve()) for folder in folders):
        return None
    allowed = ", ".join(map(str, folders)) or "none"
    return f"{path} is outside the folders this station may read ({allowed})"


@dataclass(frozen=True)
class SourceSpec:
    """The ``[source]`` table: the input mode and its keys, checked by that mode's class."""

    type: str
    options: Mapping[str, Any]
    #: Folder against which relative paths in the options are resolved.
    base_dir: Path
    #: The batch file (or bare path) the spec came from, for messages.
    origin: Path
    locator: KeyLocator | None = None
    #: The only folders files may be read from (the site's ``[sources] folders``, set by
    #: :meth:`.site_policy.SitePolicy.apply`); None when the site fixes none.
    allowed_folders: tuple[Path, ...] | None = None

    def outside_allowed_folders(self, path: Path) -> str | None:
        """Why the site forbids reading ``path``; None when it may be read (see
        :func:`outside_folders`)."""
        if self.allowed_folders is None:
            return None
        return outside_folders(path, self.allowed_folders)

    def error(self, key: str, message: str, fix: str | None = None) -> BatchDefinitionError:
        """Build an error about ``source.<key>`` with its line."""
        line = self.locator.line_of(f"source.{key}") if self.locator else None
        return BatchDefinitionError(self.origin, message, line=line, key=f"source.{key}", fix=fix)

    def check_keys(self, allowed: tuple[str, ...], *, table: str = "") -> None:
        """Refuse unknown keys in ``[source]`` (or a sub-table of it), suggesting the closest."""
        options = self.options
        prefix = ""
        if table:
            options = self.options.get(table, {})
            prefix = f"{table}."
        for key in options:
            if key not in allowed:
                raise self.error(
                    prefix + key,
                    f"unknown key {key!r} in [source{'.' + table if table else ''}] "
                    f"for type {self.type!r}.",
                    fix=_suggest(key, allowed),
                )

    def path(self, key: str, *, required: bool = True, must_exist: bool = True) -> Path | None:
        """Return ``options[key]`` as a path resolved against :attr:`base_dir`."""
        value = self.options.get(key)
        if value is None:
            if required:
                raise self.error(
                    key,
                    f"[source] of type {self.type!r} needs {key!r}.",
                    fix=f'add {key} = "..." under [source].',
                )
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"{key!r} must be a non-empty string, got {value!r}.")
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if must_exist and not path.exists():
            raise self.error(
                key,
                f"{key} = {value!r} points to {path}, which does not exist.",
                fix="correct the path (relative paths are relative to the batch file).",
            )
        return path


@dataclass(frozen=True)
class BatchDefinition:
    """A parsed, checked batch: the source, the output, segment templates, prefetch settings.

    Use :func:`load_batch` to make one from a file or folder.
    """

    name: str
    path: Path
    source: SourceSpec
    output: OutputSpec = field(default_factory=OutputSpec)
    segments: tuple[SegmentTemplate, ...] = (DEFAULT_SEGMENT,)
    prefetch: PrefetchSpec = field(default_factory=PrefetchSpec)
    explicit_id: str | None = None
    #: The ``[compare]`` table (None: the batch names no segmentations to compare).
    compare: CompareSpec | None = None

    @property
    def key(self) -> str:
        """Stable identity of the batch for the progress store.

        The ``id`` key of the batch file when given (set it to keep progress when the batch file
        moves), else derived from the batch's absolute path.
        """
        if self.explicit_id:
            return self.explicit_id
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return f"{self.name}#{digest}"


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}Allowed keys: {', '.join(allowed)}."


def load_batch(path: str | os.PathLike[str]) -> BatchDefinition:
    """Load a batch from a TOML batch file, a bare CSV table or a bare DICOM folder.

    Raises
    ------
    BatchDefinitionError
        When the path is missing or the batch file is invalid; the message names the file, the
        key and its line, and the fix.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BatchDefinitionError(
            path,
            "no such file or folder.",
            fix="give a batch .toml file, a .csv table or a DICOM folder that exists.",
        )
    path = path.absolute()
    if path.is_dir():
        return _bare_folder(path)
    if path.suffix.lower() in CSV_SUFFIXES:
        return BatchDefinition(
            name=path.stem,
            path=path,
            source=SourceSpec("csv", {"path": str(path)}, path.parent, path),
            output=OutputSpec(format="seg.nrrd"),
        )
    if path.suffix.lower() == ".toml":
        return _parse_toml(path)
    raise BatchDefinitionError(
        path,
        f"{path.suffix or 'a file without extension'} is not a batch.",
        fix="give a .toml batch file, a .csv table (SlicerCaseIterator style) or a DICOM folder.",
    )


def _bare_folder(path: Path) -> BatchDefinition:
    if (path / "ctkDICOM.sql").is_file():
        source_type = "slicer-db"
    elif (path / DICOM_DB_INDEX).is_file():
        source_type = "dicom-db"
    else:
        source_type = "dicom-folder"
    return BatchDefinition(
        name=path.name,
        path=path,
        source=SourceSpec(source_type, {"path": str(path)}, path, path),
        output=OutputSpec(format="dicom-seg"),
    )


def _parse_toml(path: Path) -> BatchDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchDefinitionError(path, f"cannot read the batch file: {exc}.") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute; its message has "at line N".
        found = re.search(r"at line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        raise BatchDefinitionError(
            path,
            f"not valid TOML: {exc}.",
            line=line,
            fix="check quotes, brackets and '=' on that line.",
        ) from exc
    locator = KeyLocator(text)

    def error(key: str, message: str, fix: str | None = None) -> BatchDefinitionError:
        return BatchDefinitionError(path, message, line=locator.line_of(key), key=key, fix=fix)

    for key in data:
        if key not in _TOP_KEYS:
            raise error(key, f"unknown top-level key {key!r}.", _suggest(key, _TOP_KEYS))

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise error("name", f"name must be a non-empty string, got {name!r}.")
    explicit_id = data.get("id")
    if explicit_id is not None and (not isinstance(explicit_id, str) or not explicit_id):
        raise error("id", f"id must be a non-empty string, got {explicit_id!r}.")

    source = _parse_source(data, path, locator, error)
    output = _parse_output(data.get("output", {}), path, source, error)
    segments = _parse_segments(data.get("segments"), error)
    prefetch = _parse_prefetch(data.get("prefetch", {}), error)
    compare = _parse_compare(data["compare"], source, error) if "compare" in data else None
    return BatchDefinition(
        name=name.strip(),
        path=path,
        source=source,
        output=output,
        segments=segments,
        prefetch=prefetch,
        explicit_id=explicit_id,
        compare=compare,
    )


def _parse_source(data: dict, path: Path, locator: KeyLocator, error) -> SourceSpec:
    table = data.get("source")
    if table is None:
        raise error(
            "source",
            "the batch has no [source] table.",
            fix='add [source] with type = "csv" | "dicom-folder" | "dicom-db" | "slicer-db" | '
            '"dicomweb" and that type\'s keys.',
        )
    if not isinstance(table, dict):
        raise error("source", "source must be a table: write [source] on its own line.")
    source_type = table.get("type")
    if source_type not in SOURCE_TYPES:
        raise error(
            "source.type",
            f"source type {source_type!r} is not known."
            if source_type
            else "[source] has no type.",
            fix=f"set type to one of: {', '.join(SOURCE_TYPES)}.",
        )
    options = {k: v for k, v in table.items() if k != "type"}
    return SourceSpec(source_type, options, path.parent, path, locator)


def _parse_output(table: Any, path: Path, source: SourceSpec, error) -> OutputSpec:
    if not isinstance(table, dict):
        raise error("output", "output must be a table: write [output] on its own line.")
    for key in table:
        if key not in _OUTPUT_KEYS:
            raise error(
                f"output.{key}", f"unknown key {key!r} in [output].", _suggest(key, _OUTPUT_KEYS)
            )
    default_format = "seg.nrrd" if source.type == "csv" else "dicom-seg"
    fmt = table.get("format", default_format)
    if fmt not in OUTPUT_FORMATS:
        raise error(
            "output.format",
            f"output format {fmt!r} is not known.",
            f"use one of: {', '.join(OUTPUT_FORMATS)}.",
        )
    seg_type = table.get("seg_type", "binary")
    if seg_type not in SEG_TYPES:
        raise error(
            "output.seg_type",
            f"seg_type {seg_type!r} is not known.",
            "use binary (any segments) or labelmap (smaller; segments must not overlap).",
        )
    destination = table.get("destination", "source")
    if not isinstance(destination, str) or not destination:
        raise error(
            "output.destination", f'destination must be "source" or a folder, got {destination!r}.'
        )
    if destination == "source":
        return OutputSpec(format=fmt, seg_type=seg_type)
    folder = Path(destination).expanduser()
    if not folder.is_absolute():
        folder = path.parent / folder
    if folder.exists() and not folder.is_dir():
        raise error(
            "output.destination",
            f"destination {folder} exists and is not a folder.",
            'use "source" or a folder path.',
        )
    return OutputSpec(format=fmt, folder=folder, seg_type=seg_type)


def _parse_segments(entries: Any, error) -> tuple[SegmentTemplate, ...]:
    if entries is None:
        return (DEFAULT_SEGMENT,)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise error(
            "segments",
            "segments must be [[segments]] tables.",
            "write each segment as a [[segments]] table with name, category, type, color.",
        )
    templates = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"segments[{index}]"
        for key in entry:
            if key not in _SEGMENT_KEYS:
                raise error(
                    f"{where}.{key}",
                    f"unknown key {key!r} in segment {index + 1}.",
                    _suggest(key, _SEGMENT_KEYS),
                )
        for key in ("name", "category", "type", "color"):
            if key not in entry:
                raise error(
                    where + ".name",
                    f"segment {index + 1} has no {key!r}.",
                    f"add {key} = ... to that [[segments]] table.",
                )
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise error(f"{where}.name", f"segment {index + 1} name must be a non-empty string.")
        if name in names:
            raise error(
                f"{where}.name",
                f"segment name {name!r} is used twice.",
                "give each segment its own name.",
            )
        names.add(name)
        codes = {}
        for key in ("category", "type", "region"):
            if key in entry:
                try:
                    codes[key] = Code.parse(entry[key])
                except ValueError as exc:
                    raise error(
                        f"{where}.{key}",
                        f"segment {name!r} {key}: {exc}.",
                        "write SCHEME:CODE:Meaning with a SNOMED CT code.",
                    ) from exc
        try:
            color = parse_color(entry["color"])
        except ValueError as exc:
            raise error(f"{where}.color", f"segment {name!r}: {exc}.") from exc
        templates.append(
            SegmentTemplate(
                name=name.strip(),
                category=codes["category"],
                type=codes["type"],
                region=codes.get("region"),
                color=color,
            )
        )
    return tuple(templates) or (DEFAULT_SEGMENT,)


def _parse_prefetch(table: Any, error) -> PrefetchSpec:
    if not isinstance(table, dict):
        raise error("prefetch", "prefetch must be a table: write [prefetch] on its own line.")
    for key in table:
        if key not in _PREFETCH_KEYS:
            raise error(
                f"prefetch.{key}",
                f"unknown key {key!r} in [prefetch].",
                _suggest(key, _PREFETCH_KEYS),
            )
    depth = table.get("depth", 2)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 32:
        raise error("prefetch.depth", f"depth must be a whole number from 0 to 32, got {depth!r}.")
    memory = table.get("max_memory_mb", default_cache_mb())
    if not isinstance(memory, int) or isinstance(memory, bool) or memory < 64:
        raise error(
            "prefetch.max_memory_mb",
            f"max_memory_mb must be a whole number of at least 64, got {memory!r}.",
        )
    return PrefetchSpec(depth=depth, max_memory_mb=memory)


def _parse_compare(table: Any, source: SourceSpec, error) -> CompareSpec:
    if not isinstance(table, dict):
        raise error("compare", "compare must be a table: write [compare] on its own line.")
    for key in table:
        if key not in _COMPARE_KEYS:
            raise error(
                f"compare.{key}", f"unknown key {key!r} in [compare].", _suggest(key, _COMPARE_KEYS)
            )
    resample = table.get("resample", False)
    if not isinstance(resample, bool):
        raise error("compare.resample", f"resample must be true or false, got {resample!r}.")
    columns = table.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c.strip() for c in columns):
        raise error(
            "compare.columns",
            f"columns must be a list of CSV column names, got {columns!r}.",
            'write columns = ["mask", "prediction"].',
        )
    columns = [c.strip() for c in columns]
    rules = _parse_compare_series(table.get("series", []), error)
    if columns and rules:
        raise error(
            "compare.series",
            "[compare] names both CSV columns and SEG series.",
            "use columns for a csv batch, [[compare.series]] for a DICOM batch.",
        )
    if source.type == "csv" and rules:
        raise error(
            "compare.series",
            "[[compare.series]] finds DICOM SEG series, but this is a csv batch.",
            'name the CSV columns instead: columns = ["mask", "prediction"].',
        )
    if source.type != "csv" and columns:
        raise error(
            "compare.columns",
            f"columns name CSV columns, but this is a {source.type} batch.",
            "describe each SEG series in a [[compare.series]] table (name, reader, description).",
        )
    names = columns or [r.name for r in rules]
    if len(names) < 2:
        raise error(
            "compare",
            f"[compare] names {len(names)} segmentation(s); a comparison needs at least two.",
            'write columns = ["mask", "prediction"] (csv) or two [[compare.series]] tables.',
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        key = "compare.columns" if columns else "compare.series"
        raise error(key, f"{twice[0]!r} is named twice in [compare].", "name each one once.")
    reference = table.get("reference", names[0])
    if reference not in names:
        raise error(
            "compare.reference",
            f"reference {reference!r} is not one of the compared segmentations.",
            f"use one of: {', '.join(names)}.",
        )
    return CompareSpec(columns=tuple(columns), series=rules, reference=reference, resample=resample)


def _parse_compare_series(entries: Any, error) -> tuple[SegSeriesRule, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise error(
            "compare.series",
            "series must be [[compare.series]] tables.",
            "write each SEG series as a [[compare.series]] table with name and reader or "
            "description.",
        )
    rules = []
    for index, entry in enumerate(entries):
        where = f"compare.series[{index}]"
        for key in entry:
            if key not in _COMPARE_SERIES_KEYS:
                raise error(
                    f"{where}.{key}",
                    f"unknown key {key!r} in [[compare.series]] {index + 1}.",
                    _suggest(key, _COMPARE_SERIES_KEYS),
                )
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise error(
                f"{where}.name",
                f"[[compare.series]] {index + 1} needs a name, got {name!r}.",
                'add name = "AI" (the name shown in tables).',
            )
        values = {}
        for key in ("reader", "description"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise error(f"{where}.{key}", f"{key} must be a non-empty string, got {value!r}.")
            values[key] = value
        if not values["reader"] and not values["description"]:
            raise error(
                f"{where}.name",
                f"[[compare.series]] {name!r} says neither reader nor description.",
                'add reader = "<ContentCreatorName>" and/or description = "<regular expression>".',
            )
        if values["description"]:
            try:
                re.compile(values["description"])
            except re.error as exc:
                raise error(
                    f"{where}.description",
                    f"description {values['description']!r} is not a regular expression: {exc}.",
                    "escape special characters such as ( ) [ ] with a backslash.",
                ) from exc
        rules.append(SegSeriesRule(name.strip(), values["reader"], values["description"]))
    return tuple(rules)
