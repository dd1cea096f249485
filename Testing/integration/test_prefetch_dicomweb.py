"""The prefetcher against a real Orthanc: the local database as second cache level, a network
cut retried, a jump while a retrieval is in flight, and the next-case benchmark end to end.

Faults are real: Orthanc is killed, connections are reset and stalled by the link simulator
(Testing/link_simulator.py) between the app and Orthanc. Nothing is timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.prefetch import LoadState, LoadStatus, Prefetcher
from CaseIteratorCoreLib.sources import DicomWebSource, open_source

from link_simulator import LOOPBACK, LinkSimulator
from orthanc_server import OrthancServer, start_orthanc

pytestmark = pytest.mark.orthanc

WAIT_S = 120.0
N_CASES = 4


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small demo CT studies (64x64, 12 slices)."""
    folder = tmp_path_factory.mktemp("demo")
    write_demo_batch(folder, N_CASES, size=64, n_slices=12)
    return sorted((folder / "dicom").rglob("*.dcm"))


@pytest.fixture
def server(demo_files: list[Path]) -> Iterator[OrthancServer]:
    """An Orthanc of this test's own (tests kill it) holding the demo studies."""
    orthanc = start_orthanc()
    orthanc.upload_files(demo_files)
    yield orthanc
    orthanc.close(graceful=False)


def web_source(folder: Path, url: str, cache: Path, extra: str = "") -> DicomWebSource:
    folder.mkdir(parents=True, exist_ok=True)
    batch = folder / "web.toml"
    batch.write_text(
        f'name = "web"\n\n[source]\ntype = "dicomweb"\nurl = "{url}"\ncache = "{cache}"\n{extra}\n'
    )
    source = open_source(load_batch(batch))
    assert isinstance(source, DicomWebSource)
    return source


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def all_ready(prefetcher: Prefetcher, indices: list[int]) -> Callable[[], bool]:
    return lambda: all(prefetcher.state(i).state is LoadState.READY for i in indices)


def test_a_restarted_app_gets_its_cases_from_the_local_database_without_the_server(
    tmp_path: Path, server: OrthancServer
) -> None:
    cache = tmp_path / "dicom-db"
    source = web_source(tmp_path / "first", server.dicomweb_url, cache)
    cases = list(source.iter_cases())
    assert len(cases) == N_CASES
    with Prefetcher(source, cases, depth=2, prefetch_delay_s=0) as prefetcher:
        prefetcher.set_current(1)
        wait_until(all_ready(prefetcher, [1, 2, 3, 0]))
        first = {i: prefetcher.peek(i).image.volume.array for i in range(N_CASES)}
    source.close()

    server.kill()  # the PACS is gone; the app restarts on the same local database
    restarted = web_source(tmp_path / "second", server.dicomweb_url, cache, "retries = 0")
    states: list[LoadStatus] = []
    with Prefetcher(restarted, cases, depth=2, prefetch_delay_s=0) as prefetcher:
        prefetcher.subscribe(states.append)
        prefetcher.set_current(1)
        loaded = prefetcher.get(1, timeout=WAIT_S)
        np.testing.assert_array_equal(loaded.image.volume.array, first[1])
        wait_until(all_ready(prefetcher, [1, 2, 3, 0]))
        for index in range(N_CASES):
            np.testing.assert_array_equal(prefetcher.peek(index).image.volume.array, first[index])
    assert not [s for s in states if s.state is LoadState.FAILED or s.attempt > 1]
    restarted.close()


def test_a_connection_reset_mid_retrieval_is_retried(tmp_path: Path, server: OrthancServer) -> None:
    # The server answers each request only after 2 s: the cut lands while one is in flight.
    slow = replace(LOOPBACK, name="slow server", response_delay_s=2.0)
    with LinkSimulator("127.0.0.1", server.http_port, slow) as link:
        source = web_source(tmp_path, link.url + "/dicom-web", tmp_path / "dicom-db", "retries = 0")
        link.set_profile(LOOPBACK)
        cases = list(source.iter_cases())
        sent = link.bytes_uploaded
        link.set_profile(slow)
        states: list[LoadStatus] = []
        with Prefetcher(source, cases, depth=0, prefetch_delay_s=0) as prefetcher:
            prefetcher.subscribe(states.append)
            prefetcher.set_current(0)
            wait_until(lambda: link.bytes_uploaded > sent)  # a request waits for its answer
            link.drop_connections()  # the network is cut while the case is being retrieved
            link.set_profile(LOOPBACK)
            loaded = prefetcher.get(0, timeout=WAIT_S)
            assert loaded.case.id == cases[0].id
            assert prefetcher.state(0).attempt == 2
        retrying = [s for s in states if s.state is LoadState.QUEUED and s.reason]
        assert len(retrying) == 1 and "retrying" in (retrying[0].reason or "")
        source.close()


