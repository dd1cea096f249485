"""Drafts: the reader's unsaved segmentation of a case, kept on disk so that a crash loses nothing.

One file per batch, reader and case under the data folder
(``<data>/drafts/<batch>/<reader>/<case>.draft``), replaced atomically (temporary file, fsync,
rename: see :mod:`.atomic_files`), so a kill at any moment leaves the previous draft or the new
one, never half of one. A draft holds the segment layers cropped to their painted boxes (zlib
level 1: a 512x512x300 layer with a few painted organs is a few hundred kB), the segment
names, colours and codes, the image grid it was painted on, when it was written and where the
case's starting segmentation came from. Overlapping segments keep their own layers, as in the
editor.

Nothing here is Qt or MRML: encoding and writing run on any thread (the reading window writes
from a worker). Reading checks the grid against the case and refuses a draft painted on another
one (:class:`DraftError`).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic_files import PARTIAL_SUFFIX, replace_file
from .errors import CaseIteratorError
from .geometry import Geometry
from .paths import user_data_dir
from .segmentation import AlgorithmType, Segment, Segmentation, painted_box
from .terminology import Code

#: First bytes of a draft file (the format version is the number).
MAGIC = b"CASEITERATOR-DRAFT 1\n"
#: File name suffix of drafts.
SUFFIX = ".draft"
#: zlib level: 1 compresses label layers (long runs of zeros) ~100x at ~300 MB/s.
ZLIB_LEVEL = 1

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HEADER_SIZE = struct.Struct("<Q")


class DraftError(CaseIteratorError):
    """A draft cannot be used: unreadable, or painted on another image grid.

    Parameters
    ----------
    path
        The draft file.
    message
        What is wrong and what happens now.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{message} (draft {self.path})")


@dataclass(frozen=True, eq=False)
class LabelBlock:
    """The painted box of one label layer.

    Parameters
    ----------
    start
        Voxel index ``(k, j, i)`` of the box's first voxel on the image grid.
    values
        Unsigned label values shaped ``(nk, nj, ni)``.
    """

    start: tuple[int, int, int]
    values: np.ndarray


@dataclass(frozen=True, eq=False)
class PaintedLayers:
    """A segmentation stored as its painted boxes: what a draft (or a save) needs to copy.

    Parameters
    ----------
    geometry
        The image grid.
    segments
        The segments, in display order.
    blocks
        One painted box per label layer (None for a layer with nothing painted).
    placement
        For each segment, ``(layer index, label value)`` as in :class:`~.segmentation.
        Segmentation`.
    """

    geometry: Geometry
    segments: tuple[Segment, ...]
    blocks: tuple[LabelBlock | None, ...]
    placement: tuple[tuple[int, int], ...]

    @classmethod
    def from_segmentation(cls, segmentation: Segmentation) -> PaintedLayers:
        """Crop each layer of ``segmentation`` to its painted box (copies only the boxes)."""
        blocks = []
        for layer in segmentation.layers:
            box = painted_box(layer)
            blocks.append(
                None
                if box is None
                else LabelBlock((box[0].start, box[1].start, box[2].start), layer[box].copy())
            )
        return cls(
            segmentation.geometry, segmentation.segments, tuple(blocks), segmentation.placement
        )

    def to_segmentation(self) -> Segmentation:
        """The full-grid segmentation (layers padded onto the image grid)."""
        shape = self.geometry.shape
        layers = []
        for block in self.blocks:
            big = block is not None and int(block.values.max(initial=0)) > 255
            layer = np.zeros(shape, dtype=np.uint16 if big else np.uint8)
            if block is not None:
                k, j, i = block.start
                nk, nj, ni = block.values.shape
                layer[k : k + nk, j : j + nj, i : i + ni] = block.values
            layers.append(layer)
        if not layers:
            layers.append(np.zeros(shape, dtype=np.uint8))
        return Segmentation(self.geometry, self.segments, tuple(layers), self.placement)

    def voxel_counts(self) -> tuple[int, ...]:
        """Painted voxels per segment (counted in the boxes only)."""
        counts = []
        for layer, value in self.placement:
            block = self.blocks[layer] if layer < len(self.blocks) else None
            counts.append(0 if block is None else int(np.count_nonzero(block.values == value)))
        return tuple(counts)


