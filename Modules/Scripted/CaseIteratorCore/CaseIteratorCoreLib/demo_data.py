"""Deterministic synthetic CT data: the built-in demo batch and the test data.

No real multi-slice CT ships offline, so the demo and the tests use a seeded abdominal phantom in
Hounsfield units: air, an elliptical body with subcutaneous fat and a muscle wall, lungs with
vessels, heart, liver with vessels and lesions, spleen, stomach, bowel loops, kidneys, psoas,
aorta, vena cava, vertebrae with discs, ribs and the scanner table, plus Gaussian noise. The same
``(case_index, seed)`` always gives the same voxels, the same DICOM UIDs and byte-identical
files. The anatomy is defined relative to the field of view, so ``size=64`` is a small copy of
the ``size=512`` case.

Coordinates are DICOM patient coordinates (LPS): ``x`` grows to the patient's left, ``y`` to the
back (posterior), ``z`` to the head. Slice ``k = 0`` is the most inferior one.

Run ``python -m CaseIteratorCoreLib.demo_data OUT_DIR`` to write the demo batch.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .geometry import Geometry
from .tasks import ProgressCallback, no_progress

__all__ = [
    "DEFAULT_SEED",
    "LABELS",
    "DemoPhantom",
    "phantom",
    "write_ct_series",
    "write_demo_batch",
    "write_demo_csv_batch",
]

DEFAULT_SEED = 20261125

#: Values of :attr:`DemoPhantom.labels`.
LABELS: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "liver lesion",
    3: "aorta",
    4: "spine",
    5: "lungs",
}

#: Offset between stored pixel values and HU (RescaleIntercept is its negative).
_HU_OFFSET = 1024
_SLICE_SPACINGS = (1.0, 1.25, 2.0, 2.5, 3.0)
_NOISE_SIGMA_HU = 10.0
_SERIES_FOLDER = "CT_abdomen"
_BATCH_TOML = "demo.toml"
_DEMO_PATIENT = re.compile(r"^DEMO-\d{3}$")
_PIXEL_DATA = 0x7FE00010
# SOPInstanceUID, InstanceNumber, ImagePositionPatient, SliceLocation, PixelData.
_PER_SLICE_TAGS = frozenset({0x00080018, 0x00200013, 0x00200032, 0x00201041, _PIXEL_DATA})

# Tissue classes. Each slice is painted as tissue codes (later paints win), then mapped to HU
# and to labels by lookup tables while the slice is in cache.
# fmt: off
_TISSUES: tuple[tuple[str, int, int], ...] = (
    # name           HU     label
    ("air",         -1000,  0),
    ("fat",          -100,  0),  # subcutaneous, visceral and retroperitoneal fat
    ("soft tissue",    40,  0),  # mediastinum, bowel wall
    ("muscle",         50,  0),
    ("lung",         -850,  5),
    ("lung vessel",    40,  5),  # vessels are part of a lung segmentation
    ("heart",          45,  0),
    ("liver",          60,  1),  # varied per case, 55-65
    ("liver vessel",  140,  1),  # portal and hepatic veins, part of a liver segmentation
    ("lesion hyper",  100,  2),
    ("lesion hypo",    20,  2),
    ("spleen",         50,  0),
    ("kidney",        150,  0),
    ("aorta",         200,  3),  # contrast-enhanced
    ("vena cava",     120,  0),
    ("cortical bone", 1100, 4),
    ("marrow",        600,  4),
    ("vertebral arch", 800, 4),
    ("spinal canal",   10,  0),
    ("disc",           90,  0),
    ("rib",           700,  0),
    ("table",         300,  0),
    ("table core",   -700,  0),
    ("gas",          -900,  0),  # bowel and stomach gas
    ("fluid",          15,  0),  # bowel and stomach content
)
(
    _AIR, _FAT, _SOFT, _MUSCLE, _LUNG, _LUNG_VESSEL, _HEART, _LIVER, _LIVER_VESSEL,
    _HYPER, _HYPO, _SPLEEN, _KIDNEY, _AORTA, _IVC, _CORTEX, _MARROW, _ARCH, _CANAL, _DISC,
    _RIB, _TABLE, _TABLE_CORE, _GAS, _FLUID,
) = range(len(_TISSUES))
# fmt: on
_TISSUE_HU = np.array([hu for _, hu, _ in _TISSUES], dtype=np.int16)
_TISSUE_LABEL = np.array([label for _, _, label in _TISSUES], dtype=np.uint8)

_TOML = """\
name = "CaseIterator demo"

[source]
type = "dicom-folder"
path = "dicom"

[output]
format = "dicom-seg"
destination = "results"

[[segments]]
name = "Liver"
category = "SCT:123037004:Anatomical Structure"
type = "SCT:10200004:Liver"
color = "#dd8265"

[[segments]]
name = "Liver lesion"
category = "SCT:49755003:Morphologically Altered Structure"
type = "SCT:4147007:Mass"
region = "SCT:10200004:Liver"
color = "#f0e000"

[[segments]]
name = "Aorta"
category = "SCT:123037004:Anatomical Structure"
type = "SCT:15825003:Aorta"
color = "#d84040"

