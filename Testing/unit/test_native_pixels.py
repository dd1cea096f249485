"""Uncompressed pixels read straight from the end of the file equal pydicom's pixel_array,
and every file that does not fit that shape is left to pydicom (which names what is wrong)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from CaseIteratorCoreLib.dicom_files import read_header, read_native_pixels
from CaseIteratorCoreLib.image_files import read_dicom_files
from CaseIteratorCoreLib.problems import ProblemCode

from series_factory import pattern, write_series


def _rewrite(path: Path, *, syntax: str, bits: int, stored: int, signed: int, rows: int,
             cols: int) -> np.ndarray:  # fmt: skip
    """Give the file other pixels (random, with garbage above BitsStored); returns the raw."""
    ds = pydicom.dcmread(path)
    rng = np.random.default_rng(abs(hash((syntax, bits, stored, signed, rows, cols))) % 2**32)
    raw = rng.integers(0, 2**bits, size=(rows, cols), dtype=np.uint64)
    raw = raw.astype(f"<u{bits // 8}")
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
    ds.PixelRepresentation = signed
    ds.PixelData = raw.tobytes() + (b"\0" if raw.nbytes % 2 else b"")
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
    return raw


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize(
    ("bits", "stored", "signed", "rows", "cols"),
    [
        (16, 16, 1, 12, 10),
        (16, 12, 1, 12, 10),  # sign-extended from bit 11
        (16, 12, 0, 12, 10),  # masked above bit 11
        (16, 16, 0, 7, 9),
        (8, 8, 0, 5, 7),  # odd byte count: padded to even
        (8, 6, 1, 4, 4),
    ],
)
def test_same_values_as_pydicom(
    tmp_path: Path, syntax: str, bits: int, stored: int, signed: int, rows: int, cols: int
) -> None:
    (path,) = write_series(tmp_path, n=1)
    _rewrite(path, syntax=syntax, bits=bits, stored=stored, signed=signed, rows=rows, cols=cols)
    header, _ = read_header(path)
    assert header is not None
    fast = read_native_pixels(path, header)
    assert fast is not None  # the file fits: it must be read this way
    expected = pydicom.dcmread(path).pixel_array
    assert fast.dtype == expected.dtype and fast.shape == expected.shape == (rows, cols)
    np.testing.assert_array_equal(fast, expected)


def _trailing_element(k: int, ds: pydicom.Dataset) -> None:
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 8)  # Data Set Trailing Padding after the pixels


@pytest.mark.parametrize(
    "tweak",
    [
        _trailing_element,
        lambda k, ds: ds.compress("1.2.840.10008.1.2.5"),  # RLE
    ],
    ids=["trailing element", "compressed"],
)
def test_other_files_are_left_to_pydicom_with_the_same_voxels(tmp_path: Path, tweak) -> None:
    files = write_series(tmp_path, n=3, tweak=tweak)
    header, _ = read_header(files[0])
    assert header is not None and read_native_pixels(files[0], header) is None
    volume, _, problems = read_dicom_files(files)
    assert problems == []
    np.testing.assert_array_equal(volume.array, pattern(3, 12, 10))


def test_big_endian_and_colour_are_left_to_pydicom(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, n=1)
    header, _ = read_header(path)
    assert header is not None and read_native_pixels(path, header) is not None
    header.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    assert read_native_pixels(path, header) is None
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.SamplesPerPixel = 3
    assert read_native_pixels(path, header) is None


def test_a_cut_file_is_still_named(tmp_path: Path) -> None:
    files = write_series(tmp_path, n=3)
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-40])
    volume, _, problems = read_dicom_files(files)
    assert volume is None
    assert problems[0].code in (ProblemCode.UNDECODABLE, ProblemCode.UNREADABLE_FILE)
    assert files[1].name in problems[0].message


def test_a_stack_of_one_frame_enhanced_files_loads(tmp_path: Path) -> None:
    """Some scanners write an enhanced file per slice (NumberOfFrames 1, functional groups)."""
    import highdicom as hd

    classic = write_series(tmp_path / "classic", n=4, dz=1.5)
    datasets = [pydicom.dcmread(p) for p in classic]
    series_uid = hd.UID()
    enhanced = []
    for k, ds in enumerate(datasets):
        one = hd.legacy.LegacyConvertedEnhancedCTImage(
            legacy_datasets=[ds],
            series_instance_uid=series_uid,
            series_number=2,
            sop_instance_uid=hd.UID(),
            instance_number=k + 1,
        )
        path = tmp_path / "enhanced" / f"E{k}.dcm"
        path.parent.mkdir(exist_ok=True)
        one.save_as(path)
        enhanced.append(path)
    volume, _, problems = read_dicom_files(enhanced)
    assert problems == []
    reference, _, _ = read_dicom_files(classic)
    np.testing.assert_array_equal(volume.array, reference.array)
