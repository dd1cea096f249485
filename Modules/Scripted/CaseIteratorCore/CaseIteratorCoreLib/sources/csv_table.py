"""CSV table batches, compatible with SlicerCaseIterator's tables of image and mask paths.

Path resolution follows SlicerCaseIterator: an absolute path is used as it is; otherwise it is
joined to the row's root column (default ``path``); if still relative, it is relative to the
folder of the CSV file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from ..batch_file import BatchDefinition, SourceSpec
from ..cases import Case, ImageFileRef, ImageRef, ResultTarget
from ..errors import BatchDefinitionError
from ..problems import Problem, ProblemCode, Severity
from ..tasks import CancelToken, ProgressCallback, check_cancel, no_progress
from .base import BatchSource, safe_stem, unique_id

KEYS = (
    "path",
    "image_column",
    "mask_column",
    "root_column",
    "root",
    "id_column",
    "additional_image_columns",
    "additional_mask_columns",
    "delimiter",
)
#: Default id columns, in order of preference (as SlicerCaseIterator).
ID_COLUMNS = ("ID", "patient")
_IMAGE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gz")


class CsvTableSource(BatchSource):
    """A batch listed in a CSV table, one case per row.

    ``[source]`` keys: ``path`` (the CSV file), ``image_column`` (default ``image``),
    ``mask_column`` (``mask``), ``root_column`` (``path``), ``root`` (a folder used when the row
    has no root), ``id_column`` (``ID`` then ``patient``), ``additional_image_columns`` and
    ``additional_mask_columns`` (lists), ``delimiter`` (guessed from the header otherwise).
    """

    type = "csv"

    def __init__(
        self,
        batch: BatchDefinition,
        table: Path,
        columns: dict,
        root: Path | None,
        delimiter: str | None,
    ) -> None:
        super().__init__(batch)
        self.table = table
        self._columns = columns
        self._root = root
        self._delimiter = delimiter
        self._count: int | None = None

    @classmethod
    def from_batch(cls, batch: BatchDefinition) -> CsvTableSource:
        spec: SourceSpec = batch.source
        spec.check_keys(KEYS)
        table = spec.path("path")
        assert table is not None
        if not table.is_file():
            raise spec.error("path", f"{table} is not a file.", fix="point path at the CSV table.")
        columns = {
            "image": _string(spec, "image_column", "image"),
            "mask": _string(spec, "mask_column", "mask"),
            "root": _string(spec, "root_column", "path"),
            "id": _string(spec, "id_column", None),
            "images": _string_list(spec, "additional_image_columns"),
            "masks": _string_list(spec, "additional_mask_columns"),
            "explicit": {k for k in ("mask_column", "root_column") if k in spec.options},
            # [compare] columns are masks of the case too (role = column name).
            "compare": list(batch.compare.columns) if batch.compare else [],
        }
        known = [columns["mask"], *columns["masks"]]
        # Columns only compared (a model's prediction): a missing file there is a warning, the
        # case still opens for reading and the comparison names the file.
        columns["compared_only"] = [c for c in columns["compare"] if c not in known]
        columns["masks"] += columns["compared_only"]
        root = spec.path("root", required=False) if "root" in spec.options else None
        delimiter = _string(spec, "delimiter", None)
        if delimiter is not None and len(delimiter) != 1:
            raise spec.error("delimiter", f"delimiter must be one character, got {delimiter!r}.")
        source = cls(batch, table, columns, root, delimiter)
        source._read_header()  # refuse a table without its columns at load, not mid-batch
        return source

    def describe(self) -> str:
        return f"CSV table {self.table}"

    def _read_rows(self) -> tuple[list[str], Iterator[list[str]], io.TextIOBase]:
        try:
            handle = self.table.open(newline="", encoding="utf-8-sig")
            sample = handle.read(8192)
        except (OSError, UnicodeDecodeError) as exc:
            raise BatchDefinitionError(
                self.table, f"cannot read the CSV table: {exc}.", fix="save it as UTF-8 text."
            ) from exc
        handle.seek(0)
        delimiter = self._delimiter
        if delimiter is None:
            try:
                delimiter = (
                    csv.Sniffer()
                    .sniff(sample.splitlines()[0] if sample else "", delimiters=",;\t")
                    .delimiter
                )
            except csv.Error:
                delimiter = ","
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            handle.close()
            raise BatchDefinitionError(
                self.table,
                "the CSV table is empty (no header row).",
                line=1,
                fix="add a header row naming the columns.",
            )
        return [h.strip() for h in header], reader, handle

    def _read_header(self) -> list[str]:
        header, _, handle = self._read_rows()
        handle.close()
        spec = self.batch.source
        required = [("image_column", self._columns["image"])]
        if "mask_column" in self._columns["explicit"]:
            required.append(("mask_column", self._columns["mask"]))
        if "root_column" in self._columns["explicit"]:
            required.append(("root_column", self._columns["root"]))
        required += [("id_column", self._columns["id"])] if self._columns["id"] else []
        required += [("additional_image_columns", c) for c in self._columns["images"]]
        required += [
            ("additional_mask_columns", c)
            for c in self._columns["masks"]
            if c not in self._columns["compare"]
        ]
        for column in self._columns["compare"]:
            if column not in header:
                line = spec.locator.line_of("compare.columns") if spec.locator else None
                raise BatchDefinitionError(
                    self.batch.path,
                    f"[compare] names column {column!r}, which the CSV table {self.table} does "
                    "not have.",
                    line=line,
                    key="compare.columns",
                    fix=f"use columns of the table ({', '.join(header)}).",
                )
        for key, column in required:
            if column not in header:
                fix = (
                    f'rename the column in the CSV or set {key} = "<column>" under [source] '
                    f"(columns found: {', '.join(header)})."
                )
                if spec.locator is None:  # a bare CSV: the table itself is the batch
                    raise BatchDefinitionError(
                        self.table,
                        f"the CSV table has no column {column!r}.",
                        line=1,
                        key=column,
                        fix=f"columns found: {', '.join(header)}; name the image "
                        "column 'image' (or use a batch .toml with image_column).",
                    )
                raise spec.error(
                    key, f"the CSV table {self.table} has no column {column!r}.", fix=fix
                )
        return header

    def count(self) -> int:
        """Number of rows (cases) in the table."""
        if self._count is None:
            _, rows, handle = self._read_rows()
            with handle:
                self._count = sum(1 for row in rows if any(cell.strip() for cell in row))
        return self._count

    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        header, rows, handle = self._read_rows()
        self._skipped.clear()
        cols = self._columns
        id_column = cols["id"] or next((c for c in ID_COLUMNS if c in header), None)
        taken: set[str] = set()
        index = 0
        with handle:
            for line_number, row in enumerate(rows, start=2):
                check_cancel(cancel)
                if not any(cell.strip() for cell in row):
                    continue
                values = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
                yield self._case(values, line_number, index, id_column, taken)
                index += 1
        self._count = index

    def _case(
        self, values: dict[str, str], line: int, index: int, id_column: str | None, taken: set[str]
    ) -> Case:
        cols = self._columns
        where = f"row {line} of {self.table.name}"
        problems: list[Problem] = []
        root = values.get(cols["root"], "") or (str(self._root) if self._root else "")

        def ref(
            column: str, role: str, required: bool, missing_ok: bool = False
        ) -> ImageRef | None:
            text = values.get(column, "")
            if not text:
                if required:
                    problems.append(
                        Problem(
                            ProblemCode.EMPTY_CELL, f"{where}: no image given in column {column!r}"
                        )
                    )
                return None
            path = self.resolve(text, root)
            refused = self.batch.source.outside_allowed_folders(path)
            if refused is not None:
                problems.append(
                    Problem(
                        ProblemCode.OUTSIDE_ALLOWED_FOLDERS,
                        f"{where}, column {column!r}: {refused}; move the file into one of "
                        "them, or ask your site admin to allow it",
                    )
                )
            elif not path.exists():
                problems.append(
                    Problem(
                        ProblemCode.MISSING_FILE,
                        f"{where}, column {column!r}: file not found: {path}",
                        Severity.WARNING if missing_ok else Severity.ERROR,
                    )
                )
            return ImageFileRef(role=role, path=path)

        image = ref(cols["image"], "image", True)
        images = [image] if image else []
        images += [r for c in cols["images"] if (r := ref(c, c, False))]
        compared_only = set(cols.get("compared_only", ()))
        masks = [
            r
            for c in [cols["mask"], *cols["masks"]]
            if (r := ref(c, c, False, missing_ok=c in compared_only))
        ]

        base = (values.get(id_column) if id_column else "") or ""
        if not base and image is not None:
            base = _strip_suffix(image.path.name)
        case_id = unique_id(base or f"row-{line}", taken)
        name = base or case_id
        stem = _strip_suffix(image.path.name) if image is not None else safe_stem(case_id)
        folder = image.path.parent if image is not None else self.table.parent
        details = {"row": str(line)}
        if image is not None:
            details["image"] = str(image.path)
        return Case(
            id=case_id,
            name=name,
            index=index,
            images=tuple(images),
            masks=tuple(masks),
            result=ResultTarget(stem=safe_stem(stem), folder=folder, origin=str(self.table)),
            details=details,
            problems=tuple(problems),
        )

    def resolve(self, text: str, root: str) -> Path:
        """Resolve a path cell as SlicerCaseIterator does (see the module docstring)."""
        path = Path(text)
        if path.is_absolute():
            return path
        if root:
            path = Path(root) / path
            if path.is_absolute():
                return path
        return (self.table.parent / path).absolute()


def _strip_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def _string(spec: SourceSpec, key: str, default: str | None) -> str | None:
    value = spec.options.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise spec.error(key, f"{key} must be a non-empty string, got {value!r}.")
    return value.strip() if isinstance(value, str) else value


def _string_list(spec: SourceSpec, key: str) -> list[str]:
    value = spec.options.get(key, [])
    if isinstance(value, str):  # SlicerCaseIterator took comma-separated names
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise spec.error(
            key,
            f"{key} must be a list of column names, got {value!r}.",
            fix=f'write {key} = ["col1", "col2"].',
        )
    return value
