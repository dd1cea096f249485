"""``caseiterator bench next-case``: how long "Next" takes, loading on demand and prefetching.

The benchmark starts a real Orthanc (the test harness ``Testing/orthanc_server.py``) holding N
synthetic 512x512x300 CT series, puts the link simulator (``Testing/link_simulator.py``) in
front of it with a hospital-PACS or remote-archive profile, and walks the batch the way a
reader does: look at the case for a while (the pause), press "Next". Each "Next" is timed from
the key press to the volume node in the scene and the three slice views rendered offscreen
(trame-slicer core, the reading window's :class:`~CaseReaderLib.reading_scene.ReadingScene`,
EGL), for

(a) on-demand loading, as SlicerCaseIterator and Slicer's DICOMweb import do: the case is
    retrieved and decoded when the reader asks for it (a fresh local cache for each case);
(b) the :class:`~CaseIteratorCoreLib.prefetch.Prefetcher`, in the same run.

It also reports the floor no prefetcher can beat (switching the views between two volumes
already in the scene), the peak memory against the idle app, and the retrieval throughput
against a plain download of the same WADO-RS response with curl through the same link.

Orthanc binds every interface: run the benchmark inside a network namespace that has only
loopback (``unshare -n`` then ``ip link set lo up``, as ``Testing/run_tests.sh`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from rich.markup import escape
from rich.table import Table

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.cases import Case, DicomSeriesRef
from CaseIteratorCoreLib.errors import CaseIteratorError
from CaseIteratorCoreLib.loading import LoadedCase, load_case
from CaseIteratorCoreLib.prefetch import LoadState, Prefetcher
from CaseIteratorCoreLib.sources import BatchSource, open_source
from CaseIteratorCoreLib.sources.dicomweb import WADO_ACCEPT

from . import console

LINKS = ("loopback", "1gbit", "100mbit")
#: The reader's shortest look at a case, per the product brief (30 s to 5 min).
MAX_AUTO_PAUSE_S = 30.0
MIN_AUTO_PAUSE_S = 2.0
VIEW_SIZE = 600
FLOOR_REPEATS = 10
#: Targets of the issue, checked and printed with the numbers.
TARGET_PREFETCHED_P95_S = 0.25
TARGET_ABOVE_FLOOR_S = 0.10
TARGET_RATIO_100MBIT = 10.0
TARGET_THROUGHPUT_RATIO = 0.8
#: Downloads of the series with curl and with the app, each (the medians are compared).
THROUGHPUT_REPEATS = 3
CURL = ("curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}")


#: Receives the progress lines of a run (the command prints them on stderr).
Report = Callable[[str], None]


class BenchError(CaseIteratorError):
    """The benchmark cannot run as asked (what is missing and what to do)."""


@dataclass
class NextCaseOptions:
    """What ``caseiterator bench next-case`` runs.

    Parameters
    ----------
    source
        A DICOMweb URL, or a batch file / CSV / DICOM folder; None starts a private Orthanc
        with synthetic cases (needs the repository's ``Testing/`` folder).
    cases
        Number of cases to walk (the first N of ``source``).
    link
        Link profile between the app and the server: ``loopback``, ``1gbit`` or ``100mbit``.
    depth
        Prefetch depth.
    pause_s
        Reading pause before each "Next"; None picks 1.5 x the on-demand p95 + the prefetch
        delay (2-30 s): time for one case to arrive in the background, as a reader's 30 s to
        5 min per case gives.
    size, slices
        Rows/columns and slices of the synthetic series.
    prefetch_delay_s
        The prefetcher's hold of new work after each "Next" (``Prefetcher`` argument).
    """

    source: str | None = None
    cases: int = 8
    link: str = "loopback"
    depth: int = 2
    pause_s: float | None = None
    size: int = 512
    slices: int = 300
    prefetch_delay_s: float = 0.5


@dataclass
class _Walk:
    """The timings of one walk through the batch."""

    next_s: list[float] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)
    switch_s: list[float] = field(default_factory=list)
    first_open_s: float = 0.0
    ready_at_next: int = 0
    peak_rss_mb: float = 0.0
    volume_mb: list[float] = field(default_factory=list)
    #: Resident memory when the walk starts, then after each "Next" (where the peak builds up).
    rss_trace_mb: list[float] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRss:
    """Samples the resident memory every 5 ms in a thread; ``peak_mb`` since ``reset()``."""

    def __init__(self) -> None:
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_mb())

    def reset(self) -> None:
        self._peak = _rss_mb()

    @property
    def peak_mb(self) -> float:
        return max(self._peak, _rss_mb())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4)}


def _testing_module(name: str) -> ModuleType:
    """Import a harness module from the repository's ``Testing/`` folder."""
    testing = Path(__file__).resolve().parents[2] / "Testing"
    if not (testing / f"{name}.py").is_file():
        raise BenchError(
            f"the test harness ({name}.py) is not here: this is an installed package without the "
            "repository's Testing/ folder. Run the benchmark from a source checkout, or give "
            "--source URL (a DICOMweb server) with --link loopback."
        )
    if str(testing) not in sys.path:
        sys.path.insert(0, str(testing))
    return importlib.import_module(name)


def _warn_if_networked(report: Callable[[str], None]) -> None:
    try:  # the interfaces of this process's network namespace (not /sys, the host's view)
        interfaces = [name for _, name in socket.if_nameindex() if name != "lo"]
    except OSError:
        return
    if interfaces:
        report(
            "[yellow]warning:[/yellow] this process sees network interfaces "
            f"({', '.join(interfaces)}): Orthanc binds all of them. Run inside "
            "`unshare -n sh -c 'ip link set lo up && ...'`."
        )


def _web_batch(folder: Path, url: str, cache: Path) -> BatchSource:
    folder.mkdir(parents=True, exist_ok=True)
    batch = folder / "bench.toml"
    batch.write_text(
        f'name = "bench"\n\n[source]\ntype = "dicomweb"\nurl = "{url}"\n'
        f'cache = "{cache}"\ntimeout_s = 120\n',
        encoding="utf-8",
    )
    return open_source(load_batch(batch))


class _Sources:
    """Makes sources of the benchmark's batch, each with its own local cache when it has one."""

    def __init__(self, work: Path, url: str | None = None, batch_path: Path | None = None):
        self.work = work
        self.url = url
        self.batch = load_batch(batch_path) if batch_path is not None else None
        self._count = 0

    @property
    def is_web(self) -> bool:
        return self.url is not None or (
            self.batch is not None and self.batch.source.type == "dicomweb"
        )

    def fresh(self, label: str) -> tuple[BatchSource, Path]:
        """A source whose local DICOM cache (if any) is a new, empty folder."""
        self._count += 1
        cache = self.work / f"cache-{label}-{self._count}"
        if self.url is not None:
            return _web_batch(self.work / f"batch-{self._count}", self.url, cache), cache
        assert self.batch is not None
        batch = self.batch
        if batch.source.type == "dicomweb":
            options = {**batch.source.options, "cache": str(cache)}
            batch = dataclasses.replace(
                batch, source=dataclasses.replace(batch.source, options=options)
            )
        return open_source(batch), cache


# -- the scene -------------------------------------------------------------------------------


class _Views:
    """The reading window's scene and three slice views, offscreen, without Qt.

    In the app each view's render requests become one coalesced repaint per Qt event-loop
    turn (``CaseReaderLib.slice_view_widget``); here they mark the view, and :meth:`flush`
    renders each marked view once, as that turn would (without the read-back into a QImage).
    """

    def __init__(self) -> None:
        from trame_slicer.views.render_scheduler import ScheduledRenderStrategy

        from CaseReaderLib.reading_scene import ReadingScene

        dirty: set[int] = set()

        class Coalesced(ScheduledRenderStrategy):
            def schedule_render(self) -> None:
                dirty.add(id(self.abstract_view))

        self._dirty = dirty
        self.scene = ReadingScene()
        for _, view in self.scene.iter_views():
            view.set_scheduled_render(Coalesced())
            view.render_window().SetSize(VIEW_SIZE, VIEW_SIZE)

    @property
    def window_class(self) -> str:
        _, view = next(self.scene.iter_views())
        return str(view.render_window().GetClassName())

    def flush(self) -> None:
        """Render every view that asked for it, once (one event-loop turn of the app)."""
        for _, view in self.scene.iter_views():
            if id(view) in self._dirty:
                view.render()
        self._dirty.clear()

    def switch(self, loaded: LoadedCase) -> None:
        """What "Next" does on the GUI thread: wrap the array, show it (dropping the previous
        case's node), render."""
        from CaseIteratorCoreLib.mrml_volume import volume_to_node

        image = loaded.image
        node = volume_to_node(self.scene.scene, image.volume, loaded.case.name, window=image.window)
        self.scene.show_volume(node)
        self.flush()

    def floor(self, cases: tuple[LoadedCase, LoadedCase]) -> float:
        """Median time to switch between two volumes already in the scene, and render."""
        from CaseIteratorCoreLib.mrml_volume import volume_to_node

        nodes = [
            volume_to_node(self.scene.scene, c.image.volume, c.case.name, window=c.image.window)
            for c in cases
        ]
        times = []
        for turn in range(FLOOR_REPEATS + 1):
            node = nodes[turn % 2]
            started = time.perf_counter()
            for _, view in self.scene.iter_views():
                with view.render_blocked():
                    view.set_background_volume_id(node.GetID())
            self.scene.reset_views()  # fit, middle slice
            self.flush()
            if turn:
                times.append(time.perf_counter() - started)
        self.scene.volume_node = nodes[turn % 2]
        self.scene.remove_node(nodes[(turn + 1) % 2])
        self.clear()
        return float(np.median(times))

    def clear(self) -> None:
        """Drop the shown volume without rendering the empty views."""
        if self.scene.volume_node is not None:
            self.scene.remove_node(self.scene.volume_node)
            self.scene.volume_node = None
        self._dirty.clear()

    def warm_up(self, loaded: LoadedCase) -> float:
        """One switch before timing (the first render compiles shaders); returns the memory
        the views take to show a case beside its volume (slices, textures), in MiB."""
        before = _rss_mb()
        self.switch(loaded)
        shown = _rss_mb() - before
        self.release()
        return shown

    def release(self) -> None:
        """Make the views let go of every case volume and show a placeholder image.

        The slice pipelines keep the image data of the volume shown before the current one
        alive (its node removed) until the next switch; two switches to a tiny volume flush
        both. The views then show that 2x4x4 placeholder: an app whose views show an image
        holds their view-sized buffers (reslice output, colours, textures: ~14 MB of
        ``malloc`` for three 600x600 views, whatever the image), and the memory measured after
        this is the app's own, not any case's.
        """
        from CaseIteratorCoreLib.geometry import Geometry, Volume
        from CaseIteratorCoreLib.mrml_volume import volume_to_node

        for _ in range(2):
            tiny = Volume(
                np.zeros((2, 4, 4), dtype=np.int16),
                Geometry((4, 4, 2), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3)),
            )
            self.scene.show_volume(volume_to_node(self.scene.scene, tiny, "placeholder"))
            self.flush()
        gc.collect()

    def close(self) -> None:
        self.clear()
        self.scene.close()


