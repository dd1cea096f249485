"""Screenshot of the reading window in comparison mode, with the application's look.

``python Testing/gui/screenshot_comparison_mode.py OUT.png`` writes a three-case CSV batch
(the phantom's liver as the mask, a shifted copy as a model's prediction; see
``test_comparison_mode``), opens it styled as the app is, waits for the comparison of the first
case and of the batch, orders the list worst first and grabs the window offscreen.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
sys.path.insert(0, str(Path(__file__).parent))


def _wait(app, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the comparison did not appear")
        app.processEvents()
        time.sleep(0.01)


def main(out: Path) -> None:
    from Qt import QtWidgets
    from test_comparison_mode import write_batch

    from CaseIteratorCoreLib.batch_file import load_batch
    from CaseIteratorCoreLib.progress_store import ProgressStore
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.comparison_mode import ComparisonMode
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow
    from CaseReaderLib.style import apply_style

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    apply_style(app)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CASEITERATOR_DATA_DIR"] = str(Path(folder) / "data")
        batch = load_batch(write_batch(Path(folder) / "batch"))
        source = open_source(batch)
        cases = list(source.iter_cases())
        store = ProgressStore(Path(folder) / "progress.sqlite")
        session = ReadingSession.open(batch, source, cases, store, "dr.demo")
        window = ReadingWindow(session)
        window.resize(1600, 1000)
        window.show()
        mode = ComparisonMode(window, batch.compare)
        window.start()
        _wait(app, lambda: mode.current is not None and len(mode.worst_dice) == len(cases))
        mode.set_order("disagreement")
        mode.panel.set_outline("mask", True)
        for _ in range(20):
            app.processEvents()
        for view in window.views.views.values():
            view.render_now()
        out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(out))
        mode.close()
        window.editing.mark_saved()
        window.close()
        store.close()
        source.close()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "comparison-mode.png"))