[prefetch]
depth = 2
"""


@dataclass(frozen=True, eq=False)
class DemoPhantom:
    """One synthetic CT case: HU volume, label map, geometry and patient/study text.

    Attributes
    ----------
    hu
        ``int16`` Hounsfield units shaped ``(k, j, i)`` = (slices, rows, columns), clipped at
        -1024 so that it round-trips through the DICOM encoding exactly.
    labels
        ``uint8`` label map of the same shape; values as in :data:`LABELS`.
    spacing
        ``(column spacing, row spacing, slice spacing)`` in mm, i.e. along ``(i, j, k)``.
    origin
        LPS position of the centre of voxel ``(0, 0, 0)`` in mm.
    patient_id, patient_name, study_date, study_description, series_description
        DICOM text; ``study_date`` is ``YYYYMMDD``.
    study_time, patient_birth_date, patient_sex, case_index
        More fixed DICOM text (``HHMMSS``, ``YYYYMMDD``, ``M``/``F``) and the case number.
    """

    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    series_description: str
    study_time: str = "090000"
    patient_birth_date: str = "19600101"
    patient_sex: str = "O"
    case_index: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(slices, rows, columns)``."""
        k, j, i = self.hu.shape
        return k, j, i

    @property
    def geometry(self) -> Geometry:
        """The image grid (axial, identity direction) as a core :class:`Geometry`."""
        k, j, i = self.hu.shape
        return Geometry(
            size=(i, j, k), origin=self.origin, spacing=self.spacing, direction=np.eye(3)
        )


@dataclass(frozen=True)
class _Ellipsoid:
    """An axis-aligned ellipsoid: centre and semi-axes in mm (LPS, ``z`` from the volume bottom)."""

    cx: float
    cy: float
    cz: float
    ax: float
    ay: float
    az: float

    def level(self, z: np.ndarray) -> np.ndarray:
        """Per-slice threshold on the in-plane :class:`_Blob` (<= 0 where the slice misses it)."""
        return 1.0 - ((z - self.cz) / self.az) ** 2


class _Grid:
    """Pixel-centre coordinates of the slice grid, in mm from the image centre."""

    def __init__(self, size: int, pixel: float) -> None:
        self.c = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) * np.float32(pixel)
        self._size, self._pixel, self._first = size, pixel, -(size - 1) / 2.0 * pixel

    def _span(self, lo: float, hi: float) -> slice | None:
        # Plain arithmetic on the uniform grid: called ~10^4 times per volume.
        i0 = max(0, math.floor((lo - self._first) / self._pixel))
        i1 = min(self._size, math.ceil((hi - self._first) / self._pixel) + 1)
        return slice(i0, i1) if i0 < i1 else None

    def box(self, cx: float, cy: float, ax: float, ay: float) -> tuple[slice, slice] | None:
        """Rows and columns covering the ellipse's bounding box (None when off the grid)."""
        cols, rows = self._span(cx - ax, cx + ax), self._span(cy - ay, cy + ay)
        if cols is None or rows is None:
            return None
        return rows, cols

    def q(self, cx: float, cy: float, ax: float, ay: float, box: tuple[slice, slice]) -> np.ndarray:
        """Normalised squared distance to the centre over ``box`` (1 on the ellipse)."""
        x = self.c[box[1]][None, :]
        y = self.c[box[0]][:, None]
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2

    def paint_ellipse(
        self,
        t: np.ndarray,
        value: int,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        only: int | None = None,
    ) -> None:
        """Paint a (moving) ellipse into slice ``t``, optionally only over tissue ``only``."""
        box = self.box(cx, cy, ax, ay)
        if box is None:
            return
        view = t[box]
        mask = self.q(cx, cy, ax, ay, box) <= 1.0
        if only is not None:
            mask &= view == only
        np.copyto(view, value, where=mask)


class _Blob:
    """An ellipse that does not move along z, with its distance field cropped to its box.

    Cropping keeps each paint proportional to the structure's size, not the slice's; an
    ellipsoid's slice at height ``z`` is ``q <= level(z)`` on the same field.
    """

    def __init__(self, grid: _Grid, cx: float, cy: float, ax: float, ay: float) -> None:
        self.box = grid.box(cx, cy, ax, ay)
        self.q = grid.q(cx, cy, ax, ay, self.box) if self.box is not None else None

    @classmethod
    def of(cls, grid: _Grid, e: _Ellipsoid) -> _Blob:
        """The in-plane field of an ellipsoid."""
        return cls(grid, e.cx, e.cy, e.ax, e.ay)

    def paint(self, t: np.ndarray, value: int, level: float = 1.0, only: int | None = None) -> None:
        """Paint where ``q <= level`` (optionally only over tissue ``only``)."""
        if self.box is None or level <= 0.0:
            return
        view = t[self.box]
        mask = self.q <= level
        if only is not None:
            mask &= view == only
        np.copyto(view, value, where=mask)


