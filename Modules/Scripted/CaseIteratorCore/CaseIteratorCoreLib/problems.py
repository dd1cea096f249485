"""Problems found in a case: a code for programs, a message for readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How bad a problem is: an ``ERROR`` stops the case from loading, a ``WARNING`` does not."""

    ERROR = "error"
    WARNING = "warning"


class ProblemCode(StrEnum):
    """Stable identifiers of the problems a case can have."""

    MISSING_FILE = "missing-file"
    UNREADABLE_FILE = "unreadable-file"
    NOT_AN_IMAGE = "not-an-image"
    SINGLE_SLICE = "single-slice"
    MISSING_SLICE = "missing-slice"
    NONUNIFORM_SPACING = "nonuniform-spacing"
    DUPLICATE_POSITION = "duplicate-position"
    MIXED_ORIENTATION = "mixed-orientation"
    MIXED_SIZE = "mixed-size"
    MIXED_PIXEL_SPACING = "mixed-pixel-spacing"
    MISSING_GEOMETRY = "missing-geometry"
    GANTRY_TILT = "gantry-tilt"
    UNSUPPORTED_PIXELS = "unsupported-pixels"
    UNDECODABLE = "undecodable"
    MULTIPLE_SERIES = "multiple-series"
    MASK_GEOMETRY_MISMATCH = "mask-geometry-mismatch"
    MASK_NOT_LABELS = "mask-not-labels"
    EMPTY_CELL = "empty-cell"
    FETCH_FAILED = "fetch-failed"
    OUTSIDE_ALLOWED_FOLDERS = "outside-allowed-folders"
    LOCALIZER_LEFT_OUT = "localizer-left-out"
    SHEARED_GRID = "sheared-grid"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a case.

    Parameters
    ----------
    code
        Machine-readable kind of problem.
    message
        Sentence for the reader, naming the file, slice or position concerned.
    severity
        ``ERROR`` (the case cannot be read) or ``WARNING`` (it can, but look).
    """

    code: ProblemCode
    message: str
    severity: Severity = field(default=Severity.ERROR)

    @property
    def is_error(self) -> bool:
        """Whether this problem stops the case from loading."""
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        return self.message


def has_errors(problems: tuple[Problem, ...] | list[Problem]) -> bool:
    """Return whether any of ``problems`` stops loading."""
    return any(p.is_error for p in problems)
