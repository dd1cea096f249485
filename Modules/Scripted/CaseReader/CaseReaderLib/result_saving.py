"""Turning the reader's segmentation into the core's result and handing it to the results layer.

On the GUI thread the segmentation node's label layers are only copied as they are
(:func:`snapshot_layers`: milliseconds); a worker pads them onto the image grid, builds the
DICOM SEG / ``.seg.nrrd`` and writes it (:meth:`ResultSaver.save`), so saving never freezes the
window. Writing and sending belong to the core's results modules (seg_dicom, seg_nrrd,
result_store, outbox); this module only chooses the formats the batch asks for. It also finds
the case's starting point (the reader's newest result, or the pre-segmentation) off the GUI
thread and says where it came from in a few words.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from CaseIteratorCoreLib.batch_file import BatchDefinition
from CaseIteratorCoreLib.draft_store import LabelBlock, PaintedLayers
from CaseIteratorCoreLib.geometry import Geometry
from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.mrml_segmentation import (
    BINARY_LABELMAP,
    layer_block,
    segment_from_slicer,
    segment_tags,
)
from CaseIteratorCoreLib.segmentation import Segment, Segmentation
from CaseIteratorCoreLib.sources.base import BatchSource

from .segment_editing import SegmentEditing

log = logging.getLogger(__name__)

#: Core modules the results layer is made of (written in parallel with the reading window).
RESULT_MODULES = ("CaseIteratorCoreLib.result_store", "CaseIteratorCoreLib.seg_dicom")


@dataclass(frozen=True)
class SaveOutcome:
    """What a save did.

    Attributes
    ----------
    written
        Whether a result file (or outbox item) was written.
    refs
        Result references for the progress store (paths, SOP Instance UIDs).
    place
        Where it went, for the status line ("folder /data/...", "outbox for pacs").
    painted_voxels
        Voxels per segment, for the status line.
    """

    written: bool
    refs: tuple[str, ...]
    place: str
    painted_voxels: tuple[int, ...]


def snapshot_layers(editing: SegmentEditing, geometry: Geometry) -> PaintedLayers:
    """The reader's segments as painted boxes on ``geometry``: a copy safe to hand to a worker.

    GUI thread (it reads the segmentation node). Cheap: each shared label layer's scalars are
    copied as they are (cropped to the painted extent by the editor), nothing is padded onto the
    image grid or compared here; that happens in the worker (:meth:`PaintedLayers.
    to_segmentation`). Segments that overlap live in different layers and stay apart.
    """
    node = editing.node
    segment_ids = editing.segment_ids
    metas = list(editing.segments)
    if node is None or not segment_ids:
        return PaintedLayers(geometry, tuple(metas), (), ())
    vtk_segmentation = node.GetSegmentation()
    blocks: list[LabelBlock | None] = []
    layer_of: dict[str, int] = {}
    placement: list[tuple[int, int]] = []
    segments: list[Segment] = []
    for number, segment_id in enumerate(segment_ids):
        vtk_segment = vtk_segmentation.GetSegment(segment_id)
        image = vtk_segment.GetRepresentation(BINARY_LABELMAP)
        key = image.GetAddressAsString("vtkOrientedImageData") if image is not None else ""
        if not key or key not in layer_of:
            layer_of[key or segment_id] = len(blocks)
            blocks.append(layer_block(image, geometry, vtk_segment.GetName()))
        layer = layer_of[key or segment_id]
        placement.append((layer, max(1, int(vtk_segment.GetLabelValue()))))
        meta = metas[number] if number < len(metas) else None
        segments.append(
            segment_from_slicer(
                vtk_segment.GetName(), vtk_segment.GetColor(), segment_tags(vtk_segment), meta
            )
        )
    return PaintedLayers(geometry, tuple(segments), tuple(blocks), tuple(placement))


def describe_starting_point(point: Any) -> str:
    """Where a starting point came from, short: a file name or a server, never a temp path."""
    from CaseIteratorCoreLib.result_store import ResumeOrigin

    if point.origin is ResumeOrigin.PRESEGMENTATION:
        return f"starting from the pre-segmentation {point.path.name}"
    when = ""
    if point.saved_at is not None:
        stamp = point.saved_at.astimezone()
        today = datetime.now().astimezone().date()
        when = f" of {stamp:%H:%M}" if stamp.date() == today else f" of {stamp:%Y-%m-%d %H:%M}"
    if point.origin is ResumeOrigin.SERVER:
        where = point.place.split(" /")[0] if point.place else "the server"
        if point.series_number is not None:
            where += f", series {point.series_number}"
    elif point.origin is ResumeOrigin.DATABASE:
        where = "the local DICOM database"
    elif point.origin is ResumeOrigin.OUTBOX:
        where = f"{point.path.name}, waiting in the outbox"
    else:
        where = point.path.name
    return f"resumed from your save{when} ({where})"


def results_layer_available() -> bool:
    """Whether the core's result writers are installed."""
    return all(importlib.util.find_spec(name) is not None for name in RESULT_MODULES)


