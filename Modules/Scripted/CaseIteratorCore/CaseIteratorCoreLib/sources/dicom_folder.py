"""DICOM folder batches: every file under a folder is scanned, one case per selected series."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..batch_file import BatchDefinition
from ..cases import Case
from ..dicom_files import SCAN_TAGS, header_int, read_header
from ..errors import BatchDefinitionError
from ..series_selection import SeriesRule, SeriesSummary
from ..tasks import CancelToken, ProgressCallback, check_cancel, no_progress
from .base import BatchSource
from .series_cases import case_from_series, select_image_series, series_sort_key

KEYS = ("path", "series")


class DicomFolderSource(BatchSource):
    """Every DICOM series found (recursively) under ``path``, selected by ``[source.series]``.

    Files that are not DICOM or cannot be read, and series that are not images (SEG, SR,
    presentation states...) or not selected by the rule, are listed in :attr:`skipped` with the
    reason. Cases are ordered by patient, study date, study, series number.
    """

    type = "dicom-folder"

    def __init__(self, batch: BatchDefinition, folder: Path, rule: SeriesRule) -> None:
        super().__init__(batch)
        self.folder = folder
        self.rule = rule
        self._series: list[SeriesSummary] | None = None

    @classmethod
    def from_batch(cls, batch: BatchDefinition) -> DicomFolderSource:
        spec = batch.source
        spec.check_keys(KEYS)
        folder = spec.path("path")
        assert folder is not None
        if not folder.is_dir():
            raise spec.error(
                "path",
                f"{folder} is not a folder.",
                fix="point path at the folder holding the DICOM files.",
            )
        return cls(batch, folder, SeriesRule.from_spec(spec))

    def describe(self) -> str:
        return f"DICOM folder {self.folder}"

    def scan(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> list[SeriesSummary]:
        """Read every file's header once; group image files by series (cached)."""
        if self._series is not None:
            return self._series
        self._skipped.clear()
        paths = []
        for root, dirs, names in os.walk(self.folder):
            dirs.sort()
            paths.extend(Path(root) / n for n in sorted(names))
        series: dict[str, dict] = {}
        for done, path in enumerate(paths):
            if done % 50 == 0:
                check_cancel(cancel)
                progress(done, len(paths), f"scanning {path.parent.name}")
            refused = self.batch.source.outside_allowed_folders(path)
            if refused is not None:  # a link out of the folder
                self._skip(path, refused)
                continue
            ds, reason = read_header(path, tags=SCAN_TAGS)
            if ds is None:
                self._skip(path, reason or "unreadable")
                continue
            uid = str(ds.get("SeriesInstanceUID", ""))
            if not uid:
                self._skip(path, "DICOM file without SeriesInstanceUID")
                continue
            entry = series.setdefault(uid, {"ds": ds, "files": [], "frames": 0})
            entry["files"].append(path)
            entry["frames"] += header_int(ds, "NumberOfFrames", 1)
        progress(len(paths), len(paths), "scan complete")
        summaries = []
        for uid, entry in series.items():
            ds = entry["ds"]
            number = header_int(ds, "SeriesNumber", -1)
            summaries.append(
                SeriesSummary(
                    study_uid=str(ds.get("StudyInstanceUID", "")),
                    series_uid=uid,
                    modality=str(ds.get("Modality", "")),
                    description=str(ds.get("SeriesDescription", "")),
                    series_number=None if number < 0 else number,
                    n_images=entry["frames"],
                    patient_id=str(ds.get("PatientID", "")),
                    patient_name=str(ds.get("PatientName", "")),
                    study_date=str(ds.get("StudyDate", "")),
                    study_description=str(ds.get("StudyDescription", "")),
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    files=tuple(entry["files"]),
                )
            )
        summaries.sort(key=series_sort_key)
        self._series = summaries
        return summaries

    def iter_cases(
        self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
    ) -> Iterator[Case]:
        summaries = self.scan(progress, cancel)
        chosen = select_image_series(summaries, self.rule, self._skip, _series_path)
        if not chosen and not summaries:
            raise BatchDefinitionError(
                self.folder,
                "no DICOM files found in the folder"
                + (f" ({len(self._skipped)} other files skipped)" if self._skipped else "")
                + ".",
                fix="point the batch at the folder holding the DICOM series.",
            )
        for index, summary in enumerate(chosen):
            yield case_from_series(summary, index, str(self.folder))

    def count(self) -> int:
        """Number of cases (scans the folder on first use)."""
        return sum(1 for _ in self.iter_cases())


def _series_path(summary: SeriesSummary) -> Path:
    return summary.files[0].parent if summary.files else Path()


__all__ = ["DicomFolderSource"]
