"""Cases and references to their images: the values a batch source yields.

A :class:`Case` is plain data (picklable, comparable) so it can travel to background workers and
be written to progress files; what is needed to *fetch* the pixels lives in the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .problems import Problem


@dataclass(frozen=True)
class ImageRef:
    """Where one image (or mask) of a case is. Subclasses say how it is stored."""

    #: Role in the case: ``image``, ``mask``, or the CSV column it came from.
    role: str

    def describe(self) -> str:
        """Short text naming the image for messages."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImageFileRef(ImageRef):
    """An image file SimpleITK reads (NRRD, NIfTI, MHA...) or a folder holding one DICOM series."""

    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class DicomSeriesRef(ImageRef):
    """A DICOM series identified by its UIDs; the source knows how to fetch its instances.

    ``files`` is filled by sources whose instances are already on disk (DICOM folder, local
    databases); network sources leave it empty and fetch on demand.
    """

    study_uid: str
    series_uid: str
    files: tuple[Path, ...] = ()
    #: Number of instances the source announced (QIDO-RS), to tell a complete cached copy.
    n_instances: int | None = None

    def describe(self) -> str:
        return f"series {self.series_uid}"


@dataclass(frozen=True)
class ResultTarget:
    """What a result of the case must reference and where it goes by default.

    Parameters
    ----------
    stem
        Base of result file names: ``<stem>_<reader>.seg.nrrd`` (as SlicerCaseIterator).
    folder
        Folder beside the source images, for ``destination = "source"`` with file batches.
    study_uid, series_uid
        The DICOM study and series a DICOM SEG must reference (None for non-DICOM images).
    origin
        Where the images came from (a DICOMweb server URL, a database folder), for sending the
        result back; None for plain files.
    """

    stem: str
    folder: Path | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Case:
    """One case of a batch.

    Parameters
    ----------
    id
        Stable identifier, unique in the batch (progress is stored under it).
    name
        What the reader sees in the case list.
    index
        Position in the batch, from 0.
    images
        The image references; the first is the main image the reader segments.
    masks
        Masks or pre-segmentations to start from (may be empty).
    result
        What a result must reference and where it goes.
    details
        Extra facts for the case list (patient, study date, modality, description).
    problems
        Problems already known when the case was listed (missing file, empty cell).
    """

    id: str
    name: str
    index: int
    images: tuple[ImageRef, ...]
    result: ResultTarget
    masks: tuple[ImageRef, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a case needs a non-empty id")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def __reduce__(self):  # MappingProxyType does not pickle; rebuild from a dict
        return (
            _rebuild_case,
            (
                self.id,
                self.name,
                self.index,
                self.images,
                self.result,
                self.masks,
                dict(self.details),
                self.problems,
            ),
        )

    @property
    def image(self) -> ImageRef | None:
        """The main image (None when the source listed the case without one)."""
        return self.images[0] if self.images else None

    @property
    def label(self) -> str:
        """``name`` with the id when they differ, for messages."""
        return self.name if self.name == self.id else f"{self.name} ({self.id})"


def _rebuild_case(*args: object) -> Case:
    return Case(*args)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SkippedItem:
    """A file or series a source left out of the batch, with the reason."""

    path: str
    reason: str