# -- the walks -------------------------------------------------------------------------------


def _walk_on_demand(
    views: _Views, sources: _Sources, cases: Sequence[Case], rss: _PeakRss, report: Report
) -> _Walk:
    """Each case retrieved and decoded when asked for, from an empty cache, then shown."""
    walk = _Walk()
    rss.reset()
    for number, case in enumerate(cases):
        source, cache = sources.fresh("on-demand")
        try:
            started = time.perf_counter()
            loaded = load_case(source, case)
            loaded_at = time.perf_counter()
            views.switch(loaded)
            done = time.perf_counter()
        finally:
            source.close()
            shutil.rmtree(cache, ignore_errors=True)
        walk.volume_mb.append(loaded.nbytes / 2**20)
        del loaded
        if number == 0:
            walk.first_open_s = done - started
        else:
            walk.next_s.append(done - started)
            walk.wait_s.append(loaded_at - started)
            walk.switch_s.append(done - loaded_at)
        report(f"  on demand: case {number + 1}/{len(cases)} in {done - started:.2f} s")
    walk.peak_rss_mb = rss.peak_mb
    views.release()
    return walk


def _walk_prefetched(
    views: _Views,
    sources: _Sources,
    cases: Sequence[Case],
    options: NextCaseOptions,
    pause_s: float,
    rss: _PeakRss,
    report: Report,
) -> tuple[_Walk, float]:
    """The same walk with the prefetcher; returns the walk and the render floor."""
    walk = _Walk()
    source, cache = sources.fresh("prefetch")
    gc.collect()
    rss.reset()
    walk.rss_trace_mb.append(round(_rss_mb(), 1))
    try:
        with Prefetcher(
            source, cases, depth=options.depth, prefetch_delay_s=options.prefetch_delay_s
        ) as prefetcher:
            started = time.perf_counter()
            prefetcher.set_current(0)
            views.switch(prefetcher.get(0))
            walk.first_open_s = time.perf_counter() - started
            for number in range(1, len(cases)):
                time.sleep(pause_s)  # the reader reads; the prefetcher works
                was_ready = prefetcher.state(number).state is LoadState.READY
                started = time.perf_counter()
                prefetcher.set_current(number)
                loaded = prefetcher.get(number)
                got = time.perf_counter()
                views.switch(loaded)
                done = time.perf_counter()
                walk.ready_at_next += was_ready
                walk.next_s.append(done - started)
                walk.wait_s.append(got - started)
                walk.switch_s.append(done - got)
                walk.volume_mb.append(loaded.nbytes / 2**20)
                del loaded
                walk.rss_trace_mb.append(round(_rss_mb(), 1))
                report(
                    f"  prefetched: case {number + 1}/{len(cases)} in {done - started:.3f} s"
                    + ("" if was_ready else " (was not ready)")
                )
            walk.peak_rss_mb = rss.peak_mb
            last, previous = prefetcher.peek(len(cases) - 1), prefetcher.peek(len(cases) - 2)
            views.clear()
            assert last is not None and previous is not None
            floor = views.floor((previous, last))
            del last, previous
    finally:
        source.close()
        shutil.rmtree(cache, ignore_errors=True)
    return walk, floor


