"""Which series of a study become cases: the ``[source.series]`` rule of a batch file.

Example::

    [source.series]
    modality = ["CT"]              # one or several modalities
    description = "portal|venous"  # regular expression, case-insensitive, searched
    exclude_description = "scout|localizer"
    min_images = 20                # fewer images (slices or frames) is not a case
    per_study = "largest"          # all | largest | first | last (by SeriesNumber)
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .batch_file import SourceSpec

RULE_KEYS = ("modality", "description", "exclude_description", "min_images", "per_study")
PER_STUDY = ("all", "largest", "first", "last")


@dataclass(frozen=True)
class SeriesSummary:
    """What is known of a series before loading it (from headers or a QIDO-RS answer)."""

    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: int | None = None
    n_images: int = 0
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    sop_class_uid: str = ""
    files: tuple[Path, ...] = field(default=())


@dataclass(frozen=True)
class SeriesRule:
    """Selects the series that become cases; the default takes every image series."""

    modalities: tuple[str, ...] = ()
    description: re.Pattern[str] | None = None
    exclude_description: re.Pattern[str] | None = None
    min_images: int = 1
    per_study: str = "all"

    @classmethod
    def from_spec(cls, spec: SourceSpec) -> SeriesRule:
        """Read ``[source.series]`` from a source spec, naming any bad key and its line."""
        table = spec.options.get("series", {})
        if not isinstance(table, dict):
            raise spec.error("series", "series must be a table: write [source.series].")
        spec.check_keys(RULE_KEYS, table="series")
        modality = table.get("modality", [])
        if isinstance(modality, str):
            modality = [modality]
        if not isinstance(modality, list) or not all(isinstance(m, str) and m for m in modality):
            raise spec.error(
                "series.modality",
                f"modality must be a string or a list of strings, got {modality!r}.",
                fix='write modality = "CT" or modality = ["CT", "MR"].',
            )
        patterns = {}
        for key in ("description", "exclude_description"):
            text = table.get(key)
            if text is None:
                continue
            if not isinstance(text, str):
                raise spec.error(f"series.{key}", f"{key} must be a string, got {text!r}.")
            try:
                patterns[key] = re.compile(text, re.IGNORECASE)
            except re.error as exc:
                raise spec.error(
                    f"series.{key}",
                    f"{key} {text!r} is not a valid regular expression: {exc}.",
                    fix="escape special characters such as ( ) [ ] with a backslash.",
                ) from exc
        min_images = table.get("min_images", 1)
        if not isinstance(min_images, int) or isinstance(min_images, bool) or min_images < 1:
            raise spec.error(
                "series.min_images",
                f"min_images must be a whole number of at least 1, got {min_images!r}.",
            )
        per_study = table.get("per_study", "all")
        if per_study not in PER_STUDY:
            raise spec.error(
                "series.per_study",
                f"per_study {per_study!r} is not known.",
                fix=f"use one of: {', '.join(PER_STUDY)}.",
            )
        return cls(
            modalities=tuple(m.upper() for m in modality),
            description=patterns.get("description"),
            exclude_description=patterns.get("exclude_description"),
            min_images=min_images,
            per_study=per_study,
        )

    def why_not(self, series: SeriesSummary) -> str | None:
        """Say why ``series`` is left out by this rule, or None when it is selected."""
        if self.modalities and series.modality.upper() not in self.modalities:
            return f"modality {series.modality or '(none)'} is not {' or '.join(self.modalities)}"
        if self.description and not self.description.search(series.description):
            return f"description {series.description!r} does not match {self.description.pattern!r}"
        if self.exclude_description and self.exclude_description.search(series.description):
            return (
                f"description {series.description!r} matches excluded "
                f"{self.exclude_description.pattern!r}"
            )
        if series.n_images < self.min_images:
            return f"{series.n_images} images, fewer than min_images = {self.min_images}"
        return None

    def select(
        self, series: Iterable[SeriesSummary]
    ) -> tuple[list[SeriesSummary], list[tuple[SeriesSummary, str]]]:
        """Split ``series`` into the selected ones (input order kept) and the rest with reasons."""
        chosen, rejected = [], []
        for item in series:
            reason = self.why_not(item)
            if reason:
                rejected.append((item, reason))
            else:
                chosen.append(item)
        if self.per_study == "all":
            return chosen, rejected
        by_study: dict[str, list[SeriesSummary]] = defaultdict(list)
        for item in chosen:
            by_study[item.study_uid].append(item)
        keep: set[str] = set()
        for items in by_study.values():
            if self.per_study == "largest":
                best = max(items, key=lambda s: (s.n_images, -(s.series_number or 0)))
            else:
                ordered = sorted(items, key=lambda s: (s.series_number or 0, s.series_uid))
                best = ordered[0] if self.per_study == "first" else ordered[-1]
            keep.add(best.series_uid)
        for item in chosen:
            if item.series_uid not in keep:
                rejected.append(
                    (item, f"another series of the study was chosen ({self.per_study})")
                )
        return [s for s in chosen if s.series_uid in keep], rejected