@dataclass(frozen=True, eq=False)
class StartingPoint:
    """What a case opens with: the reader's newest result or the batch's pre-segmentation.

    Attributes
    ----------
    segmentation
        Its voxels on the case's grid.
    description
        Where it came from, for the banner ("resumed from your save of 14:02 (liver.dcm)").
    saved_at
        When the reader saved it (seconds since the epoch); None for a pre-segmentation or
        when unknown.
    """

    segmentation: Segmentation
    description: str
    saved_at: float | None


class ResultSaver:
    """Saves results of one reader's batch.

    Parameters
    ----------
    batch
        The batch (its ``[output]`` says where results go).
    reader
        The reader, named in every result.
    source
        The batch's open source: a DICOMweb source gives the server results go back to and
        the local DICOM database a SEG found on the server is cached in.
    """

    def __init__(
        self, batch: BatchDefinition, reader: str, source: BatchSource | None = None
    ) -> None:
        self.batch = batch
        self.reader = reader
        self.source = source
        self._result_store = None
        self._store_lock = threading.Lock()  # saves and resume lookups run on worker threads
        #: Starting points found in the loader's worker thread, taken on the GUI thread.
        self._resume: dict[str, StartingPoint] = {}
        self._resume_lock = threading.Lock()
        #: Applied to a found segmentation in the worker (the window orders segments with it).
        self.arrange: Callable[[Segmentation], Segmentation] | None = None
        #: Asked (case id) what a result was started from (comparison mode): an object with
        #: ``seg_headers`` and ``description``, or None when nothing.
        self.provenance: Callable[[str], Any] | None = None

    def save(self, layers: PaintedLayers, loaded: LoadedCase) -> SaveOutcome:
        """Save ``layers`` (a snapshot of the reader's segments) as ``loaded``'s result.

        Runs on a worker thread: the full-grid layers, the SEG and the files are made here.

        Returns
        -------
        SaveOutcome
            ``written`` is False while the results layer is not installed.
        """
        counts = layers.voxel_counts()  # in the painted boxes: no full-grid pass
        segmentation = layers.to_segmentation()
        if not results_layer_available():
            log.info(
                "case %s: results layer not installed; %d painted voxels not written",
                loaded.case.label,
                int(np.sum(counts)),
            )
            return SaveOutcome(False, (), "", counts)
        return self._write(segmentation, loaded, counts)

    def warm_up(self) -> None:
        """Load what the first save would load (worker thread, at start).

        highdicom parses its tables of the DICOM standard (several MB of JSON) on first use,
        holding the GIL for about a second: done while the first case opens, it does not
        freeze the window at the reader's first save.
        """
        if not results_layer_available():
            return
        import CaseIteratorCoreLib.seg_dicom  # noqa: F401 - imports highdicom

        try:
            from highdicom import _standard_utils as standard
        except ImportError:  # a highdicom without these tables: nothing to warm
            return
        for name in (
            "get_sop_class_iod_map",
            "get_iod_module_map",
            "get_module_attribute_map",
            "get_anatomic_region_map",
        ):
            loader = getattr(standard, name, None)
            if loader is not None:
                loader()

    def prepare_resume(self, loaded: LoadedCase) -> None:
        """Find and read the reader's newest result of ``loaded``'s case (worker thread).

        Else the batch's pre-segmentation. What is found waits for :meth:`take_resume`.
        """
        if not results_layer_available():
            return
        from CaseIteratorCoreLib.result_store import ResumeLookupError, ResumeOrigin
        from CaseIteratorCoreLib.seg_dicom import read_dicom_seg
        from CaseIteratorCoreLib.seg_nrrd import read_seg_nrrd

        note = ""
        try:
            point = self._store().find_latest(loaded.case)
        except ResumeLookupError as exc:  # server unreachable: the best local copy, said so
            point, note = exc.fallback, f" (the server could not be searched: {exc})"
        if point is None:
            with self._resume_lock:
                self._resume.pop(loaded.case.id, None)
            return
        geometry = loaded.image.volume.geometry
        templates = self.batch.segments
        if point.kind == "dicom-seg":
            found = read_dicom_seg(point.path, loaded.image.dicom, geometry, templates=templates)
        else:
            found = read_seg_nrrd(point.path, geometry, templates=templates)
        if self.arrange is not None:
            found = self.arrange(found)
        own = point.origin is not ResumeOrigin.PRESEGMENTATION and point.saved_at is not None
        starting = StartingPoint(
            found,
            describe_starting_point(point) + note,
            point.saved_at.timestamp() if own else None,
        )
        with self._resume_lock:
            self._resume[loaded.case.id] = starting

    def peek_resume(self, case_id: str) -> StartingPoint | None:
        """The starting point found for ``case_id``, left in place (any thread)."""
        with self._resume_lock:
            return self._resume.get(case_id)

    def take_resume(self, case_id: str) -> StartingPoint | None:
        """The starting segmentation found for ``case_id`` and where it came from."""
        with self._resume_lock:
            return self._resume.pop(case_id, None)

    def _store(self):
        """The core's result store of this batch (made once, on first use, from any thread)."""
        with self._store_lock:
            if self._result_store is None:
                from CaseIteratorCoreLib.result_store import ResultStore

                server = getattr(self.source, "server", None)  # DICOMweb sources only
                self._result_store = ResultStore(
                    self.batch,
                    self.reader,
                    servers=[server] if server is not None else [],
                    cache=getattr(self.source, "cache", None) if server is not None else None,
                )
            return self._result_store

    def _write(
        self, segmentation: Segmentation, loaded: LoadedCase, counts: tuple[int, ...]
    ) -> SaveOutcome:
        from CaseIteratorCoreLib.result_store import provenance_fields
        from CaseIteratorCoreLib.seg_dicom import SegKind, build_dicom_seg
        from CaseIteratorCoreLib.seg_nrrd import write_seg_nrrd

        store = self._store()
        output = self.batch.output
        dicom = loaded.image.dicom
        seg_dataset = None
        derived = self.provenance(loaded.case.id) if self.provenance is not None else None
        if dicom is not None and (output.format == "dicom-seg" or self.batch.source.type == "csv"):
            kind = SegKind.LABELMAP if output.seg_type == "labelmap" else SegKind.BINARY
            seg_dataset = build_dicom_seg(
                segmentation,
                dicom,
                reader=self.reader,
                series_number=_next_series_number(dicom),
                kind=kind,
                derived_from_segmentations=derived.seg_headers if derived else (),
                derivation_description=derived.description if derived else None,
            )
        with tempfile.TemporaryDirectory(prefix="caseiterator-save-") as folder:
            nrrd = None
            if output.format == "seg.nrrd" or dicom is None:
                nrrd = write_seg_nrrd(
                    segmentation, Path(folder) / "result.seg.nrrd", keep_previous=False
                )
            saved = store.save(
                loaded.case,
                seg_dataset=seg_dataset,
                seg_nrrd_path=nrrd,
                provenance=provenance_fields(
                    loaded.case, derived_from=derived.description if derived else None
                ),
            )
        if saved.outbox_item is not None:
            # Send now in the background; what cannot be sent stays in the outbox on disk and
            # is retried (caseiterator outbox --retry, or the next save).
            threading.Thread(target=store.outbox.send_due, name="outbox-send", daemon=True).start()
        log.info("case %s saved: %s", loaded.case.label, saved.place)
        return SaveOutcome(True, saved.refs, saved.place, counts)


def _next_series_number(dicom) -> int:
    """A SeriesNumber above the source's that grows with every save, across sessions.

    Minutes since 2020 increase with each save without asking the server what exists; the
    source's number + 1 wins for sources numbered higher than that.
    """
    try:
        source = int(dicom.header.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        source = 0
    return max(source + 1, int((time.time() - 1_577_836_800) // 60))
