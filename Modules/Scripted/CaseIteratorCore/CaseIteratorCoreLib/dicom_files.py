"""Reading DICOM files robustly: one reason per file that cannot be used.

Shared by the DICOM-folder scan and series loading, so a file is judged the same way wherever
it is met.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

# Real scanners write values that break the letter of the standard (a UID with a trailing dot,
# "1A" in an IS); reading them without a warning per element keeps logs readable. Problems
# that matter are reported by the checks, with the file named.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: Modalities whose objects are not images a reader can segment.
NON_IMAGE_MODALITIES = {
    "SEG": "a segmentation (SEG)",
    "SR": "a structured report (SR)",
    "PR": "a presentation state (PR)",
    "KO": "a key object selection (KO)",
    "RTSTRUCT": "an RT structure set",
    "RTPLAN": "an RT plan",
    "RTRECORD": "an RT treatment record",
    "REG": "a spatial registration (REG)",
    "FID": "a fiducials object",
    "DOC": "an encapsulated document",
    "ECG": "a waveform (ECG)",
    "AU": "an audio waveform",
    "PLAN": "a plan",
}

#: SOP classes that are not images whatever the Modality says.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.5": "a surface segmentation",
    "1.2.840.10008.5.1.4.1.1.66.1": "a spatial registration",
    "1.2.840.10008.5.1.4.1.1.66.3": "a deformable spatial registration",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT structure set",
    "1.2.840.10008.5.1.4.1.1.88.59": "a key object selection (KO)",
}

#: The few header tags a folder scan needs (reading only these keeps large scans fast).
SCAN_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "StudyDate",
    "StudyDescription",
    "PatientID",
    "PatientName",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "InstanceNumber",
    "ImageType",
]


def sop_class_name(uid: str) -> str:
    """Return the readable name of a SOP class UID, or the UID when unknown."""
    name = UID(uid).name if uid else ""
    return name if name and name != uid else (uid or "unknown SOP class")


def non_image_reason(sop_class_uid: str, modality: str) -> str | None:
    """Say why an object of this SOP class / modality is not an image, or None if it is one."""
    sop_class_uid = str(sop_class_uid or "")
    if sop_class_uid in NON_IMAGE_SOP_CLASSES:
        return NON_IMAGE_SOP_CLASSES[sop_class_uid]
    if sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88."):
        return "a structured report (SR)"
    if sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.11."):
        return "a presentation state (PR)"
    modality = str(modality or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        return NON_IMAGE_MODALITIES[modality]
    return None


def read_header(path: Path, *, tags: list[str] | None = None) -> tuple[Dataset | None, str | None]:
    """Read a DICOM file's header without pixels.

    Returns
    -------
    (dataset, None) when the file is DICOM, or (None, reason) when it is not or cannot be read.
    """
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except InvalidDicomError:
        return None, "not a DICOM file"
    except (OSError, EOFError) as exc:
        return None, f"unreadable: {exc}"
    except Exception as exc:  # pydicom raises many types for malformed files
        return None, f"unreadable DICOM file ({type(exc).__name__}: {exc})"
    if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
        if path.name.upper() == "DICOMDIR" or ds.file_meta.get("MediaStorageSOPClassUID") == (
            "1.2.840.10008.1.3.10"
        ):
            return None, "DICOMDIR index file (not an image)"
        return None, "incomplete DICOM file: no SeriesInstanceUID (the file may be truncated)"
    if "SeriesInstanceUID" not in ds:
        return None, "incomplete DICOM file: no SeriesInstanceUID (the file may be truncated)"
    return ds, None


def read_full(path: Path) -> Dataset:
    """Read a whole DICOM file (header and pixel data); errors propagate."""
    return dcmread(path)


#: Uncompressed little-endian transfer syntaxes and whether their VR is implicit.
_NATIVE_SYNTAXES = {
    pydicom.uid.ImplicitVRLittleEndian: True,
    pydicom.uid.ExplicitVRLittleEndian: False,
}
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def read_native_pixels(path: Path, header: Dataset) -> np.ndarray | None:
    """The pixels of an uncompressed single-frame grey-scale file, read straight from its end.

    Most image files end with their pixel data: with the header already parsed (``header``,
    read without pixels), the element is where the image size says, and reading it there is
    a tenth of what parsing the whole file again costs (the bulk of decoding a CT series). The
    values are those of ``Dataset.pixel_array``: the bits above ``BitsStored`` are masked, or
    sign-extended for signed pixels.

    Returns None whenever that does not apply (compressed, big endian, colour, multi-frame,
    8/16 bits not allocated, an element after the pixel data, a short file...): the caller
    decodes the file with pydicom then, which also names what is wrong with it.
    """
    meta = getattr(header, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    implicit = _NATIVE_SYNTAXES.get(UID(str(syntax))) if syntax else None
    if implicit is None:
        return None
    rows, columns = header_int(header, "Rows", 0), header_int(header, "Columns", 0)
    bits = header_int(header, "BitsAllocated", 0)
    stored = header_int(header, "BitsStored", bits)
    signed = header_int(header, "PixelRepresentation", 0)
    if (
        rows <= 0
        or columns <= 0
        or bits not in (8, 16)
        or not 0 < stored <= bits
        or signed not in (0, 1)
        or header_int(header, "SamplesPerPixel", 1) != 1
        or header_int(header, "NumberOfFrames", 1) != 1
    ):
        return None
    count = rows * columns
    size = count * bits // 8
    padded = size + (size & 1)
    data = path.read_bytes()
    element = 8 if implicit else 12
    at = len(data) - padded - element
    if at < 0 or data[at : at + 4] != _PIXEL_DATA_TAG:
        return None
    if implicit:
        (length,) = struct.unpack_from("<I", data, at + 4)
    else:
        if data[at + 4 : at + 8] not in (b"OW\x00\x00", b"OB\x00\x00"):
            return None
        (length,) = struct.unpack_from("<I", data, at + 8)
    if length != padded:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    pixels = np.frombuffer(data, dtype=dtype, count=count, offset=at + element)
    pixels = pixels.reshape(rows, columns)
    if stored < bits:
        unused = bits - stored
        if signed:
            pixels = (pixels << unused) >> unused  # arithmetic shift: sign-extends
        else:
            pixels = pixels & np.array((1 << stored) - 1, dtype=dtype)
    return pixels


def _starts_like_raw_dataset(path: Path) -> bool:
    """Whether a file without the DICM preamble starts with a group 0008 element.

    Old archives and some modalities write bare datasets (no 128-byte preamble, no file
    meta); they are real DICOM and must not be skipped as "not DICOM".
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return (
        len(head) == 8
        and head[:2] == b"\x08\x00"
        and head[2:4]
        in (b"\x00\x00", b"\x05\x00", b"\x08\x00", b"\x12\x00", b"\x16\x00", b"\x18\x00")
    )


