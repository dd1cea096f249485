"""Putting a loaded volume into a slicer-core MRML scene (GUI thread only: VTK is not thread-safe).

The voxel array is wrapped, not copied, and the display node is made by hand with the window
computed in the background: ``CreateDefaultDisplayNodes`` would spend ~0.5 s on a histogram.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import Volume


def _matrix4(values: np.ndarray) -> Any:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            matrix.SetElement(row, col, float(values[row, col]))
    return matrix


def volume_to_node(
    scene: Any,
    volume: Volume,
    name: str,
    *,
    window: tuple[float, float] | None = None,
    color_node_id: str | None = "vtkMRMLColorTableNodeGrey",
) -> Any:
    """Add ``volume`` to ``scene`` as a ``vtkMRMLScalarVolumeNode`` and return the node.

    Parameters
    ----------
    scene
        A ``vtkMRMLScene``.
    volume
        The voxels and geometry (LPS); the node gets the matching IJK-to-RAS matrix.
    name
        Node name shown to the reader.
    window
        Window centre and width; None leaves the display node's defaults.
    color_node_id
        Grey colour table of the scene's colours logic; None to leave it unset.
    """
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    array = np.ascontiguousarray(volume.array)
    image = vtk.vtkImageData()
    image.SetDimensions(*volume.geometry.size)
    scalars = numpy_to_vtk(array.reshape(-1), deep=False)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    image._caseiterator_array = array  # keeps the wrapped numpy buffer alive with the image

    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    node.SetIJKToRASMatrix(_matrix4(volume.geometry.ijk_to_ras()))
    node.SetAndObserveImageData(image)

    display = slicer.vtkMRMLScalarVolumeDisplayNode()
    scene.AddNode(display)
    display.AutoWindowLevelOff()
    if window is not None:
        display.SetWindowLevel(float(window[1]), float(window[0]))
    if color_node_id and scene.GetNodeByID(color_node_id) is not None:
        display.SetAndObserveColorNodeID(color_node_id)
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def node_ijk_to_ras(node: Any) -> np.ndarray:
    """Return a volume node's IJK-to-RAS matrix as a numpy array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