@dataclass(frozen=True)
class _Tubes:
    """Tubes running along z whose centres wander sinusoidally (bowel loops, lung vessels)."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    amp: np.ndarray
    period: np.ndarray
    phase: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    #: Round the ends (bowel loops) instead of cutting them flat (vessels, clipped anyway).
    taper: bool = False

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        n: int,
        centre: tuple[float, float],
        spread: tuple[float, float],
        radius: tuple[float, float],
        amp: float,
        z_range: tuple[float, float],
        length: tuple[float, float] | None = None,
    ) -> _Tubes:
        """``n`` tubes with centres uniform in an ellipse, each over a random part of z_range.

        With ``length`` (mm), tubes are segments of that length with rounded ends; without,
        each runs over a random, long part of ``z_range``.
        """
        angle = rng.uniform(0.0, 2.0 * np.pi, n)
        reach = np.sqrt(rng.uniform(0.0, 1.0, n))
        za, zb = z_range
        if length is not None:
            seg = rng.uniform(length[0], length[1], n)
            z0 = rng.uniform(za - 0.5 * seg, zb - 0.5 * seg)
            z1 = z0 + seg
        else:
            start = rng.uniform(za, za + 0.5 * (zb - za), n)
            z0 = np.where(rng.random(n) < 0.5, za, start)
            z1 = rng.uniform(start + 0.3 * (zb - start), zb)
        return cls(
            cx=centre[0] + spread[0] * reach * np.cos(angle),
            cy=centre[1] + spread[1] * reach * np.sin(angle),
            radius=rng.uniform(radius[0], radius[1], n),
            amp=rng.uniform(0.2, 1.0, n) * amp,
            period=rng.uniform(25.0, 70.0, n),
            phase=rng.uniform(0.0, 2.0 * np.pi, n),
            z0=z0,
            z1=z1,
            taper=length is not None,
        )

    def at(self, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the tubes present at height ``z`` and their centres ``(x, y)`` and radii."""
        on = np.flatnonzero((self.z0 <= z) & (z <= self.z1))
        arg = z / self.period[on] + self.phase[on]
        x = self.cx[on] + self.amp[on] * np.sin(arg)
        y = self.cy[on] + 0.6 * self.amp[on] * np.cos(1.3 * arg)
        r = self.radius[on]
        if self.taper:
            half = 0.5 * (self.z1[on] - self.z0[on])
            r = r * np.sqrt(np.clip(1.0 - ((z - self.z0[on] - half) / half) ** 2, 0.0, 1.0))
        return on, x, y, r


def _ds(value: float) -> str:
    """Format a decimal string (DS) of at most 16 characters, exact for our rounded values."""
    text = f"{value:.10g}"
    if text == "-0":
        text = "0"
    if len(text) > 16:  # pragma: no cover - values are rounded to fit beforehand
        raise ValueError(f"{value} does not fit a DICOM decimal string")
    return text