def _throughput(
    sources: _Sources, case: Case, base_url: str | None
) -> dict[str, float | int | None]:
    """Retrieval into the local DICOM database vs curl of the same WADO-RS response."""
    ref = case.image
    result: dict[str, float | int | None] = {
        "bytes": None,
        "plain_s": None,
        "retrieve_s": None,
        "plain_mb_s": None,
        "retrieve_mb_s": None,
        "ratio": None,
    }
    if not isinstance(ref, DicomSeriesRef) or base_url is None or shutil.which("curl") is None:
        return result
    url = f"{base_url}/studies/{ref.study_uid}/series/{ref.series_uid}"
    plain_times: list[float] = []
    retrieve_times: list[float] = []
    size = "0"
    # Interleaved and repeated (median of each): one download is at the mercy of whatever
    # else the machine does in that second.
    for _ in range(THROUGHPUT_REPEATS):
        answer = subprocess.run(
            [*CURL, "-H", f"Accept: {WADO_ACCEPT}", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if answer.returncode != 0:
            raise BenchError(f"curl {url} failed: {answer.stderr.strip()}")
        size, seconds = answer.stdout.split()
        plain_times.append(float(seconds))
        source, cache = sources.fresh("throughput")
        try:
            started = time.perf_counter()
            source.locate(ref)
            retrieve_times.append(time.perf_counter() - started)
        finally:
            source.close()
            shutil.rmtree(cache, ignore_errors=True)
    plain = float(np.median(plain_times))
    retrieve_s = float(np.median(retrieve_times))
    n_bytes = int(size)
    result.update(
        bytes=n_bytes,
        plain_s=round(plain, 3),
        retrieve_s=round(retrieve_s, 3),
        plain_mb_s=round(n_bytes / plain / 2**20, 1),
        retrieve_mb_s=round(n_bytes / retrieve_s / 2**20, 1),
        ratio=round(plain / retrieve_s, 3),
    )
    return result


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _server(
    options: NextCaseOptions, work: Path, report: Report
) -> Iterator[tuple[_Sources, str | None]]:
    """The batch to walk: a private Orthanc with synthetic cases, or ``--source``, behind the
    link simulator; yields the sources and the DICOMweb root the app talks to (or None)."""
    with contextlib.ExitStack() as stack:
        upstream: str | None = None
        batch_path: Path | None = None
        if options.source is None:
            orthanc_server = _testing_module("orthanc_server")
            from CaseIteratorCoreLib.demo_data import write_demo_batch

            report(
                f"writing {options.cases} synthetic CT series "
                f"({options.size}x{options.size}x{options.slices})"
            )
            write_demo_batch(
                work / "data", options.cases, size=options.size, n_slices=options.slices
            )
            orthanc = orthanc_server.OrthancServer()
            stack.callback(orthanc.close, graceful=False)
            files = sorted((work / "data" / "dicom").rglob("*.dcm"))
            report(f"uploading {len(files)} files to Orthanc {orthanc.url}")
            orthanc.upload_files(files)
            upstream = orthanc.dicomweb_url
        elif options.source.startswith(("http://", "https://")):
            upstream = options.source.rstrip("/")
        else:
            batch_path = Path(options.source)
        url = upstream
        parts = urlsplit(upstream or "")
        if parts.scheme == "https" and options.link != "loopback":
            raise BenchError("the link simulator forwards plain http:// only; use --link loopback")
        if parts.scheme == "http":  # every profile goes through the proxy, loopback included
            simulator = _testing_module("link_simulator")
            # In a process of its own: the link's CPU and GIL are not the app's.
            link = simulator.LinkSimulatorProcess(
                parts.hostname, parts.port or 80, simulator.PROFILES[options.link]
            )
            stack.callback(link.close)
            url = urlunsplit(("http", urlsplit(link.url).netloc, parts.path, "", ""))
            report(f"link: {link.profile.describe()} ({url})")
        elif batch_path is not None and options.link != "loopback":
            raise BenchError(
                "--link applies to a DICOMweb URL or the bench's own Orthanc; for a batch "
                "file use --link loopback"
            )
        yield _Sources(work, url=url, batch_path=batch_path), url


def run_next_case(
    options: NextCaseOptions, report: Report = lambda message: None
) -> dict[str, Any]:
    """Run the benchmark; returns the results (the ``--json`` object).

    Raises
    ------
    BenchError
        When the harness is missing, the source has fewer than two cases, or curl fails.
    """
    if options.link not in LINKS:
        raise BenchError(f"unknown link {options.link!r}; use one of {', '.join(LINKS)}")
    if options.cases < 2:
        raise BenchError(f"--cases must be at least 2 (one 'Next'), got {options.cases}")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    if options.source is None:
        _warn_if_networked(report)
    load_before = os.getloadavg()[0]
    rss = _PeakRss()
    work = Path(tempfile.mkdtemp(prefix="caseiterator-bench-"))
    try:
        with _server(options, work, report) as (sources, url):
            lister, _ = sources.fresh("listing")
            cases = list(_first(lister.iter_cases(), options.cases))
            lister.close()
            if len(cases) < 2:
                raise BenchError(f"the source has {len(cases)} case(s); the bench needs two")
            report(f"{len(cases)} cases from {lister.describe()}")

            views = _Views()
            report(f"views: 3 x {VIEW_SIZE}x{VIEW_SIZE}, {views.window_class}")
            warm_source, warm_cache = sources.fresh("warm-up")
            views_mb = views.warm_up(load_case(warm_source, cases[0]))
            warm_source.close()
            shutil.rmtree(warm_cache, ignore_errors=True)
            idle_mb = _rss_mb()  # the app, its views showing a placeholder; no case in memory
            views.clear()
            idle_empty_mb = _rss_mb()  # the same with empty views (nothing to draw)
            views.release()

            report("on-demand walk (the pause is skipped: nothing runs in the background)")
            on_demand = _walk_on_demand(views, sources, cases, rss, report)
            pause = options.pause_s
            if pause is None:
                slow = float(np.percentile(on_demand.next_s, 95)) + options.prefetch_delay_s
                pause = min(MAX_AUTO_PAUSE_S, max(MIN_AUTO_PAUSE_S, 1.5 * slow))
            report(f"prefetched walk (depth {options.depth}, pause {pause:.1f} s)")
            prefetched, floor = _walk_prefetched(views, sources, cases, options, pause, rss, report)
            views.close()
            report("retrieval throughput vs curl")
            throughput = _throughput(sources, cases[0], url if sources.is_web else None)
    finally:
        rss.close()
        shutil.rmtree(work, ignore_errors=True)
    result = _results(options, pause, on_demand, prefetched, floor, idle_mb, throughput)
    result["views_showing_a_case_mb"] = round(views_mb, 1)  # first show (shaders and all)
    result["idle_empty_views_rss_mb"] = round(idle_empty_mb, 1)
    # Other work on the machine skews the numbers: say how busy it was.
    result["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    result["cpu_count"] = os.cpu_count()
    return result


def _first(items: Iterator[Case], n: int) -> Iterator[Case]:
    for number, item in enumerate(items):
        if number >= n:
            return
        yield item


def _results(
    options: NextCaseOptions,
    pause: float,
    on_demand: _Walk,
    prefetched: _Walk,
    floor: float,
    idle_mb: float,
    throughput: dict[str, Any],
) -> dict[str, Any]:
    on = _percentiles(on_demand.next_s)
    pre = _percentiles(prefetched.next_s)
    volume_mb = float(np.median(prefetched.volume_mb or on_demand.volume_mb))
    ratio = on["p50"] / pre["p50"] if on["p50"] and pre["p50"] else None
    rss_limit = idle_mb + (options.depth + 2) * volume_mb
    targets = {
        "prefetched_p95_le_0.25_s": pre["p95"] is not None
        and pre["p95"] <= TARGET_PREFETCHED_P95_S,
        "prefetched_p95_within_0.1_s_of_floor": pre["p95"] is not None
        and pre["p95"] - floor <= TARGET_ABOVE_FLOOR_S,
        "peak_rss_le_idle_plus_depth_plus_2_volumes": prefetched.peak_rss_mb <= rss_limit,
    }
    if throughput["ratio"] is not None:  # None: local files, nothing is downloaded
        targets["throughput_ratio_ge_0.8"] = throughput["ratio"] >= TARGET_THROUGHPUT_RATIO
    if options.link == "100mbit":
        targets["ratio_p50_ge_10"] = ratio is not None and ratio >= TARGET_RATIO_100MBIT
    return {
        "link": options.link,
        "on_demand_s": on,
        "prefetched_s": pre,
        "render_floor_s": round(floor, 4),
        "ratio_p50": None if ratio is None else round(ratio, 1),
        "peak_rss_mb": round(prefetched.peak_rss_mb, 1),
        "volume_mb": round(volume_mb, 1),
        "depth": options.depth,
        "throughput_ratio": throughput["ratio"],
        "throughput": throughput,
        "idle_rss_mb": round(idle_mb, 1),
        "rss_limit_mb": round(rss_limit, 1),
        "on_demand_peak_rss_mb": round(on_demand.peak_rss_mb, 1),
        "prefetched_rss_trace_mb": prefetched.rss_trace_mb,
        "cases": len(prefetched.next_s) + 1,
        "nexts": len(prefetched.next_s),
        "pause_s": round(pause, 2),
        "ready_at_next": prefetched.ready_at_next,
        "first_open_s": {
            "on_demand": round(on_demand.first_open_s, 3),
            "prefetched": round(prefetched.first_open_s, 3),
        },
        "prefetched_parts_s": {
            "wait": _percentiles(prefetched.wait_s),
            "switch": _percentiles(prefetched.switch_s),
        },
        "on_demand_parts_s": {
            "wait": _percentiles(on_demand.wait_s),
            "switch": _percentiles(on_demand.switch_s),
        },
        "targets": targets,
    }


# -- command line ----------------------------------------------------------------------------


def _table(result: dict[str, Any]) -> Table:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(title=f"caseiterator bench next-case, link {result['link']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    met = result["targets"]

    def mark(key: str) -> str:
        return "" if key not in met else ("met" if met[key] else "[red]missed[/red]")

    on, pre = result["on_demand_s"], result["prefetched_s"]
    tp = result["throughput"]
    rows = [
        ("on demand p50 / p95 (s)", f"{s(on['p50'])} / {s(on['p95'])}", ""),
        (
            "prefetched p50 / p95 (s)",
            f"{s(pre['p50'])} / {s(pre['p95'])}",
            f"p95 <= 0.25: {mark('prefetched_p95_le_0.25_s')}",
        ),
        (
            "render floor (s)",
            s(result["render_floor_s"]),
            f"p95 - floor <= 0.1: {mark('prefetched_p95_within_0.1_s_of_floor')}",
        ),
        (
            "on demand p50 / prefetched p50",
            "-" if result["ratio_p50"] is None else f"{result['ratio_p50']:.1f}",
            f">= 10 on 100mbit: {mark('ratio_p50_ge_10')}" if "ratio_p50_ge_10" in met else "",
        ),
        (
            "peak RSS, prefetched (MB)",
            f"{result['peak_rss_mb']:.0f}",
            f"<= idle {result['idle_rss_mb']:.0f} + {result['depth'] + 2} x "
            f"{result['volume_mb']:.{0 if result['volume_mb'] >= 10 else 1}f} = "
            f"{result['rss_limit_mb']:.0f}: " + mark("peak_rss_le_idle_plus_depth_plus_2_volumes"),
        ),
        (
            "retrieval / curl throughput",
            "-"
            if tp["ratio"] is None
            else f"{tp['ratio']:.2f} ({tp['retrieve_mb_s']} / {tp['plain_mb_s']} MB/s)",
            f">= 0.8: {mark('throughput_ratio_ge_0.8')}"
            if "throughput_ratio_ge_0.8" in met
            else "not measured: local files, nothing downloaded",
        ),
        (
            "ready at 'Next' / pause",
            f"{result['ready_at_next']}/{result['nexts']} / {result['pause_s']:.1f} s",
            "",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def run_command(args: argparse.Namespace) -> int:
    """Run ``caseiterator bench next-case`` from parsed arguments; returns the exit code."""
    options = NextCaseOptions(
        source=args.source,
        cases=args.cases,
        link=args.link,
        depth=args.depth,
        pause_s=args.pause,
        size=args.size,
        slices=args.slices,
        prefetch_delay_s=args.prefetch_delay,
    )

    def report(message: str) -> None:
        console.err.print(message if message.startswith("[") else escape(message))

    result = run_next_case(options, report)
    if args.json:
        console.print_json(result)
    else:
        console.out.print(_table(result))
    return 0


def register_next_case(bench_sub: argparse._SubParsersAction) -> None:
    """Add ``next-case`` to the ``caseiterator bench`` sub-commands."""
    parser = bench_sub.add_parser(
        "next-case",
        help='time "Next": on-demand loading vs the prefetcher, through a simulated link',
        description=(
            'Time "Next" (to the volume in the scene and three slice views rendered '
            "offscreen) with on-demand loading and with the prefetcher, in the same run, on a "
            "real Orthanc with synthetic 512x512x300 CT series behind a simulated link. Run "
            "it inside a loopback-only network namespace (Orthanc binds every interface)."
        ),
    )
    parser.add_argument(
        "--source",
        metavar="URL_OR_BATCH",
        help="a DICOMweb URL or a batch file to walk instead of the bench's own Orthanc",
    )
    parser.add_argument("--cases", type=int, default=8, help="cases to walk (default 8)")
    parser.add_argument("--link", choices=LINKS, default="loopback", help="link profile")
    parser.add_argument("--depth", type=int, default=2, help="prefetch depth (default 2)")
    parser.add_argument(
        "--pause",
        type=float,
        default=None,
        metavar="S",
        help="reading pause before each Next (default: 1.5 x (the on-demand p95 + the "
        "prefetch delay), 2-30 s)",
    )
    parser.add_argument("--prefetch-delay", type=float, default=0.5, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--slices", type=int, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(run=run_command)


__all__ = ["BenchError", "NextCaseOptions", "register_next_case", "run_command", "run_next_case"]
