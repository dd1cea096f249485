"""A loaded volume becomes a slicer-core MRML volume node with the exact geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.image_files import read_dicom_files
from CaseIteratorCoreLib.mrml_volume import node_ijk_to_ras, volume_to_node

from series_factory import write_series

slicer = pytest.importorskip("slicer", reason="slicer-core is a pinned dependency")
pytestmark = pytest.mark.slicer


def test_volume_node_has_the_dicom_geometry_in_ras(tmp_path: Path) -> None:
    a = np.radians(10)
    orientation = (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0)
    files = write_series(tmp_path, n=5, orientation=orientation, origin=(10.0, -20.0, 30.0))
    volume, _, problems = read_dicom_files(files)
    assert problems == []
    scene = slicer.vtkMRMLScene()
    node = volume_to_node(scene, volume, "CT", window=(40.0, 400.0))
    matrix = node_ijk_to_ras(node)
    # Voxel (i, j, k) = (3, 2, 4) must land where DICOM says, with L and P flipped to R and A.
    lps = volume.geometry.ijk_to_lps() @ np.array([3, 2, 4, 1.0])
    ras = matrix @ np.array([3, 2, 4, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-6)
    np.testing.assert_allclose(node.GetOrigin(), [-10.0, 20.0, 30.0], atol=1e-4)
    np.testing.assert_allclose(node.GetSpacing(), volume.geometry.spacing, atol=1e-6)
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (400.0, 40.0)
    assert not display.GetAutoWindowLevel()


def test_voxels_are_wrapped_not_copied(tmp_path: Path) -> None:
    from vtk.util.numpy_support import vtk_to_numpy

    files = write_series(tmp_path, n=3)
    volume, _, _ = read_dicom_files(files)
    scene = slicer.vtkMRMLScene()
    node = volume_to_node(scene, volume, "CT")
    scalars = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
    assert np.shares_memory(scalars, volume.array)
    np.testing.assert_array_equal(scalars.reshape(volume.array.shape), volume.array)
    assert node.GetImageData().GetDimensions() == volume.geometry.size