def test_a_jump_during_a_retrieval_stops_it_and_serves_the_new_case(
    tmp_path: Path, server: OrthancServer
) -> None:
    with LinkSimulator("127.0.0.1", server.http_port, LOOPBACK) as link:
        source = web_source(tmp_path, link.url + "/dicom-web", tmp_path / "dicom-db")
        cases = list(source.iter_cases())
        states: list[LoadStatus] = []
        stalled = threading.Event()

        def stall_on_case_1(status: LoadStatus) -> None:
            states.append(status)
            if status.index == 1 and status.state is LoadState.FETCHING and not stalled.is_set():
                stalled.set()
                link.stall()  # case 1's retrieval hangs: the link is saturated, say

        with Prefetcher(source, cases, depth=1, prefetch_delay_s=0) as prefetcher:
            prefetcher.subscribe(stall_on_case_1)
            prefetcher.set_current(0)
            prefetcher.get(0, timeout=WAIT_S)
            wait_until(stalled.is_set)
            prefetcher.set_current(3)  # the reader jumps to the last case
            assert prefetcher.state(1).state is LoadState.IDLE
            link.resume()
            loaded = prefetcher.get(3, timeout=WAIT_S)
            assert loaded.case.id == cases[3].id
            wait_until(all_ready(prefetcher, [3, 2]))
            assert prefetcher.ready_indices() == [2, 3]
        assert LoadState.READY not in [s.state for s in states if s.index == 1]
        source.close()


@pytest.mark.slicer
def test_next_case_benchmark_runs_end_to_end() -> None:
    pytest.importorskip("trame_slicer", reason="trame-slicer is a pinned dependency")
    from CaseIteratorApp.bench_next_case import NextCaseOptions, run_next_case

    messages: list[str] = []
    result = run_next_case(
        NextCaseOptions(cases=3, size=64, slices=12, pause_s=1.0, link="1gbit"),
        messages.append,
    )
    required = {
        "link",
        "on_demand_s",
        "prefetched_s",
        "render_floor_s",
        "ratio_p50",
        "peak_rss_mb",
        "volume_mb",
        "depth",
    }
    assert required <= set(result)
    assert result["link"] == "1gbit" and result["depth"] == 2
    for key in ("on_demand_s", "prefetched_s"):
        assert set(result[key]) == {"p50", "p95"}
        assert 0 < result[key]["p50"] <= result[key]["p95"]
    assert result["render_floor_s"] > 0 and result["peak_rss_mb"] > result["volume_mb"] > 0
    assert result["nexts"] == 2 and result["ready_at_next"] == 2  # 1 s is plenty for 64x64
    assert result["throughput_ratio"] > 0 and result["throughput"]["bytes"] > 0
    assert any("1gbit" in m for m in messages)


@pytest.mark.slicer
def test_next_case_benchmark_on_local_files_has_no_download_to_compare(tmp_path: Path) -> None:
    """``--source`` a folder batch: the walks run, and the download target is not judged
    (nothing is downloaded) instead of being reported missed."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is a pinned dependency")
    from CaseIteratorApp.bench_next_case import NextCaseOptions, _table, run_next_case

    batch = write_demo_batch(tmp_path, 3, size=64, n_slices=12)
    result = run_next_case(NextCaseOptions(source=str(batch), cases=3, pause_s=1.0))
    assert result["nexts"] == 2 and result["ready_at_next"] == 2
    assert result["throughput_ratio"] is None
    assert "throughput_ratio_ge_0.8" not in result["targets"]
    rendered = " ".join(str(cell) for column in _table(result).columns for cell in column.cells)
    assert "nothing downloaded" in rendered
