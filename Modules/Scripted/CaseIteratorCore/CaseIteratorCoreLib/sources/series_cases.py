"""One case per DICOM series: how every DICOM input mode names and describes its cases."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..cases import Case, DicomSeriesRef, ResultTarget
from ..dicom_files import non_image_reason
from ..series_selection import SeriesRule, SeriesSummary
from .base import safe_stem


def case_from_series(summary: SeriesSummary, index: int, origin: str) -> Case:
    """Make the case of one DICOM series, the same way for every DICOM source.

    Parameters
    ----------
    summary
        What is known of the series (from headers, a database or a QIDO-RS answer); ``files``
        may be empty for sources that fetch on demand.
    index
        Position of the case in the batch.
    origin
        Where the series came from (folder, database folder or DICOMweb URL), for results.
    """
    patient = summary.patient_id or summary.patient_name or "unknown patient"
    date = summary.study_date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    label = summary.description or f"series {summary.series_number or ''}".strip()
    name = " · ".join(p for p in (patient, date, label) if p)
    stem = safe_stem(f"{patient}_{summary.series_number or ''}_{summary.description}")
    folder = (
        Path(os.path.commonpath([str(f.parent) for f in summary.files])) if summary.files else None
    )
    ref = DicomSeriesRef(
        role="image",
        study_uid=summary.study_uid,
        series_uid=summary.series_uid,
        files=summary.files,
        n_instances=summary.n_images or None,
    )
    details = {
        "patient_id": summary.patient_id,
        "patient_name": summary.patient_name,
        "study_date": summary.study_date,
        "study_description": summary.study_description,
        "modality": summary.modality,
        "series_description": summary.description,
        "series_number": "" if summary.series_number is None else str(summary.series_number),
        "images": str(summary.n_images),
    }
    return Case(
        id=summary.series_uid,
        name=name,
        index=index,
        images=(ref,),
        result=ResultTarget(
            stem=stem,
            folder=folder,
            study_uid=summary.study_uid,
            series_uid=summary.series_uid,
            origin=origin,
        ),
        details=details,
    )


def series_sort_key(summary: SeriesSummary) -> tuple:
    """Batch order of series: patient, study date, study, series number, series UID."""
    return (
        summary.patient_id,
        summary.study_date,
        summary.study_uid,
        summary.series_number or 0,
        summary.series_uid,
    )


def select_image_series(
    summaries: Iterable[SeriesSummary],
    rule: SeriesRule,
    skip: Callable[[str, str], None],
    where: Callable[[SeriesSummary], object],
) -> list[SeriesSummary]:
    """The image series ``rule`` selects; every other series goes to ``skip`` with its reason.

    Parameters
    ----------
    summaries
        The series found, in batch order.
    rule
        The batch's ``[source.series]`` rule.
    skip
        ``skip(path, reason)``: records a skipped item (``BatchSource._skip``).
    where
        The path (or address) shown for a skipped series.
    """
    images = []
    for summary in summaries:
        reason = non_image_reason(summary.sop_class_uid, summary.modality)
        if reason:
            skip(
                str(where(summary)),
                f"series {summary.description!r} ({summary.series_uid}) is {reason}, not an image",
            )
        else:
            images.append(summary)
    chosen, rejected = rule.select(images)
    for summary, reason in rejected:
        skip(
            str(where(summary)),
            f"series {summary.description!r} ({summary.series_uid}) not selected: {reason}",
        )
    return chosen
