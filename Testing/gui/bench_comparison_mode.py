"""Timings of comparison mode on full-size cases (prints numbers; no assertion).

``python Testing/gui/bench_comparison_mode.py [SIZE] [SLICES]``: three phantom CT cases
(default 512x512x100) with a mask and a shifted prediction; for each case, the time from
opening it to its comparison on screen, the worker's time and the GUI thread's; then starting
from the prediction and from the majority vote, and an outline toggle with its render.
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


def main(size: int, slices: int) -> None:
    import test_comparison_mode as fixture
    from Qt import QtWidgets

    from CaseIteratorCoreLib.batch_file import load_batch
    from CaseIteratorCoreLib.demo_data import phantom
    from CaseIteratorCoreLib.progress_store import ProgressStore
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.comparison_mode import ComparisonMode
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow

    # The fixture's cases at full size (it asks for small ones).
    fixture.phantom = lambda n, **_: phantom(n, size=size, n_slices=slices)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        os.environ["CASEITERATOR_DATA_DIR"] = str(folder / "data")
        batch = load_batch(fixture.write_batch(folder / "batch"))
        source = open_source(batch)
        cases = list(source.iter_cases())
        store = ProgressStore(folder / "progress.sqlite")
        session = ReadingSession.open(batch, source, cases, store, "bench")
        window = ReadingWindow(session)
        window.resize(1600, 1000)
        window.show()
        mode = ComparisonMode(window, batch.compare, confirm_replace=lambda *_: True)

        def spin(condition, timeout: float = 300.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition() and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.005)

        print(f"{len(cases)} cases {size}x{size}x{slices}")
        for index, case in enumerate(cases):
            started = time.perf_counter()
            if index:
                window.editing.mark_saved()
                window.go_to(index)
            else:
                window.start()
            spin(lambda case=case: mode.current is not None and mode.current.case_id == case.id)
            print(
                f"case {index + 1}: opened to comparison shown "
                f"{time.perf_counter() - started:.2f} s; worker "
                f"{mode.current.comparison.seconds:.2f} s; GUI thread "
                f"{mode.last_show_seconds * 1000:.0f} ms"
            )
        for label, action in (
            ("start from the prediction", lambda: mode.accept("prediction")),
            ("start from the majority", mode.start_from_majority),
            ("outline toggle and render", lambda: mode.panel.set_outline("mask", True)),
        ):
            started = time.perf_counter()
            action()
            print(f"{label}: {(time.perf_counter() - started) * 1000:.0f} ms (GUI thread)")
        spin(lambda: len(mode.worst_dice) == len(cases))
        mode.close()
        window.editing.mark_saved()
        window.close()
        store.close()
        source.close()


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    main(*(arguments + [512, 100][len(arguments) :]))
