"""Small DICOM series with exactly the geometry a test asks for (classic CT, one file a slice).

Voxel values are a deterministic pattern so voxel-exact comparisons mean something.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def pattern(n: int, rows: int, cols: int) -> np.ndarray:
    """Deterministic HU values (k, j, i) that differ in every voxel and every slice."""
    k, j, i = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    return (k * 100 + j * 7 + i * 3 - 1000).astype(np.int16)


def write_series(
    folder: Path,
    *,
    n: int = 8,
    rows: int = 12,
    cols: int = 10,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    dz: float = 2.0,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (-5.0, -4.0, 10.0),
    positions: Sequence[Sequence[float]] | None = None,
    tweak: Callable[[int, pydicom.Dataset], None] | None = None,
    seed: str = "",
    modality: str = "CT",
) -> list[Path]:
    """Write an ``n``-slice series into ``folder``; ``tweak(k, ds)`` may alter slice ``k``."""
    folder.mkdir(parents=True, exist_ok=True)
    values = pattern(n, rows, cols)
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    study = generate_uid(entropy_srcs=["study", str(folder), seed])
    series = generate_uid(entropy_srcs=["series", str(folder), seed])
    frame_of_reference = generate_uid(entropy_srcs=["for", str(folder), seed])
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid(entropy_srcs=["sop", str(folder), seed, str(k)])
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.Modality = modality
        ds.PatientID, ds.PatientName = "TEST-1", "Test^Patient"
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20260101", 1, k + 1
        ds.SeriesDescription = "test series"
        position = (
            np.array(positions[k], float)
            if positions is not None
            else np.array(origin, float) + k * dz * normal
        )
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{v:.4f}" for v in pixel_spacing]
        ds.SliceThickness = f"{dz:.4f}"
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        ds.PixelData = values[k].astype("<i2").tobytes()
        if tweak is not None:
            tweak(k, ds)
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
