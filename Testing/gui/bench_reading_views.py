"""Measure the reading views: case-switch cost and interaction frame times.

Run with ``QT_QPA_PLATFORM=offscreen VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
.venv/bin/python Testing/gui/bench_reading_views.py [DEMO_DIR]``. Cases are loaded beforehand
(as the prefetcher would), so the numbers are the GUI-thread part of "Next": wrapping the numpy
array as a volume node, switching the views to it, and rendering the three views.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms (n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    """Print case-switch and interaction timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("demo_dir", nargs="?", type=Path)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--view", type=int, default=600, help="view width and height (pixels)")
    args = parser.parse_args(argv)

    from Qt import QtCore, QtGui, QtWidgets

    from CaseIteratorCoreLib.batch_file import load_batch
    from CaseIteratorCoreLib.demo_data import write_demo_batch
    from CaseIteratorCoreLib.loading import load_case
    from CaseIteratorCoreLib.mrml_volume import volume_to_node
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.reading_scene import SLICE_VIEWS, ReadingScene
    from CaseReaderLib.slice_view_widget import SliceViewWidget

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv)
    folder = args.demo_dir or Path(tempfile.mkdtemp(prefix="caseiterator-bench-"))
    batch_file = folder / "demo.toml"
    if not batch_file.exists():
        print(f"writing 3 demo cases ({args.size}x{args.size}) into {folder}")
        write_demo_batch(folder, 3, size=args.size)
    source = open_source(load_batch(batch_file))
    loaded = [load_case(source, case) for case in source.iter_cases()]
    for case in loaded:
        print(f"  {case.case.name}: {case.image.volume.geometry.describe()}")

    scene = ReadingScene()
    window = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(window)
    layout.setContentsMargins(0, 0, 0, 0)
    widgets = []
    for name, color in SLICE_VIEWS:
        widget = SliceViewWidget(name, scene.views[name], scene.slice_logic(name), color)
        layout.addWidget(widget)
        widgets.append(widget)
    window.resize(3 * args.view, args.view)
    window.show()
    app.processEvents()

    switch, wrap = [], []
    for turn in range(9):
        case = loaded[turn % len(loaded)]
        started = time.perf_counter()
        node = volume_to_node(
            scene.scene, case.image.volume, case.case.name, window=case.image.window
        )
        wrapped = time.perf_counter()
        scene.show_volume(node)
        for widget in widgets:
            widget.render_now()
        done = time.perf_counter()
        if turn:  # the first switch compiles shaders
            wrap.append(wrapped - started)
            switch.append(done - started)
    print(f"case switch (wrap + show + render 3 views): {_ms(switch)}")
    print(f"  of which volume_to_node: {_ms(wrap)}")

    axial = widgets[0]
    centre = QtCore.QPointF(axial.width() / 2, axial.height() / 2)
    frames = []
    for step in range(20):
        delta = 120 if step % 10 < 5 else -120
        event = QtGui.QWheelEvent(
            centre,
            axial.mapToGlobal(centre),
            QtCore.QPoint(),
            QtCore.QPoint(0, delta),
            QtCore.Qt.MouseButton.NoButton,
            QtCore.Qt.KeyboardModifier.NoModifier,
            QtCore.Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        started = time.perf_counter()
        QtWidgets.QApplication.sendEvent(axial, event)
        app.processEvents()
        frames.append(time.perf_counter() - started)
    print(f"slice scroll (wheel event to new frame shown): {_ms(frames)}")

    drag = []
    press = QtGui.QMouseEvent(
        QtCore.QEvent.Type.MouseButtonPress,
        centre,
        axial.mapToGlobal(centre),
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(axial, press)
    for step in range(20):
        point = centre + QtCore.QPointF(3 * step, 2 * step)
        move = QtGui.QMouseEvent(
            QtCore.QEvent.Type.MouseMove,
            point,
            axial.mapToGlobal(point),
            QtCore.Qt.MouseButton.NoButton,
            QtCore.Qt.MouseButton.LeftButton,
            QtCore.Qt.KeyboardModifier.NoModifier,
        )
        started = time.perf_counter()
        QtWidgets.QApplication.sendEvent(axial, move)
        app.processEvents()
        drag.append(time.perf_counter() - started)
    print(f"window/level drag (3 views re-render per move): {_ms(drag)}")
    print(f"axial render + read-back alone: {axial.last_render_seconds * 1000:.0f} ms")
    window.close()
    scene.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
