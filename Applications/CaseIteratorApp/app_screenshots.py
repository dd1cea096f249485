"""Make the README screenshots from the real application.

``python -m CaseIteratorApp.app_screenshots [OUT_DIR]`` (default ``Resources/screenshots``)
writes a fresh demo batch into a temporary data folder, opens the real reading window on it,
records some earlier progress (cases done and skipped), and segments the liver and a lesion of
the current case with the Paint tool through simulated mouse strokes, as a reader would. Then
it saves the window (``main-window.png``), the skip dialog and the splash; last, the demo
images go into the local DICOM database and the DICOM browser is shown on it
(``dicom-browser.png``).

Runs without a display (``QT_QPA_PLATFORM=offscreen`` is the default here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Window size of the screenshots (a common reading-station resolution, scaled down).
SIZE = (1600, 1000)


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by ``steps`` pixels (4-neighbourhood), numpy only."""
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:, :] &= out[:-1, :]
        shrunk[:-1, :] &= out[1:, :]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        out = shrunk
    return out


def _wait(app, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the reading window did not get ready")
        app.processEvents()
        time.sleep(0.01)


class _Painter:
    """Paints label regions of the demo phantom into the axial view with real mouse events."""

    def __init__(self, window, app) -> None:
        import vtk

        self.window = window
        self.app = app
        self.axial = window.views.views["Axial"]
        self.logic = window.scene.slice_logic("Axial")
        node = window.scene.volume_node
        self.ijk_to_ras = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(self.ijk_to_ras)
        self.ras_to_ijk = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(self.ijk_to_ras, self.ras_to_ijk)
        self.spacing = node.GetSpacing()

    def go_to_slice(self, k: int) -> None:
        z = self.ijk_to_ras.MultiplyPoint((0.0, 0.0, float(k), 1.0))[2]
        self.logic.SetSliceOffset(z)
        self.axial.render_now()

    def _widget_point(self, i: float, j: float, k: float):
        import vtk
        from Qt import QtCore

        ras = self.ijk_to_ras.MultiplyPoint((i, j, k, 1.0))
        xy_to_ras = self.axial.view.get_view_node().GetXYToRAS()
        ras_to_xy = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(xy_to_ras, ras_to_xy)
        x, y, _, _ = ras_to_xy.MultiplyPoint(ras)
        ratio = self.axial.devicePixelRatioF()
        height = round(self.axial.height() * ratio)
        return QtCore.QPoint(round(x / ratio), round((height - 1 - y) / ratio))

    def paint(self, mask: np.ndarray, k: int, brush_mm: float) -> None:
        """Paint the inside of ``mask`` (``[j, i]`` on slice ``k``) row by row."""
        from Qt import QtCore
        from Qt.QtTest import QTest

        self.go_to_slice(k)
        radius_px = max(1, round(brush_mm / 2 / self.spacing[0]))
        inside = _erode(mask, radius_px)
        step = max(1, round(brush_mm * 0.6 / self.spacing[1]))
        left = QtCore.Qt.MouseButton.LeftButton
        for j in range(0, inside.shape[0], step):
            columns = np.flatnonzero(inside[j])
            if columns.size == 0:
                continue
            # Each run of consecutive columns is one stroke.
            runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
            for run in runs:
                points = [self._widget_point(i, j, k) for i in run[:: max(1, step // 2)]]
                points.append(self._widget_point(run[-1], j, k))
                QTest.mouseMove(self.axial, points[0])
                QTest.mousePress(self.axial, left, QtCore.Qt.KeyboardModifier.NoModifier, points[0])
                for point in points[1:]:
                    QTest.mouseMove(self.axial, point)
                QTest.mouseRelease(
                    self.axial, left, QtCore.Qt.KeyboardModifier.NoModifier, points[-1]
                )
                self.app.processEvents()


def browser_screenshot(app, out_dir: Path, dicom_dir: Path) -> Path:
    """The DICOM browser on a local database holding ``dicom_dir``: a study and its series
    selected, thumbnails shown (``dicom-browser.png``)."""
    from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase, default_database_dir
    from CaseIteratorCoreLib.server_settings import ServerSettings
    from CaseReaderLib.dicom_browser import DicomBrowserDialog

    print("importing the demo images into the local DICOM database…", flush=True)
    with LocalDicomDatabase(default_database_dir()) as database:
        database.import_paths(dicom_dir)
    # A configured PACS shows as its own tab; it is not contacted for the picture.
    servers = {"pacs": ServerSettings("pacs", "https://pacs.hospital.example/dicom-web")}
    dialog = DicomBrowserDialog(servers)
    dialog.resize(SIZE[0] - 160, SIZE[1] - 120)
    dialog.show()
    tab = dialog.current_tab
    _wait(app, lambda: tab.searched_once)
    tab.studies.selectRow(1)
    _wait(app, lambda: tab.series.rowCount() > 0 and tab.thumbnails_shown == tab.series.rowCount())
    tab.series.selectRow(0)
    tab.series.setFocus()
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    path = out_dir / "dicom-browser.png"
    dialog.grab().save(str(path))
    dialog.close()
    return path


def make_screenshots(out_dir: Path, cases: int = 5, *, only: str = "all") -> list[Path]:
    """Write the screenshots into ``out_dir`` (``only="browser"``: just the DICOM browser);
    return their paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    data = Path(tempfile.mkdtemp(prefix="caseiterator-screens-"))
    os.environ["CASEITERATOR_DATA_DIR"] = str(data)
    os.environ["CASEITERATOR_SITE_SETTINGS"] = ""

    from Qt import QtCore, QtWidgets

    from CaseIteratorCoreLib.batch_file import load_batch
    from CaseIteratorCoreLib.demo_data import phantom, write_demo_batch
    from CaseIteratorCoreLib.progress_store import ProgressStore
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow
    from CaseReaderLib.skip_dialog import SkipDialog
    from CaseReaderLib.style import apply_style

    from .app_splash import Splash

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    apply_style(app)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    if only != "browser":
        splash = Splash()
        splash.show_centered()
        splash.set_message("Starting the Slicer core…")
        path = out_dir / "splash.png"
        splash.grab().save(str(path))
        written.append(path)
        splash.close()

    print(f"writing {cases} demo cases…", flush=True)
    batch_file = write_demo_batch(data / "demo", cases)
    if only == "browser":
        return [browser_screenshot(app, out_dir, batch_file.parent / "dicom")]
    batch = load_batch(batch_file)
    source = open_source(batch)
    case_list = list(source.iter_cases())
    store = ProgressStore()
    reader = "dr.demo"
    progress = store.for_batch(batch.key, reader)
    # Earlier work of this reader: two cases read, one skipped.
    for index, seconds in ((0, 312.0), (1, 268.0)):
        progress.open_case(case_list[index].id)
        progress.add_time(case_list[index].id, seconds)
        progress.mark_done(case_list[index].id)
    progress.open_case(case_list[2].id)
    progress.mark_skipped(case_list[2].id, "Image quality too poor (motion, noise, artefacts)")
    current = 3

    session = ReadingSession.open(batch, source, case_list, store, reader)
    window = ReadingWindow(session)
    window.resize(*SIZE)
    window.show()
    window.start()
    _wait(app, lambda: window.loaded is not None and window.current_index == current)

    print("painting the liver and a lesion…", flush=True)
    ph = phantom(current, size=512)
    labels = ph.labels
    assert labels.shape == window.loaded.image.volume.array.shape
    lesion_slices = np.flatnonzero((labels == 2).reshape(labels.shape[0], -1).any(axis=1))
    liver_area = (labels == 1).reshape(labels.shape[0], -1).sum(axis=1)
    k0 = int(lesion_slices[np.argmax(liver_area[lesion_slices])]) if lesion_slices.size else 0
    painter = _Painter(window, app)
    window.tools.choose("paint")
    window.tools.sphere_brush.setChecked(True)
    window.tools.brush_slider.setValue(12)
    window.editing.set_active_index(0)
    liver = (labels == 1) | (labels == 2)
    # A sphere brush reaches its radius above and below: paint every slice within it.
    slice_mm = painter.spacing[2]
    span = max(3, round(45.0 / slice_mm))  # ~9 cm of liver around the lesion
    step = max(1, int(6.0 / slice_mm))
    for k in range(max(0, k0 - span), min(labels.shape[0], k0 + span + 1), step):
        painter.paint(liver[k], k, 12.0)
    window.editing.set_active_index(1)
    window.tools.brush_slider.setValue(5)
    for k in range(max(0, k0 - span), min(labels.shape[0], k0 + span + 1)):
        if (labels[k] == 2).any():
            painter.paint(labels[k] == 2, k, 5.0)
    window.tools.choose("paint")
    painter.go_to_slice(k0)
    # Sagittal and coronal through the lesion.
    js, is_ = np.nonzero(labels[k0] == 2) if lesion_slices.size else (np.array([256]), [256])
    centre = window.scene.volume_node
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    centre.GetIJKToRASMatrix(ijk_to_ras)
    ras = ijk_to_ras.MultiplyPoint((float(np.mean(is_)), float(np.mean(js)), float(k0), 1.0))
    window.scene.slice_logic("Sagittal").SetSliceOffset(ras[0])
    window.scene.slice_logic("Coronal").SetSliceOffset(ras[1])
    # Rest the mouse outside the views, as in a still picture.
    window.tools.brush_slider.setFocus()
    window.views.render_all()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    path = out_dir / "main-window.png"
    window.grab().save(str(path))
    written.append(path)

    dialog = SkipDialog(case_list[current].name, window)
    dialog.choose("Structure of interest not in the field of view")
    dialog.show()
    app.processEvents()
    path = out_dir / "skip-dialog.png"
    dialog.grab().save(str(path))
    written.append(path)
    dialog.close()

    window.editing.mark_saved()
    window.close()
    store.close()
    source.close()
    QtCore.QCoreApplication.processEvents()
    written.append(browser_screenshot(app, out_dir, batch_file.parent / "dicom"))
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line of the screenshot script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "Resources" / "screenshots"
    parser.add_argument("out_dir", nargs="?", type=Path, default=default)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument(
        "--only", choices=("all", "browser"), default="all", help="browser: the DICOM browser only"
    )
    args = parser.parse_args(argv)
    for path in make_screenshots(args.out_dir, args.cases, only=args.only):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
