"""The Slicer scene behind the reading window: trame-slicer's core, three offscreen slice views.

No trame server is involved ("serverless mode"): views come from ``DirectViewFactory`` and
render offscreen (EGL on machines without a display); Qt widgets show their pixels (see
:mod:`.slice_view_widget`). Everything here runs on the GUI thread, because VTK and MRML are
not thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The three slice views of the reading window, in display order, with Slicer's view colours.
SLICE_VIEWS: tuple[tuple[str, str], ...] = (
    ("Axial", "#F34A33"),
    ("Sagittal", "#EFD64D"),
    ("Coronal", "#6DAD4A"),
)

#: Background of the slice views (Slicer's is black; a near-black keeps the calm look).
VIEW_BACKGROUND = "#000000"


def quiet_vtk_output(log_file: Path | None = None) -> None:
    """Send VTK warnings to a log file instead of the reader's terminal.

    trame-slicer and VTK 9.6 print deprecation warnings (``WindowResizeEvent``) for every view;
    a finished product does not show them. Errors still go to ``log_file`` for support.
    """
    from vtkmodules.vtkCommonCore import vtkFileOutputWindow, vtkLogger, vtkOutputWindow

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    if log_file is None:
        window = vtkOutputWindow()
        window.SetDisplayModeToNever()
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        window = vtkFileOutputWindow()
        window.SetFileName(str(log_file))
        window.AppendOn()
        window.FlushOn()
    vtkOutputWindow.SetInstance(window)


class ReadingScene:
    """The MRML scene, Slicer logics and the three slice views of one reading window.

    Parameters
    ----------
    vtk_log
        File that receives VTK's warnings and errors (None: they are dropped).

    Attributes
    ----------
    app
        trame-slicer's ``SlicerApp`` (scene, logics, segmentation editor).
    views
        The slice views by name (``"Axial"``, ``"Sagittal"``, ``"Coronal"``).
    """

    def __init__(self, vtk_log: Path | None = None) -> None:
        from trame_slicer.core import SlicerApp
        from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

        self.app = SlicerApp()
        quiet_vtk_output(vtk_log)  # after SlicerApp, which installs its own stderr window
        self.app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
        self.views: dict[str, Any] = {}
        for name, color in SLICE_VIEWS:
            definition = ViewLayoutDefinition.slice_view(name, label=name, color=color)  # type: ignore[arg-type]
            view = self.app.view_manager.create_view(definition)
            # 8x MSAA (trame-slicer's default) costs ~0.2 s per frame on llvmpipe and brings
            # nothing to a 2D image: it is what makes scrolling slow on CPU-only stations.
            view.render_window().SetMultiSamples(0)
            view.set_background_color_from_string(VIEW_BACKGROUND)
            self.views[name] = view
        self.app.view_manager.set_current_view_ids(list(self.views))
        #: The 3D view, made on first use (:meth:`three_d_view`); None until then.
        self.three_d: Any | None = None
        self.volume_node: Any | None = None
        self.set_navigation_mode()

    # -- scene -----------------------------------------------------------------------------

    @property
    def scene(self) -> Any:
        """The ``vtkMRMLScene``."""
        return self.app.scene

    def slice_logic(self, name: str) -> Any:
        """The ``vtkMRMLSliceLogic`` of view ``name``."""
        return self.app.app_logic.GetSliceLogic(self.views[name].get_view_node())

    def iter_views(self) -> Iterator[tuple[str, Any]]:
        """``(name, view)`` pairs in display order."""
        yield from self.views.items()

    def three_d_view(self) -> Any:
        """The 3D view (segment surfaces), made on first use.

        Off by default: without a GPU every edit rebuilds and renders surfaces on the CPU.
        """
        if self.three_d is None:
            from trame_slicer.views import ViewLayoutDefinition

            definition = ViewLayoutDefinition.threed_view(
                name="ThreeD", label="3D", background_color=VIEW_BACKGROUND
            )
            view = self.app.view_manager.create_view(definition)
            view.render_window().SetMultiSamples(0)  # see the slice views
            self.three_d = view
            # A view outside the current ones has its rendering blocked by trame-slicer.
            self.app.view_manager.set_current_view_ids([*self.views, "ThreeD"])
        return self.three_d

    def set_navigation_mode(self) -> None:
        """Left-drag adjusts window/level (as in Slicer's "Adjust window/level" mouse mode).

        In Slicer's default "view transform" mode the left button does nothing in slice views;
        readers expect window/level there. Segment editor effects take the left button back
        while they are active (their pipelines claim events before this widget).
        """
        node = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if node is not None:
            node.SetCurrentInteractionMode(node.AdjustWindowLevel)

    def show_volume(self, node: Any) -> None:
        """Show volume ``node`` in the three views and drop the previous case's volume.

        The views are fitted to the volume and put on its middle slices.
        """
        previous = self.volume_node
        self.volume_node = node
        for _, view in self.iter_views():
            with view.render_blocked():
                view.set_background_volume_id(node.GetID())
                view.set_foreground_volume_id(None)
        if previous is not None and previous is not node:
            self.remove_node(previous)
        self.reset_views()

    def reset_views(self) -> None:
        """Fit every view to the volume and go to its middle slice."""
        for name, view in self.iter_views():
            with view.render_blocked():
                view.fit_view_to_content()
                low, high = view.get_slice_range()
                step = view.get_slice_step() or 1.0
                # Middle slice on the voxel grid, so no view shows an interpolated slice.
                middle = low + round((high - low) / 2.0 / step) * step
                self.slice_logic(name).SetSliceOffset(middle)
            view.schedule_render()
        if self.three_d is not None:
            self.three_d.fit_view_to_content()
            self.three_d.schedule_render()

    def remove_node(self, node: Any) -> None:
        """Remove ``node`` and its display and storage nodes from the scene."""
        if node is None or node.GetScene() is None:
            return
        for index in range(node.GetNumberOfDisplayNodes()):
            display = node.GetNthDisplayNode(index)
            if display is not None:
                self.scene.RemoveNode(display)
        storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
        if storage is not None:
            self.scene.RemoveNode(storage)
        self.scene.RemoveNode(node)

    def close(self) -> None:
        """Release the render windows (call once, when the reading window closes)."""
        if self.three_d is not None:
            # Drop the surfaces' graphics while the render window still has its context, and
            # the view's registration: a 3D view left to interpreter exit can crash there.
            self.three_d.set_render_blocked(True)
            for renderer in self.three_d.renderers():
                renderer.RemoveAllViewProps()
            self.three_d.render_window().Finalize()
            self.app.view_manager.remove_view("ThreeD")
            self.three_d = None
        for _, view in self.iter_views():
            view.set_render_blocked(True)
            view.render_window().Finalize()