def phantom(
    case_index: int,
    *,
    size: int = 512,
    n_slices: int | None = None,
    seed: int = DEFAULT_SEED,
) -> DemoPhantom:
    """Build the synthetic abdominal CT phantom of one case.

    Parameters
    ----------
    case_index
        0-based case number; the patient is ``DEMO-{case_index + 1:03d}``. The anatomy (organ
        sizes and positions, number and kind of liver lesions) and the geometry vary with it.
    size
        Rows and columns of each slice. Pixel spacing stays 0.6-0.9 mm, so a small ``size``
        gives a small field of view with the same anatomy scaled down.
    n_slices
        Number of slices; by default 100-300 chosen so the z coverage is about 250-450 mm.
        The anatomy is stretched to the z coverage, so a few slices still show every organ.
    seed
        Base seed; the case uses ``numpy.random.default_rng(seed + case_index)``.

    Returns
    -------
    DemoPhantom
        HU volume, labels (:data:`LABELS`), spacing, origin and DICOM text.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    if n_slices is not None and n_slices < 1:
        raise ValueError(f"n_slices must be positive, got {n_slices}")
    rng = np.random.default_rng(seed + case_index)
    u = rng.uniform

    # Geometry: a display FOV in whole cm over 512 columns, as scanners do, gives binary-exact
    # spacings that print exactly as DICOM decimal strings.
    pixel = float(rng.integers(31, 47)) * 10.0 / 512.0  # 0.605-0.898 mm
    dz = float(_SLICE_SPACINGS[rng.integers(len(_SLICE_SPACINGS))])
    z_cover = float(u(250.0, 450.0))
    nz = int(np.clip(round(z_cover / dz), 100, 300)) if n_slices is None else int(n_slices)
    origin_z = float(rng.integers(-900, -200)) * 0.5  # varied table position, exact in DS
    # Centred image; rounded to 0.1 um so the 16-character DICOM DS holds it exactly.
    origin_xy = round(-(size - 1) / 2.0 * pixel, 4)

    # Anatomy in units of the in-plane FOV (f) and of the z coverage (zf), so it scales with the
    # image; z is measured from the bottom of the volume. Draws never depend on size or n_slices.
    f = size * pixel
    zf = nz * dz
    body_a, body_b = u(0.40, 0.45) * f, u(0.29, 0.33) * f
    body_cy = u(-0.01, 0.01) * f
    fat = u(0.020, 0.045) * f
    muscle = 0.025 * f
    cav_a, cav_b = body_a - fat - muscle, body_b - fat - muscle
    # Lungs a little bigger than the thorax: the chest wall, painted later, clips them flush.
    lung_x = [side * u(0.18, 0.20) * f for side in (-1.0, 1.0)]
    lung_ax, lung_ay, lung_low = u(0.15, 0.17) * f, u(0.17, 0.19) * f, u(0.45, 0.55)
    # Centred at the top of the volume: the lung bases are at lung_low of the z coverage.
    lungs = [
        _Ellipsoid(cx, body_cy + 0.01 * f, zf, lung_ax, lung_ay, (1.0 - lung_low) * zf)
        for cx in lung_x
    ]
    liver = _Ellipsoid(
        -u(0.13, 0.17) * f, u(-0.04, 0.0) * f, u(0.50, 0.58) * zf,
        u(0.17, 0.20) * f, u(0.15, 0.18) * f, u(0.18, 0.24) * zf,
    )  # fmt: skip
    left_lobe = _Ellipsoid(
        u(0.0, 0.04) * f, -u(0.09, 0.12) * f, liver.cz + 0.05 * zf,
        u(0.10, 0.13) * f, u(0.06, 0.08) * f, 0.6 * liver.az,
    )  # fmt: skip
    liver_hu = round(u(55.0, 65.0))
    lesions: list[tuple[_Ellipsoid, int]] = []
    for _ in range(int(rng.integers(1, 5))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        centre = np.array([liver.cx, liver.cy, liver.cz]) + u(0.0, 0.55) * direction * np.array(
            [liver.ax, liver.ay, liver.az]
        )
        radius = u(0.012, 0.040) * f
        rz = max(radius, 1.6 * dz)  # at least ~3 slices, whatever the slice spacing
        kind = _HYPER if rng.random() < 0.4 else _HYPO
        lesions.append((_Ellipsoid(*map(float, centre), radius, radius, rz), kind))
    spine_cy = u(0.07, 0.09) * f
    vert_r = u(0.050, 0.060) * f
    aorta_r = u(0.026, 0.032) * f
    aorta_cx, aorta_cy = u(0.03, 0.05) * f, spine_cy - vert_r - aorta_r - u(0.005, 0.015) * f
    ivc_cx, ivc_cy = -u(0.05, 0.07) * f, spine_cy - vert_r - u(0.025, 0.035) * f
    spleen = _Ellipsoid(
        u(0.20, 0.23) * f, u(0.07, 0.10) * f, u(0.50, 0.58) * zf,
        u(0.05, 0.07) * f, u(0.08, 0.10) * f, u(0.10, 0.14) * zf,
    )  # fmt: skip
    stomach = _Ellipsoid(
        u(0.10, 0.14) * f, -u(0.06, 0.09) * f, spleen.cz + u(0.0, 0.04) * zf,
        u(0.07, 0.09) * f, u(0.06, 0.08) * f, u(0.08, 0.11) * zf,
    )  # fmt: skip
    stomach_gas = stomach.cy - u(0.2, 0.6) * stomach.ay  # air-fluid level; gas rises anteriorly
    kidney_z = u(0.25, 0.32) * zf
    kidneys = [
        _Ellipsoid(
            side * u(0.14, 0.17) * f,
            spine_cy + u(0.0, 0.02) * f,
            kidney_z - (0.04 * zf if side < 0 else 0.0),  # the right kidney sits lower
            u(0.045, 0.055) * f,
            u(0.065, 0.075) * f,
            u(0.10, 0.13) * zf,
        )
        for side in (-1.0, 1.0)
    ]
    heart = _Ellipsoid(
        u(0.03, 0.06) * f, -u(0.04, 0.07) * f, u(0.85, 0.92) * zf,
        u(0.12, 0.14) * f, u(0.09, 0.11) * f, u(0.12, 0.16) * zf,
    )  # fmt: skip
    psoas = [
        _Ellipsoid(side * (vert_r + 0.035 * f), spine_cy, 0.0, 0.04 * f, 0.035 * f, 0.6 * zf)
        for side in (-1.0, 1.0)
    ]
    bowel_top = liver.cz - 0.3 * liver.az
    bowel = _Tubes.random(
        rng, 70, (0.0, body_cy - 0.04 * f), (0.27 * f, 0.13 * f),
        (0.025 * f, 0.045 * f), 0.05 * f, (0.0, bowel_top), length=(25.0, 90.0),
    )  # fmt: skip
    bowel_gas = rng.random(len(bowel.cx)) < 0.25
    hepatic = _Tubes.random(
        rng, 14, (liver.cx, liver.cy), (0.7 * liver.ax, 0.7 * liver.ay),
        (0.005 * f, 0.013 * f), 0.05 * f, (liver.cz - liver.az, liver.cz + liver.az),
    )  # fmt: skip
    vessels = [
        _Tubes.random(
            rng,
            24,
            (e.cx, e.cy),
            (0.8 * e.ax, 0.8 * e.ay),
            (0.003 * f, 0.010 * f),
            0.03 * f,
            (lung_low * zf, zf),
        )
        for e in lungs
    ]
    vert_pitch, disc_mm = u(28.0, 34.0), u(6.0, 9.0)
    disc_phase = u(0.0, vert_pitch)
    rib_pitch, rib_phase = u(22.0, 28.0), u(0.0, 1.0)
    birth = f"{int(rng.integers(1940, 1990))}{int(rng.integers(1, 13)):02d}15"
    patient_sex = "F" if rng.random() < 0.5 else "M"
    study_day = np.datetime64("2025-01-06") + int(rng.integers(0, 300))
    study_time = f"{int(rng.integers(7, 18)):02d}{int(rng.integers(0, 60)):02d}00"
    noise_seed = int(rng.integers(2**31))

    grid = _Grid(size, pixel)
    x, y = grid.c[None, :], grid.c[:, None]
    z = (np.arange(nz) + 0.5) * dz  # mm above the bottom of the volume

    def full_q(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2

    # Body layers cover most of the slice: full-size fields. Organs: cropped blobs.
    q_body = full_q(0.0, body_cy, body_a, body_b)
    q_inner = full_q(0.0, body_cy, body_a - fat, body_b - fat)
    q_cavity = full_q(0.0, body_cy, cav_a, cav_b)
    organs: list[tuple[_Blob, np.ndarray, int]] = [
        (_Blob.of(grid, e), e.level(z), tissue)
        for e, tissue in (
            *((p, _MUSCLE) for p in psoas),
            *((e, _LUNG) for e in lungs),
            (heart, _HEART),
            (stomach, _FLUID),
        )
    ]
    stomach_blob, stomach_level = _Blob.of(grid, stomach), stomach.level(z)
    late_organs = [
        (_Blob.of(grid, e), e.level(z), tissue)
        for e, tissue in (*((k, _KIDNEY) for k in kidneys), (spleen, _SPLEEN))
    ]
    liver_parts = [(_Blob.of(grid, e), e.level(z)) for e in (liver, left_lobe)]
    lesion_parts = [(_Blob.of(grid, e), e.level(z), kind) for e, kind in lesions]
    aorta = _Blob(grid, aorta_cx, aorta_cy, aorta_r, aorta_r)
    ivc = _Blob(grid, ivc_cx, ivc_cy, 1.2 * aorta_r, 0.9 * aorta_r)
    vertebra = _Blob(grid, 0.0, spine_cy, vert_r, vert_r)
    marrow_level = (1.0 - min(2.0, 0.12 * vert_r) / vert_r) ** 2  # ~2 mm cortical rim
    canal_cy = spine_cy + 1.45 * vert_r
    canal = _Blob(grid, 0.0, canal_cy, 0.45 * vert_r, 0.40 * vert_r)
    arch = _Blob(grid, 0.0, canal_cy, 0.85 * vert_r, 0.75 * vert_r)
    spinous = _Blob(grid, 0.0, canal_cy + 0.95 * vert_r, 0.18 * vert_r, 0.55 * vert_r)
    paraspinal = [
        _Blob(grid, s * 0.45 * vert_r * 2.2, canal_cy, 0.9 * vert_r, vert_r) for s in (-1, 1)
    ]
    in_disc = ((z - disc_phase) % vert_pitch) < disc_mm
    table_top = body_cy + body_b + 0.015 * f
    table_shell = (np.abs(x) < 0.42 * f) & (y > table_top) & (y < table_top + 0.03 * f)
    table_core = table_shell & (y > table_top + 0.005 * f) & (y < table_top + 0.025 * f)
    # Ribs: short arcs in the chest wall whose angle drifts with z, which draws oblique rib
    # cross-sections; none near the midline (spine, sternum).
    rib_band = (q_cavity > 0.94) & (q_cavity < 1.12) & (np.abs(x) > 0.08 * f)
    rib_idx = np.flatnonzero(rib_band)
    rib_angle = np.arctan2(np.broadcast_to(y, (size, size)), np.broadcast_to(x, (size, size)))
    rib_angle = np.abs(rib_angle).ravel()[rib_idx] / np.pi
    rib_bottom = liver.cz - 0.5 * liver.az

    tissue_hu = _TISSUE_HU.copy()
    tissue_hu[_LIVER] = liver_hu
    noise = _NoiseBank(noise_seed, nz, size, size)
    hu = np.empty((nz, size, size), dtype=np.int16)
    labels = np.empty((nz, size, size), dtype=np.uint8)
    # Slice by slice into one small tissue buffer, mapped to HU and labels while it is in cache:
    # painting a whole tissue volume first and mapping it afterwards is ~3x slower.
    t = np.empty((size, size), dtype=np.uint8)
    for k in range(nz):
        zk = float(z[k])
        # Scale the body outline a little along z (wider chest, slimmer pelvis).
        g = 1.0 + 0.05 * (zk / zf - 0.5) + 0.015 * np.sin(zk / 37.0)
        g2 = g * g
        t.fill(_FAT)  # visceral, retroperitoneal and mediastinal fat around the organs
        for blob, level, tissue in organs:
            blob.paint(t, tissue, level[k])
        for blob in paraspinal:
            blob.paint(t, _MUSCLE)
        for tubes in vessels:
            for _, cx, cy, r in zip(*tubes.at(zk), strict=True):
                grid.paint_ellipse(t, _LUNG_VESSEL, cx, cy, r, r, only=_LUNG)
        if stomach_level[k] > 0 and stomach_blob.box is not None:
            gas_rows = grid.c[stomach_blob.box[0]] < stomach_gas
            mask = (stomach_blob.q <= stomach_level[k]) & gas_rows[:, None]
            np.copyto(t[stomach_blob.box], _GAS, where=mask)
        for i, cx, cy, r in zip(*bowel.at(zk), strict=True):
            grid.paint_ellipse(t, _SOFT, cx, cy, r, r)
            lumen = _GAS if bowel_gas[i] else _FLUID
            grid.paint_ellipse(t, lumen, cx, cy, 0.75 * r, 0.75 * r)
        for blob, level, tissue in late_organs:
            blob.paint(t, tissue, level[k])
        for blob, level in liver_parts:
            blob.paint(t, _LIVER, level[k])
        for _, cx, cy, r in zip(*hepatic.at(zk), strict=True):
            grid.paint_ellipse(t, _LIVER_VESSEL, cx, cy, r, r, only=_LIVER)
        for blob, level, kind in lesion_parts:
            blob.paint(t, kind, level[k], only=_LIVER)  # lesions stay inside the liver
        if zk < heart.cz:
            ivc.paint(t, _IVC)
        aorta.paint(t, _AORTA)
        if in_disc[k]:
            vertebra.paint(t, _DISC)
        else:
            vertebra.paint(t, _CORTEX)
            vertebra.paint(t, _MARROW, marrow_level)
            arch.paint(t, _ARCH)
            spinous.paint(t, _ARCH)
        canal.paint(t, _CANAL)
        # Body layers last, so every organ is enclosed by the body by construction.
        np.copyto(t, _MUSCLE, where=q_cavity > g2)
        if zk > rib_bottom:
            phase = (rib_angle * 6.0 + zk / rib_pitch + rib_phase) % 1.0
            t.ravel()[rib_idx[phase < 0.3]] = _RIB
        np.copyto(t, _FAT, where=q_inner > g2)
        np.copyto(t, _AIR, where=q_body > g2)
        np.copyto(t, _TABLE, where=table_shell)
        np.copyto(t, _TABLE_CORE, where=table_core)

        np.take(_TISSUE_LABEL, t, out=labels[k], mode="clip")
        h = hu[k]
        np.take(tissue_hu, t, out=h, mode="clip")
        h += noise.window(k)
        np.maximum(h, -_HU_OFFSET, out=h)  # the DICOM encoding stores HU + 1024 as unsigned

    number = case_index + 1
    return DemoPhantom(
        hu=hu,
        labels=labels,
        spacing=(pixel, pixel, dz),
        origin=(origin_xy, origin_xy, origin_z),
        patient_id=f"DEMO-{number:03d}",
        patient_name=f"Demo^Patient{number:02d}",
        study_date=str(study_day).replace("-", ""),
        study_description="CT abdomen (synthetic demo)",
        series_description=f"Axial {dz:g} mm portal venous",
        study_time=study_time,
        patient_birth_date=birth,
        patient_sex=patient_sex,
        case_index=case_index,
    )


class _NoiseBank:
    """Seeded Gaussian noise for each slice, cheaply.

    Drawing one normal per voxel costs more than building the whole phantom, so slices take
    shifted windows of a small bank of noise images; the repetition is invisible to a reader.
    """

    def __init__(self, seed: int, nz: int, rows: int, cols: int) -> None:
        rng = np.random.default_rng(seed)
        pad = max(8, min(rows, cols) // 4)
        n_bank = min(nz, 4)
        bank = rng.normal(0.0, _NOISE_SIGMA_HU, size=(n_bank, rows + pad, cols + pad))
        self._bank = np.rint(bank).astype(np.int16)
        self._offsets = rng.integers(0, pad + 1, size=(nz, 2))
        self._which = rng.integers(0, n_bank, size=nz)
        self._rows, self._cols = rows, cols

    def window(self, k: int) -> np.ndarray:
        """The ``(rows, cols)`` int16 noise image of slice ``k`` (a view into the bank)."""
        dy, dx = self._offsets[k]
        return self._bank[self._which[k], dy : dy + self._rows, dx : dx + self._cols]


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_ct_series(
    ph: DemoPhantom,
    folder: Path,
    *,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    series_number: int = 1,
    uid_seed: str = "",
) -> list[Path]:
    """Write a phantom as a CT series, one ``IMnnnn.dcm`` file per slice.

    CT Image Storage, Explicit VR Little Endian, with file meta. Everything is deterministic:
    SOP Instance UIDs derive from ``uid_seed``, the series UID and the slice number, dates and
    times come from the phantom, so two runs write byte-identical files. Older ``IM*.dcm`` files
    in ``folder`` that are not part of this series (say, from a run with more slices) are removed,
    so rewriting a series never leaves a mix behind.

    Parameters
    ----------
    ph
        The phantom to write.
    folder
        Destination folder, created when missing.
    study_uid, series_uid, frame_of_reference_uid
        The UIDs shared by all slices.
    series_number
        DICOM SeriesNumber.
    uid_seed
        Extra entropy for the SOP Instance UIDs.

    Returns
    -------
    list of Path
        The written files, in slice order (inferior to superior).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nz, rows, cols = ph.hu.shape
    col_sp, row_sp, dz = ph.spacing

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CASEITER_DEMO"

    # One dataset reused for every slice: only the per-slice elements change (fast, and the
    # element set is identical across slices).
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ph.study_date
    ds.SeriesDate = ph.study_date
    ds.ContentDate = ph.study_date
    ds.StudyTime = ph.study_time
    ds.SeriesTime = ph.study_time
    ds.ContentTime = ph.study_time
    ds.AccessionNumber = f"DEMO{ph.case_index + 1:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = "CaseIterator demo"
    ds.InstitutionName = "CaseIterator"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = ph.study_description
    ds.SeriesDescription = ph.series_description
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.PatientName = ph.patient_name
    ds.PatientID = ph.patient_id
    ds.PatientBirthDate = ph.patient_birth_date
    ds.PatientSex = ph.patient_sex
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = _ds(dz)
    ds.KVP = "120"
    ds.SpacingBetweenSlices = _ds(dz)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1  # Type 2 in the CT Image module
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [_ds(ph.origin[0]), _ds(ph.origin[1]), _ds(ph.origin[2])]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds(ph.origin[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [_ds(row_sp), _ds(col_sp)]  # DICOM order: between rows, then columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = str(-_HU_OFFSET)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"

    if ph.hu.min() < -_HU_OFFSET:
        raise ValueError(f"hu below {-_HU_OFFSET} cannot be stored with RescaleIntercept -1024")
    ds["PixelData"] = DataElement(_PIXEL_DATA, "OW", b"")
    encoder = _SliceEncoder(ds)
    paths: list[Path] = []
    for k in range(nz):
        sop_uid = _uid("caseiterator-demo-sop", uid_seed, series_uid, ph.case_index, k)
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        z_mm = ph.origin[2] + k * dz
        ds.ImagePositionPatient = [_ds(ph.origin[0]), _ds(ph.origin[1]), _ds(z_mm)]
        ds.SliceLocation = _ds(z_mm)
        # int16 HU >= -1024 plus 1024 fits uint16; the unsigned view makes the sum wrap right.
        stored = ph.hu[k].view(np.uint16) + np.uint16(_HU_OFFSET)
        ds["PixelData"].value = stored.astype("<u2", copy=False).tobytes()
        path = folder / f"IM{k + 1:04d}.dcm"
        path.write_bytes(encoder.encode(ds))
        paths.append(path)

    keep = {p.name for p in paths}
    for stale in folder.glob("IM*.dcm"):
        if stale.name not in keep:
            stale.unlink()
    return paths


class _SliceEncoder:
    """Encode the slices of one series as DICOM files, fast and exactly as pydicom would.

    pydicom spends ~5 ms per file on the ~60 header elements, which dominated writing a series.
    Only a few elements differ between slices, so the others are encoded once, in runs between
    the per-slice ones, and each file is the concatenation. The bytes are those of
    ``Dataset.save_as(..., enforce_file_format=True)`` (the unit tests check the round trip).
    """

    def __init__(self, ds: pydicom.Dataset) -> None:
        self._encoding = convert_encodings(ds.get("SpecificCharacterSet", "ISO_IR 6"))
        self._parts: list[bytes | int] = []
        run = pydicom.Dataset()
        # Per-slice tags take their place in tag order even if not set yet (elements are written
        # in ascending tag order).
        for tag in sorted({int(elem.tag) for elem in ds} | _PER_SLICE_TAGS):
            if tag in _PER_SLICE_TAGS:
                if len(run):
                    self._parts.append(self._encode_dataset(run))
                    run = pydicom.Dataset()
                self._parts.append(tag)
            else:
                run.add(ds[tag])
        if len(run):
            self._parts.append(self._encode_dataset(run))

    def _encode_dataset(self, ds: pydicom.Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds, parent_encoding=self._encoding)
        return fp.getvalue()

    def encode(self, ds: pydicom.Dataset) -> bytes:
        """The whole file: preamble, ``DICM``, file meta, then the dataset."""
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        for part in self._parts:
            if isinstance(part, bytes):
                fp.write(part)
            else:
                write_data_element(fp, ds[part], self._encoding)
        return fp.getvalue()


def _case_uids(ph: DemoPhantom, variant: str) -> dict[str, str]:
    """Study, series and frame-of-reference UIDs of a demo case, stable for (variant, case).

    ``variant`` names the seed and the image size: batches with other pixels get other UIDs,
    so a DICOM database never mistakes one for the other.
    """
    base = ("caseiterator-demo", variant, ph.patient_id)
    return {
        "study_uid": _uid(*base, "study"),
        "series_uid": _uid(*base, "series", 1),
        "frame_of_reference_uid": _uid(*base, "frame-of-reference"),
    }


def write_demo_batch(
    out_dir: Path,
    n_cases: int = 3,
    *,
    size: int = 512,
    n_slices: int | None = None,
    seed: int = DEFAULT_SEED,
    progress: ProgressCallback = no_progress,
) -> Path:
    """Write the demo batch: DICOM CT series and a ``demo.toml`` batch file next to them.

    Layout::

        out_dir/demo.toml
        out_dir/dicom/DEMO-001/CT_abdomen/IM0001.dcm ...

    Each case is one patient with one study holding one CT series. Running it again overwrites
    the same files; series and patients of an earlier, bigger demo batch are removed from
    ``dicom/`` (only ``DEMO-nnn`` folders holding nothing but demo files are touched).

    Parameters
    ----------
    out_dir
        Folder of the batch, created when missing.
    n_cases
        Number of cases (patients ``DEMO-001`` ... ).
    size, n_slices, seed
        Passed to :func:`phantom`.
    progress
        Called as ``progress(done, n_cases, message)`` before the first and after each case.

    Returns
    -------
    Path
        The batch file ``out_dir/demo.toml``.
    """
    if not 1 <= n_cases <= 999:
        raise ValueError(f"n_cases must be 1-999, got {n_cases}")
    out_dir = Path(out_dir)
    dicom_dir = out_dir / "dicom"
    dicom_dir.mkdir(parents=True, exist_ok=True)
    progress(0, n_cases, f"Writing {n_cases} demo cases")
    variant = f"seed={seed} size={size} slices={n_slices}"
    written: set[str] = set()
    for index in range(n_cases):
        ph = phantom(index, size=size, n_slices=n_slices, seed=seed)
        write_ct_series(
            ph,
            dicom_dir / ph.patient_id / _SERIES_FOLDER,
            series_number=1,
            uid_seed=variant,
            **_case_uids(ph, variant),
        )
        written.add(ph.patient_id)
        progress(index + 1, n_cases, f"Wrote demo case {ph.patient_id} ({index + 1}/{n_cases})")
    _remove_stale_cases(dicom_dir, written)
    toml_path = out_dir / _BATCH_TOML
    toml_path.write_text(_TOML, encoding="utf-8", newline="\n")
    return toml_path


def _remove_stale_cases(dicom_dir: Path, keep: set[str]) -> None:
    """Delete demo patients left over from an earlier, bigger batch (only our own files)."""
    for patient in dicom_dir.iterdir():
        if patient.name in keep or not _DEMO_PATIENT.match(patient.name) or not patient.is_dir():
            continue
        series = patient / _SERIES_FOLDER
        if series.is_dir():
            for f in series.glob("IM*.dcm"):
                f.unlink()
            if not any(series.iterdir()):
                series.rmdir()
        if not any(patient.iterdir()):
            patient.rmdir()


def write_demo_csv_batch(
    out_dir: Path,
    n_cases: int = 2,
    *,
    size: int = 128,
    n_slices: int | None = 40,
    seed: int = DEFAULT_SEED,
    image_format: str = "nrrd",
) -> Path:
    """Write a SlicerCaseIterator-style CSV batch of image and mask files.

    Layout::

        out_dir/cases.csv                 ID,path,image,mask
        out_dir/case_01/image.nrrd        int16 HU
        out_dir/case_01/mask.nrrd         uint8: 1 liver, 2 liver lesion, 0 elsewhere

    ``path`` is the case folder relative to the CSV and ``image``/``mask`` are bare file names,
    so a reader must join them (the SlicerCaseIterator root-path rule).

    Parameters
    ----------
    out_dir
        Folder of the batch, created when missing.
    n_cases
        Number of cases.
    size, n_slices, seed
        Passed to :func:`phantom`.
    image_format
        ``"nrrd"`` or ``"nii.gz"``.

    Returns
    -------
    Path
        The CSV table ``out_dir/cases.csv``.
    """
    import SimpleITK as sitk  # only this writer needs it; keeps importing the module light

    if image_format not in ("nrrd", "nii.gz"):
        raise ValueError(f"image_format must be 'nrrd' or 'nii.gz', got {image_format!r}")
    if n_cases < 1:
        raise ValueError(f"n_cases must be positive, got {n_cases}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    for index in range(n_cases):
        ph = phantom(index, size=size, n_slices=n_slices, seed=seed)
        case_name = f"case_{index + 1:02d}"
        case_dir = out_dir / case_name
        case_dir.mkdir(exist_ok=True)
        mask = np.where(ph.labels <= 2, ph.labels, 0).astype(np.uint8)
        names = (f"image.{image_format}", f"mask.{image_format}")
        for array, name in zip((ph.hu, mask), names, strict=True):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(ph.spacing)
            image.SetOrigin(ph.origin)
            image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
            sitk.WriteImage(image, str(case_dir / name), useCompression=True)
        rows.append([ph.patient_id, case_name, *names])
    csv_path = out_dir / "cases.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["ID", "path", "image", "mask"])
        writer.writerows(rows)
    return csv_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the demo batch (or the CSV batch) into a folder."""
    parser = argparse.ArgumentParser(description="Write the CaseIterator synthetic demo data.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("-n", "--cases", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--csv", action="store_true", help="write the CSV (NRRD) batch instead")
    args = parser.parse_args(argv)
    if args.csv:
        path = write_demo_csv_batch(
            args.out_dir, args.cases, size=args.size, n_slices=args.slices, seed=args.seed
        )
    else:
        path = write_demo_batch(
            args.out_dir,
            args.cases,
            size=args.size,
            n_slices=args.slices,
            seed=args.seed,
            progress=lambda done, total, message: print(message),
        )
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