@dataclass(frozen=True, eq=False)
class Draft:
    """The reader's unsaved segmentation of one case.

    Parameters
    ----------
    case_id
        The case (``Case.id``).
    layers
        The segmentation, as painted boxes on the case's grid.
    saved_at
        When the draft was taken (seconds since the epoch).
    case_name
        The case as the reader knows it (for the recovery question).
    starting_point
        Where the case's starting segmentation came from ("" when it started empty), e.g.
        "your save of 2026-11-25 14:02".
    """

    case_id: str
    layers: PaintedLayers
    saved_at: float
    case_name: str = ""
    starting_point: str = ""

    @property
    def geometry(self) -> Geometry:
        """The grid the draft was painted on."""
        return self.layers.geometry


@dataclass(frozen=True)
class DraftInfo:
    """What a draft file says about itself without reading its voxels."""

    case_id: str
    case_name: str
    saved_at: float
    path: Path

    def clock(self) -> str:
        """``HH:MM`` local time the draft was taken."""
        return time.strftime("%H:%M", time.localtime(self.saved_at))


def _safe(name: str) -> str:
    """``name`` as a file name, distinct for distinct names."""
    cleaned = _SAFE.sub("_", name.strip()).strip("._") or "x"
    if cleaned == name and len(name) <= 80:
        return cleaned
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned[:60]}-{digest}"


def _code(code: Code | None) -> list[str] | None:
    return None if code is None else [code.scheme, code.value, code.meaning]


def _uncode(value: object) -> Code | None:
    if value is None:
        return None
    scheme, code, meaning = value  # type: ignore[misc]
    return Code(str(scheme), str(code), str(meaning))


def _segment_json(segment: Segment) -> dict:
    return {
        "name": segment.name,
        "color": list(segment.color),
        "category": _code(segment.category),
        "type": _code(segment.type),
        "region": _code(segment.region),
        "algorithm": segment.algorithm.value,
        "algorithm_name": segment.algorithm_name,
    }


def _segment_from_json(data: dict) -> Segment:
    category, type_ = _uncode(data["category"]), _uncode(data["type"])
    assert category is not None and type_ is not None
    return Segment(
        name=str(data["name"]),
        category=category,
        type=type_,
        color=tuple(int(c) for c in data["color"]),  # type: ignore[arg-type]
        region=_uncode(data.get("region")),
        algorithm=AlgorithmType(data.get("algorithm", "MANUAL")),
        algorithm_name=str(data.get("algorithm_name", "")),
    )


def encode_draft(draft: Draft, *, batch_key: str = "", reader: str = "") -> bytes:
    """The bytes of a draft file (header JSON, then each painted box compressed)."""
    layers = draft.layers
    geometry = layers.geometry
    blobs: list[bytes] = []
    blocks = []
    offset = 0
    for block in layers.blocks:
        if block is None:
            blocks.append(None)
            continue
        values = np.ascontiguousarray(block.values)
        if not np.issubdtype(values.dtype, np.unsignedinteger):
            values = values.astype(np.uint16 if values.max(initial=0) > 255 else np.uint8)
        blob = zlib.compress(values.tobytes(), ZLIB_LEVEL)
        blocks.append(
            {
                "start": [int(v) for v in block.start],
                "shape": [int(v) for v in values.shape],
                "dtype": values.dtype.str,
                "offset": offset,
                "length": len(blob),
                "crc32": zlib.crc32(blob),
            }
        )
        blobs.append(blob)
        offset += len(blob)
    header = {
        "format": 1,
        "batch_key": batch_key,
        "reader": reader,
        "case_id": draft.case_id,
        "case_name": draft.case_name,
        "saved_at": draft.saved_at,
        "starting_point": draft.starting_point,
        "geometry": {
            "size": [int(v) for v in geometry.size],
            "origin": [float(v) for v in geometry.origin],
            "spacing": [float(v) for v in geometry.spacing],
            "direction": np.asarray(geometry.direction, dtype=float).tolist(),
        },
        "segments": [_segment_json(s) for s in layers.segments],
        "placement": [[int(a), int(b)] for a, b in layers.placement],
        "blocks": blocks,
    }
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    return b"".join([MAGIC, _HEADER_SIZE.pack(len(text)), text, *blobs])


