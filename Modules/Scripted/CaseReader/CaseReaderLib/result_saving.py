"""Turning the reader's segmentation into the core's result and handing it to the results layer.

The segmentation node's voxels become a core :class:`~CaseIteratorCoreLib.segmentation.
Segmentation` here (the shared label layers are read in place: milliseconds). Writing it (DICOM
SEG, ``.seg.nrrd``) and sending it belong to the core's results modules (seg_dicom, seg_nrrd,
result_store, outbox); this module only chooses the formats the batch asks for.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CaseIteratorCoreLib.batch_file import BatchDefinition
from CaseIteratorCoreLib.loading import LoadedCase
from CaseIteratorCoreLib.segmentation import Segmentation
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


def segmentation_of(editing: SegmentEditing, loaded: LoadedCase) -> Segmentation:
    """The reader's segments and voxels as a core segmentation on the case's image grid."""
    geometry = loaded.image.volume.geometry
    masks = [editing.mask(segment_id, geometry.shape) for segment_id in editing.segment_ids]
    if not masks:
        return Segmentation.empty(geometry, editing.segments)
    return Segmentation.from_masks(masks, geometry, editing.segments)


def results_layer_available() -> bool:
    """Whether the core's result writers are installed."""
    return all(importlib.util.find_spec(name) is not None for name in RESULT_MODULES)


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
        self._store_lock = threading.Lock()  # saves (GUI thread) and resume lookups (worker)
        #: Resume points found in the loader's worker thread, taken on the GUI thread.
        self._resume: dict[str, tuple[Segmentation, str]] = {}
        self._resume_lock = threading.Lock()

    def save(self, editing: SegmentEditing, loaded: LoadedCase) -> SaveOutcome:
        """Save the current segmentation of ``loaded``'s case.

        Returns
        -------
        SaveOutcome
            ``written`` is False while the results layer is not installed.
        """
        segmentation = segmentation_of(editing, loaded)
        counts = segmentation.voxel_counts()
        if not results_layer_available():
            log.info(
                "case %s: results layer not installed; %d painted voxels not written",
                loaded.case.label,
                int(np.sum(counts)),
            )
            return SaveOutcome(False, (), "", counts)
        return self._write(segmentation, loaded, counts)

    def prepare_resume(self, loaded: LoadedCase) -> None:
        """Find and read the reader's newest result of ``loaded``'s case (worker thread).

        Else the batch's pre-segmentation. What is found waits for :meth:`take_resume`.
        """
        if not results_layer_available():
            return
        from CaseIteratorCoreLib.result_store import ResumeLookupError
        from CaseIteratorCoreLib.seg_dicom import read_dicom_seg
        from CaseIteratorCoreLib.seg_nrrd import read_seg_nrrd

        note = ""
        try:
            point = self._store().find_latest(loaded.case)
        except ResumeLookupError as exc:  # server unreachable: the best local copy, said so
            point, note = exc.fallback, f" (the server could not be searched: {exc})"
        if point is None:
            return
        geometry = loaded.image.volume.geometry
        templates = self.batch.segments
        if point.kind == "dicom-seg":
            found = read_dicom_seg(point.path, loaded.image.dicom, geometry, templates=templates)
        else:
            found = read_seg_nrrd(point.path, geometry, templates=templates)
        with self._resume_lock:
            self._resume[loaded.case.id] = (found, point.describe() + note)

    def take_resume(self, case_id: str) -> tuple[Segmentation, str] | None:
        """The starting segmentation found for ``case_id`` and how to say where it came from."""
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
        from CaseIteratorCoreLib.seg_dicom import SegKind, build_dicom_seg
        from CaseIteratorCoreLib.seg_nrrd import write_seg_nrrd

        store = self._store()
        output = self.batch.output
        dicom = loaded.image.dicom
        seg_dataset = None
        if dicom is not None and (output.format == "dicom-seg" or self.batch.source.type == "csv"):
            kind = SegKind.LABELMAP if output.seg_type == "labelmap" else SegKind.BINARY
            seg_dataset = build_dicom_seg(
                segmentation,
                dicom,
                reader=self.reader,
                series_number=_next_series_number(dicom),
                kind=kind,
            )
        with tempfile.TemporaryDirectory(prefix="caseiterator-save-") as folder:
            nrrd = None
            if output.format == "seg.nrrd" or dicom is None:
                nrrd = write_seg_nrrd(
                    segmentation, Path(folder) / "result.seg.nrrd", keep_previous=False
                )
            saved = store.save(loaded.case, seg_dataset=seg_dataset, seg_nrrd_path=nrrd)
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
