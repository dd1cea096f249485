"""Coded concepts for segment templates: ``SCHEME:CODE:Meaning`` strings and colours."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCHEME = re.compile(r"^[A-Z][A-Z0-9_.-]*$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

#: Coding scheme designators accepted without question (SNOMED CT and DICOM's own).
KNOWN_SCHEMES = ("SCT", "SRT", "DCM", "UMLS", "FMA")


@dataclass(frozen=True)
class Code:
    """A coded concept as DICOM uses it (scheme designator, code value, code meaning)."""

    scheme: str
    value: str
    meaning: str

    @classmethod
    def parse(cls, text: str) -> Code:
        """Parse ``SCHEME:CODE:Meaning`` (the meaning may itself contain colons).

        Raises
        ------
        ValueError
            When the text does not have three non-empty parts or the scheme is not upper case.
        """
        if not isinstance(text, str):
            raise ValueError(f"expected a string 'SCHEME:CODE:Meaning', got {text!r}")
        parts = text.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ValueError(
                f"{text!r} is not 'SCHEME:CODE:Meaning' (for example 'SCT:10200004:Liver')"
            )
        scheme, value, meaning = (p.strip() for p in parts)
        if not _SCHEME.match(scheme):
            raise ValueError(
                f"coding scheme {scheme!r} in {text!r} should be a designator such as 'SCT'"
            )
        return cls(scheme, value, meaning)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}:{self.meaning}"


def parse_color(text: str) -> tuple[int, int, int]:
    """Parse ``#rrggbb`` into an RGB triple of 0-255 integers.

    Raises
    ------
    ValueError
        When ``text`` is not a ``#rrggbb`` hex colour.
    """
    if not isinstance(text, str) or not _COLOR.match(text):
        raise ValueError(f"colour {text!r} is not '#rrggbb' (for example '#dd8265')")
    return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))


def format_color(rgb: tuple[int, int, int]) -> str:
    """Format an RGB triple as ``#rrggbb``."""
    return "#" + "".join(f"{c:02x}" for c in rgb)