def _read_header(path: Path, data: bytes) -> tuple[dict, int]:
    if not data.startswith(MAGIC):
        raise DraftError(path, "this is not a CaseIterator draft (or a newer format)")
    start = len(MAGIC)
    try:
        (size,) = _HEADER_SIZE.unpack_from(data, start)
        header = json.loads(data[start + _HEADER_SIZE.size : start + _HEADER_SIZE.size + size])
    except (struct.error, ValueError) as exc:
        raise DraftError(path, f"the draft's header is damaged ({exc})") from exc
    return header, start + _HEADER_SIZE.size + size


def decode_draft(path: Path, data: bytes) -> Draft:
    """Read a draft file's bytes.

    Raises
    ------
    DraftError
        When the bytes are not a complete draft.
    """
    header, body = _read_header(path, data)
    try:
        g = header["geometry"]
        geometry = Geometry(
            tuple(g["size"]), tuple(g["origin"]), tuple(g["spacing"]), np.array(g["direction"])
        )
        blocks: list[LabelBlock | None] = []
        for entry in header["blocks"]:
            if entry is None:
                blocks.append(None)
                continue
            start = body + int(entry["offset"])
            blob = data[start : start + int(entry["length"])]
            if len(blob) != entry["length"] or zlib.crc32(blob) != entry["crc32"]:
                raise DraftError(path, "the draft's voxels are damaged (checksum)")
            values = np.frombuffer(zlib.decompress(blob), dtype=np.dtype(entry["dtype"]))
            blocks.append(LabelBlock(tuple(entry["start"]), values.reshape(entry["shape"]).copy()))
        layers = PaintedLayers(
            geometry,
            tuple(_segment_from_json(s) for s in header["segments"]),
            tuple(blocks),
            tuple((int(a), int(b)) for a, b in header["placement"]),
        )
        return Draft(
            case_id=str(header["case_id"]),
            layers=layers,
            saved_at=float(header["saved_at"]),
            case_name=str(header.get("case_name", "")),
            starting_point=str(header.get("starting_point", "")),
        )
    except DraftError:
        raise
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise DraftError(path, f"the draft is damaged ({type(exc).__name__}: {exc})") from exc


#: Suffix of a draft set aside (painted on another grid, damaged).
REJECTED_SUFFIX = ".rejected"
#: How long a set-aside draft is kept (30 days).
REJECTED_KEEP_S = 30 * 24 * 3600.0