def dcmread(path: Path, **kwargs: object) -> Dataset:
    """``pydicom.dcmread`` that also accepts bare datasets without preamble (see above)."""
    try:
        return pydicom.dcmread(path, **kwargs)  # type: ignore[arg-type]
    except InvalidDicomError:
        if not _starts_like_raw_dataset(path):
            raise
        ds = pydicom.dcmread(path, force=True, **kwargs)  # type: ignore[arg-type]
        if "TransferSyntaxUID" not in ds.file_meta:
            # Bare datasets are uncompressed; name the encoding they were read with so the
            # pixel data can be decoded.
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (
                pydicom.uid.ImplicitVRLittleEndian
                if implicit
                else pydicom.uid.ExplicitVRLittleEndian
                if little
                else pydicom.uid.ExplicitVRBigEndian
            )
        return ds


def header_int(ds: Dataset, keyword: str, default: int) -> int:
    """Read an integer attribute, tolerating empty or malformed values (real files have them)."""
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def text_of(ds: Dataset, keyword: str) -> str:
    """``ds``'s value of ``keyword`` as text ("" when absent or empty)."""
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def int_of(ds: Dataset, keyword: str) -> int | None:
    """``ds``'s value of ``keyword`` as an integer (None when absent or not a number)."""
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return None


def dataset_bytes(ds: Dataset) -> bytes:
    """``ds`` encoded as a DICOM file (Part 10) in memory.

    A dataset without file meta, or without a transfer syntax in it, gets explicit VR little
    endian (what the SEG writers make); both are set on ``ds`` itself.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
