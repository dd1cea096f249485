"""Input modes of a batch: one :class:`BatchSource` subclass each."""

from __future__ import annotations

from ..batch_file import BatchDefinition
from ..errors import BatchDefinitionError
from .base import BatchSource
from .csv_table import CsvTableSource
from .dicom_db import DicomDatabaseSource
from .dicom_folder import DicomFolderSource
from .dicomweb import DicomWebSource
from .slicer_db import SlicerDicomDatabaseSource

#: The source class of each ``[source] type``; the DICOM networking modes register here too.
SOURCE_CLASSES: dict[str, type[BatchSource]] = {
    CsvTableSource.type: CsvTableSource,
    DicomFolderSource.type: DicomFolderSource,
    DicomDatabaseSource.type: DicomDatabaseSource,
    DicomWebSource.type: DicomWebSource,
    SlicerDicomDatabaseSource.type: SlicerDicomDatabaseSource,
}


def open_source(batch: BatchDefinition) -> BatchSource:
    """Build the source of ``batch`` (checking its ``[source]`` keys).

    Raises
    ------
    BatchDefinitionError
        When the source type is not available or its keys are wrong.
    """
    cls = SOURCE_CLASSES.get(batch.source.type)
    if cls is None:
        raise batch.source.error(
            "type",
            f"source type {batch.source.type!r} is not available in this version.",
            fix=f"use one of: {', '.join(sorted(SOURCE_CLASSES))}.",
        )
    return cls.from_batch(batch)


__all__ = [
    "SOURCE_CLASSES",
    "BatchDefinitionError",
    "BatchSource",
    "CsvTableSource",
    "DicomDatabaseSource",
    "DicomFolderSource",
    "DicomWebSource",
    "SlicerDicomDatabaseSource",
    "open_source",
]
