"""Measure how responsive the reading window stays while it prefetches, autosaves and saves.

Run with ``QT_QPA_PLATFORM=offscreen VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
.venv/bin/python Testing/gui/bench_responsiveness.py [DEMO_DIR] [--cases 4 --size 512
--slices 300]``. The real :class:`~CaseReaderLib.reading_window.ReadingWindow` walks a demo
batch: on each case it waits for the case, paints a stroke with mouse events, lets the
reader "read" for ``--dwell`` seconds (the prefetcher loads the next cases meanwhile, the
draft is written), then presses Save & Next (the result is built and written in the
background). A 10 ms QTimer records the gaps of the event loop; a gap is a stall of
``gap - 10 ms``. Stalls that overlap the case switch itself (wrapping the volume, filling the
segments, rendering the views: the window's ``_on_loaded``, and the render just after it) and
the benchmark's own stroke and Save & Next calls are counted apart, as the target (under
100 ms) is for everything else. ``--diagnose`` prints every thread's stack during a long stall
(a stall where even that sampler cannot run is a thread holding the GIL in C code, or the
process waiting for a CPU). Prints a summary and one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

TICK_MS = 10
#: A gap starting this soon after a case switch or a stroke is counted with it (its renders).
TAIL_S = 0.03


def main(argv: list[str] | None = None) -> int:
    """Walk the batch and print the event-loop stalls."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", nargs="?", type=Path)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--dwell", type=float, default=4.0, help="seconds on each case")
    parser.add_argument("--depth", type=int, default=2, help="prefetch depth")
    parser.add_argument(
        "--fill",
        action="store_true",
        help="also fill three large overlapping segments (organ-sized) before each save",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="freeze the start-up objects out of the GC before the walk (as caseiterator app does)",
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="print the GUI thread's stack during long stalls"
    )
    args = parser.parse_args(argv)

    folder = args.demo_dir or Path(tempfile.mkdtemp(prefix="caseiterator-bench-"))
    data = Path(tempfile.mkdtemp(prefix="caseiterator-bench-data-"))
    os.environ["CASEITERATOR_DATA_DIR"] = str(data)  # progress, drafts: not the user's

    from Qt import QtCore, QtTest, QtWidgets

    from CaseIteratorCoreLib.batch_file import PrefetchSpec, load_batch
    from CaseIteratorCoreLib.demo_data import write_demo_batch
    from CaseIteratorCoreLib.progress_store import ProgressStore
    from CaseIteratorCoreLib.sources import open_source
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow, freeze_startup_objects

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    batch_file = folder / "demo.toml"
    if not batch_file.exists():
        print(f"writing {args.cases} demo cases ({args.size}x{args.size}x{args.slices}) …")
        write_demo_batch(folder, args.cases, size=args.size, n_slices=args.slices)
    batch = load_batch(batch_file)
    source = open_source(batch)
    cases = list(source.iter_cases())[: args.cases]
    store = ProgressStore()
    # A reader of its own: results of earlier runs in the batch folder are not resumed.
    session = ReadingSession.open(batch, source, cases, store, f"dr.bench-{os.getpid()}")
    spec = PrefetchSpec(depth=args.depth, max_memory_mb=batch.prefetch.max_memory_mb)
    window = ReadingWindow(session, prefetch=spec)
    window.resize(1600, 980)
    window.show()

    # The case switch on the GUI thread: the window's _on_loaded (wrap, fill, render).
    switches: list[tuple[float, float]] = []
    original = window._on_loaded

    def timed_on_loaded(case_id, loaded):
        started = time.perf_counter()
        original(case_id, loaded)
        switches.append((started, time.perf_counter()))

    window.loader.loaded.disconnect(window._on_loaded)
    window.loader.loaded.connect(timed_on_loaded)

    # What a save costs in the background thread (it used to run on the GUI thread).
    save_worker: list[float] = []
    original_save = window.saver.save

    def timed_save(layers, loaded):
        started = time.perf_counter()
        try:
            return original_save(layers, loaded)
        finally:
            save_worker.append(time.perf_counter() - started)

    window.saver.save = timed_save

    ticks: list[float] = []
    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.001)

    def wait_shown(index: int, limit: float = 120.0) -> None:
        end = time.perf_counter() + limit
        while not (window.loaded is not None and window.current_index == index):
            if time.perf_counter() > end:
                raise SystemExit(f"case {index + 1} did not open within {limit} s")
            spin(0.01)

    def fill_large() -> None:
        """Three organ-sized segments, the second inside the first (overlap), as edits."""
        import numpy as np

        from CaseIteratorCoreLib.mrml_segmentation import fill_segments
        from CaseIteratorCoreLib.segmentation import Segmentation

        geometry = window.loaded.image.volume.geometry
        nk, nj, ni = geometry.shape
        z, y, x = np.ogrid[:nk, :nj, :ni]
        big = ((z - nk / 2) / (nk / 4)) ** 2 + ((y - nj / 2) / (nj / 4)) ** 2
        big = big + ((x - ni / 2.5) / (ni / 4)) ** 2 < 1
        small = (z - nk / 2) ** 2 + (y - nj / 2) ** 2 + (x - ni / 2.5) ** 2 < (nj / 20) ** 2
        third = ((z - nk / 2) / (nk / 6)) ** 2 + ((y - nj / 2) / (nj / 8)) ** 2
        third = third + ((x - ni * 0.8) / (ni / 12)) ** 2 < 1
        segments = list(window.editing.segments)
        masks = [big, small, third][: len(segments)]
        masks += [np.zeros(geometry.shape, bool)] * (len(segments) - len(masks))
        fill_segments(
            window.editing.node,
            window.editing.segment_ids,
            Segmentation.from_masks(masks, geometry, segments),
        )
        window.editing.undo_stack.reset_clean()  # unsaved edits

    def paint() -> float:
        window.tools.choose("paint")
        axial = window.views.views["Axial"]
        centre = QtCore.QPoint(axial.width() // 2, axial.height() // 2)
        left = QtCore.Qt.MouseButton.LeftButton
        none = QtCore.Qt.KeyboardModifier.NoModifier
        points = [centre + QtCore.QPoint(dx, dx // 3) for dx in range(-60, 61, 8)]
        started = time.perf_counter()
        QtTest.QTest.mouseMove(axial, points[0])
        QtTest.QTest.mousePress(axial, left, none, points[0])
        for point in points[1:]:
            QtTest.QTest.mouseMove(axial, point)
        QtTest.QTest.mouseRelease(axial, left, none, points[-1])
        actions.append((started, time.perf_counter()))
        return time.perf_counter() - started

    stacks: list[tuple[float, str]] = []
    measuring_from = time.perf_counter()
    if args.diagnose:
        import threading
        import traceback

        main_id = threading.get_ident()
        stop = threading.Event()

        def watchdog() -> None:  # samples the GUI thread while its event loop is stalled
            seen = None
            while not stop.wait(0.05):
                last = ticks[-1] if ticks else None
                if last is None or time.perf_counter() - last < 0.12 or last == seen:
                    continue
                seen = last
                frames = sys._current_frames()
                names = {t.ident: t.name for t in threading.enumerate()}
                parts = []
                for ident, frame in frames.items():  # the GUI thread, then who holds the GIL
                    if ident == threading.get_ident():
                        continue
                    depth = -8 if ident == main_id else -4
                    text = "".join(traceback.format_stack(frame)[depth:])
                    parts.append(f"[{names.get(ident, ident)}]\n{text}")
                stacks.append((last - measuring_from, "".join(parts)))

        watcher = threading.Thread(target=watchdog, daemon=True)
        watcher.start()

    if args.gc_freeze:
        freeze_startup_objects()
    walk_started = time.perf_counter()
    window.start()
    wait_shown(0)
    if args.gc_freeze:
        import gc

        started = time.perf_counter()
        gc.collect()
        took = (time.perf_counter() - started) * 1000
        print(f"full GC pass once the first case is shown: {took:.0f} ms")
    spin(1.0)  # first render compiles shaders; let the prefetch of the next cases begin
    timer.start()
    measuring_from = time.perf_counter()
    save_gui: list[float] = []
    actions: list[tuple[float, float]] = []  # the benchmark's own paint and Save & Next calls
    paint_times: list[float] = []
    for index in range(len(cases)):
        wait_shown(index)
        paint_times.append(paint())
        if args.fill:
            fill_large()
        spin(args.dwell)  # reading; prefetch and the draft run in the background
        started = time.perf_counter()
        window.save_and_next()  # snapshot on the GUI thread; the write runs in the background
        save_gui.append(time.perf_counter() - started)
        actions.append((started, time.perf_counter()))
    spin(2.0)
    timer.stop()
    window.wait_for_saves()
    walk_seconds = time.perf_counter() - walk_started

    # Gaps between ticks; a stall is what exceeds the tick interval.
    tick_s = TICK_MS / 1000
    stalls_outside: list[float] = []
    stalls_switch: list[float] = []
    stalls_action: list[float] = []
    worst: list[tuple[float, float]] = []
    # The views render once more just after a switch or a stroke (deferred renders): the gap
    # that starts within TAIL_S of its end belongs to it.
    for before, after in itertools.pairwise(ticks):
        stall = max(0.0, after - before - tick_s)
        if any(s < after and e + TAIL_S > before for s, e in switches):
            stalls_switch.append(stall)
        elif any(s < after and e + TAIL_S > before for s, e in actions):
            stalls_action.append(stall)  # the mouse stroke or the Save & Next call itself
        else:
            stalls_outside.append(stall)
            worst.append((stall, before - measuring_from))
    switch_s = [e - s for s, e in switches if s >= measuring_from]
    done = sum(1 for i in range(len(cases)) if session.status(i).value == "done")
    result = {
        "cases": len(cases),
        "size": f"{args.size}x{args.size}x{args.slices}",
        "prefetch_depth": args.depth,
        "dwell_s": args.dwell,
        "ticks": len(ticks),
        "longest_stall_outside_switch_ms": round(max(stalls_outside, default=0) * 1000, 1),
        "p99_stall_outside_switch_ms": round(
            (sorted(stalls_outside)[int(0.99 * (len(stalls_outside) - 1))] if stalls_outside else 0)
            * 1000,
            1,
        ),
        "stalls_over_100ms_outside_switch": sum(s > 0.1 for s in stalls_outside),
        "longest_stall_in_switch_ms": round(max(stalls_switch, default=0) * 1000, 1),
        "longest_stall_in_reader_action_ms": round(max(stalls_action, default=0) * 1000, 1),
        "worst_outside_ms_at_s": [
            (round(a * 1000), round(b, 2)) for a, b in sorted(worst, reverse=True)[:5]
        ],
        "case_switch_gui_ms": [round(s * 1000) for s in switch_s],
        "save_and_next_gui_ms": [round(s * 1000) for s in save_gui],
        "save_in_background_ms": [round(s * 1000) for s in save_worker],
        "paint_stroke_ms": [round(s * 1000) for s in paint_times],
        "draft_copy_gui_ms": round(window.last_draft_copy_seconds * 1000, 1),
        "cases_saved": done,
        "walk_s": round(walk_seconds, 1),
    }
    print(
        f"longest event-loop stall outside the case switch: "
        f"{result['longest_stall_outside_switch_ms']} ms "
        f"(p99 {result['p99_stall_outside_switch_ms']} ms, "
        f"{result['stalls_over_100ms_outside_switch']} over 100 ms, {len(ticks)} ticks)"
    )
    print(f"longest stall during a case switch: {result['longest_stall_in_switch_ms']} ms")
    if switch_s:
        print(
            f"case switch on the GUI thread: median {statistics.median(switch_s) * 1000:.0f} ms, "
            f"max {max(switch_s) * 1000:.0f} ms"
        )
    print(f"Save & Next on the GUI thread (copy + open next): {result['save_and_next_gui_ms']} ms")
    print(f"draft copy on the GUI thread: {result['draft_copy_gui_ms']} ms")
    print(f"save (build + write) in the background: {result['save_in_background_ms']} ms")
    print(f"cases saved: {done} of {len(cases)}")
    for at, text in stacks:
        print(f"--- GUI thread stalled at {at:.2f} s:\n{text}")
    print(json.dumps(result))
    window.editing.mark_saved()
    window.close()
    store.close()
    source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
