"""Image grids and volumes in patient coordinates (LPS, as DICOM and ITK use).

Arrays are indexed ``[k, j, i]`` (slice, row, column), the order of
``SimpleITK.GetArrayFromImage``; ``spacing`` and the direction columns are in ``(i, j, k)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: LPS (DICOM, ITK) to RAS (Slicer) flips the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Geometry:
    """A regular 3D grid: size, origin, spacing and direction.

    Parameters
    ----------
    size
        Number of voxels along ``(i, j, k)``.
    origin
        Centre of voxel ``(0, 0, 0)`` in LPS millimetres.
    spacing
        Voxel size along ``(i, j, k)`` in millimetres.
    direction
        3x3 matrix whose columns are the unit vectors of the ``i``, ``j`` and ``k`` axes in LPS.
    """

    size: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: np.ndarray

    def __post_init__(self) -> None:
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", direction)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(k, j, i)`` of a volume on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    def ijk_to_lps(self) -> np.ndarray:
        """Return the 4x4 matrix from voxel index ``(i, j, k, 1)`` to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """Return the 4x4 matrix from voxel index to RAS millimetres (Slicer's convention)."""
        flip = np.eye(4)
        flip[:3, :3] = LPS_TO_RAS
        return flip @ self.ijk_to_lps()

    def describe(self) -> str:
        """Short human-readable summary: size, spacing and origin."""
        size = "x".join(str(n) for n in self.size)
        spacing = " x ".join(f"{s:.4g}" for s in self.spacing)
        origin = ", ".join(f"{o:.2f}" for o in self.origin)
        return f"{size} voxels of {spacing} mm at ({origin})"

    def mismatch(self, other: Geometry, *, tolerance: float = 1e-3) -> str | None:
        """Describe how ``other`` differs from this grid, or return None when it is the same.

        ``tolerance`` is relative to the voxel size for origin and spacing and absolute for the
        direction cosines, so rounding in file headers does not count as a difference.
        """
        differences = []
        if tuple(self.size) != tuple(other.size):
            differences.append(
                f"size {'x'.join(map(str, other.size))} instead of {'x'.join(map(str, self.size))}"
            )
        spacing_a, spacing_b = np.asarray(self.spacing), np.asarray(other.spacing)
        if not np.allclose(spacing_a, spacing_b, rtol=tolerance, atol=0):
            differences.append(f"spacing {_fmt(spacing_b)} mm instead of {_fmt(spacing_a)} mm")
        if not np.allclose(self.direction, other.direction, atol=max(tolerance, 1e-4)):
            differences.append("a different orientation")
        offset = np.abs(np.asarray(other.origin) - np.asarray(self.origin))
        if np.any(offset > tolerance * spacing_a.min() + 1e-4):
            differences.append(f"origin {_fmt(other.origin)} instead of {_fmt(self.origin)}")
        return "; ".join(differences) or None

    def voxel_offset_in(
        self, other: Geometry, *, tolerance: float = 1e-3
    ) -> tuple[int, int, int] | None:
        """Return the integer index of this grid's origin on ``other``, when it lies on it.

        Used to accept a cropped mask (such as a Slicer ``.seg.nrrd`` saved to its minimal
        extent) that sits exactly on the image grid. Returns None when it does not, or when
        this grid reaches outside ``other``.
        """
        if not np.allclose(self.spacing, other.spacing, rtol=tolerance, atol=0):
            return None
        if not np.allclose(self.direction, other.direction, atol=max(tolerance, 1e-4)):
            return None
        to_index = np.linalg.inv(other.ijk_to_lps())
        index = to_index @ np.append(np.asarray(self.origin, dtype=float), 1.0)
        rounded = np.round(index[:3])
        if np.any(np.abs(index[:3] - rounded) > max(tolerance, 1e-2)):
            return None
        start = rounded.astype(int)
        end = start + np.asarray(self.size)
        if np.any(start < 0) or np.any(end > np.asarray(other.size)):
            return None
        return (int(start[0]), int(start[1]), int(start[2]))


def _fmt(values: object) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.asarray(values).ravel()) + ")"


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxel values on a :class:`Geometry`.

    Parameters
    ----------
    array
        Voxel values indexed ``[k, j, i]``; rescaled (Hounsfield units for CT).
    geometry
        Where the voxels are in the patient.
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a volume array must be 3D, got shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(
                f"array shape {self.array.shape} does not match grid shape {self.geometry.shape}"
            )

    @property
    def nbytes(self) -> int:
        """Bytes held by the voxel array."""
        return int(self.array.nbytes)