class DraftStore:
    """The drafts of one reader in one batch.

    Parameters
    ----------
    batch_key
        The batch (``BatchDefinition.key``).
    reader
        The reader.
    root
        Folder of all drafts; ``<data folder>/drafts`` when None.
    """

    def __init__(self, batch_key: str, reader: str, root: Path | None = None) -> None:
        self.batch_key = batch_key
        self.reader = reader
        base = Path(root) if root is not None else user_data_dir() / "drafts"
        self.folder = base / _safe(batch_key) / _safe(reader)

    def path_for(self, case_id: str) -> Path:
        """The draft file of ``case_id``."""
        return self.folder / f"{_safe(case_id)}{SUFFIX}"

    def save(self, draft: Draft) -> Path:
        """Write ``draft`` atomically (replacing the case's previous draft); any thread."""
        path = self.path_for(draft.case_id)
        content = encode_draft(draft, batch_key=self.batch_key, reader=self.reader)
        replace_file(path, content, mode=0o600)  # a reader's work: not for other accounts
        return path

    def info(self, case_id: str) -> DraftInfo | None:
        """What the draft of ``case_id`` says about itself, or None when there is none."""
        return self._info(self.path_for(case_id))

    def _info(self, path: Path) -> DraftInfo | None:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(MAGIC) + _HEADER_SIZE.size)
                if len(head) < len(MAGIC) + _HEADER_SIZE.size or not head.startswith(MAGIC):
                    return None
                (size,) = _HEADER_SIZE.unpack_from(head, len(MAGIC))
                header = json.loads(handle.read(size))
            return DraftInfo(
                str(header["case_id"]),
                str(header.get("case_name", "")),
                float(header["saved_at"]),
                path,
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged: load() says why when it is asked for

    def drafts(self) -> list[DraftInfo]:
        """Every readable draft of this reader in this batch, newest first."""
        if not self.folder.is_dir():
            return []
        found = [
            info
            for path in self.folder.glob(f"*{SUFFIX}")
            if not path.name.endswith(PARTIAL_SUFFIX) and (info := self._info(path)) is not None
        ]
        return sorted(found, key=lambda info: info.saved_at, reverse=True)

    def load(self, case_id: str, geometry: Geometry | None = None) -> Draft | None:
        """The draft of ``case_id`` (None when there is none); any thread.

        Parameters
        ----------
        case_id
            The case.
        geometry
            The case's image grid: a draft painted on another grid is refused.

        Raises
        ------
        DraftError
            When the file is damaged, belongs to another case, or was painted on another grid.
        """
        path = self.path_for(case_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DraftError(path, f"the draft cannot be read ({exc})") from exc
        draft = decode_draft(path, data)
        if draft.case_id != case_id:
            raise DraftError(path, f"the draft belongs to case {draft.case_id!r}, not {case_id!r}")
        if geometry is not None:
            difference = geometry.mismatch(draft.geometry)
            if difference is not None:
                raise DraftError(
                    path,
                    f"the unsaved edits of case {draft.case_name or case_id} were painted on "
                    f"another image grid ({difference}); they cannot be put on this image and "
                    "are set aside",
                )
        return draft

    def discard(self, case_id: str) -> bool:
        """Remove the draft of ``case_id``; True when there was one."""
        path = self.path_for(case_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def set_aside(self, case_id: str) -> Path | None:
        """Rename an unusable draft to ``<name>.rejected`` (kept for the site admin)."""
        path = self.path_for(case_id)
        if not path.exists():
            return None
        target = path.with_suffix(REJECTED_SUFFIX)
        path.replace(target)
        self.prune_rejected()
        return target

    def prune_rejected(self, max_age_s: float = REJECTED_KEEP_S) -> int:
        """Remove drafts set aside more than ``max_age_s`` ago; returns how many went.

        They are kept a while for the site admin (the reader may ask what became of some
        edits), not for ever.
        """
        if not self.folder.is_dir():
            return 0
        removed = 0
        oldest = time.time() - max_age_s
        for path in self.folder.glob(f"*{REJECTED_SUFFIX}"):
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def drafts_of(batch_key: str, reader: str, case_ids: Sequence[str]) -> list[DraftInfo]:
    """Drafts of ``reader`` in a batch for ``case_ids`` (the cases it still has), newest first."""
    store = DraftStore(batch_key, reader)
    wanted = set(case_ids)
    return [info for info in store.drafts() if info.case_id in wanted]


__all__ = [
    "Draft",
    "DraftError",
    "DraftInfo",
    "DraftStore",
    "LabelBlock",
    "PaintedLayers",
    "decode_draft",
    "drafts_of",
    "encode_draft",
    "painted_box",
]
