"""DICOMweb batches against a real Orthanc: listing, paging, filters, retrieval, cache, auth."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.dicomweb_connection import ServerAuthError, ServerTimeout
from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.loading import inspect_case, load_case
from CaseIteratorCoreLib.problems import ProblemCode
from CaseIteratorCoreLib.sources import DicomWebSource, open_source

from orthanc_server import OrthancServer, start_orthanc

pytestmark = pytest.mark.orthanc


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small demo CT studies (64x64, 12 slices) and their folder batch."""
    return write_demo_batch(tmp_path_factory.mktemp("demo"), 3, size=64, n_slices=12)


@pytest.fixture(scope="module")
def server(demo_folder: Path) -> Iterator[OrthancServer]:
    """An Orthanc of this module's own holding the demo studies."""
    orthanc = start_orthanc()
    orthanc.upload_files(sorted((demo_folder.parent / "dicom").rglob("*.dcm")))
    yield orthanc
    orthanc.close(graceful=False)


def web_batch(tmp_path: Path, url: str, extra: str = "", query: str = "") -> Path:
    text = f'name = "web"\n\n[source]\ntype = "dicomweb"\nurl = "{url}"\n'
    text += f'cache = "{tmp_path / "cache"}"\n{extra}\n'
    if query:
        text += f"\n[source.query]\n{query}\n"
    path = tmp_path / "web.toml"
    path.write_text(text)
    return path


def web_source(tmp_path: Path, url: str, extra: str = "", query: str = "") -> DicomWebSource:
    source = open_source(load_batch(web_batch(tmp_path, url, extra, query)))
    assert isinstance(source, DicomWebSource)
    return source


def test_same_cases_and_voxels_as_the_dicom_folder(
    tmp_path: Path, server: OrthancServer, demo_folder: Path
) -> None:
    folder = open_source(load_batch(demo_folder))
    folder_cases = {c.id: c for c in folder.iter_cases()}
    with web_source(tmp_path, server.dicomweb_url) as web:
        web_cases = list(web.iter_cases())
        assert {c.id for c in web_cases} == set(folder_cases)
        for case in web_cases:
            assert case.name == folder_cases[case.id].name
            assert case.result.origin == server.dicomweb_url
            loaded = load_case(web, case)
            expected = load_case(folder, folder_cases[case.id])
            np.testing.assert_array_equal(loaded.image.volume.array, expected.image.volume.array)
            np.testing.assert_allclose(
                loaded.image.volume.geometry.ijk_to_lps(),
                expected.image.volume.geometry.ijk_to_lps(),
            )
            assert loaded.image.dicom.sop_instance_uids == expected.image.dicom.sop_instance_uids


def test_cache_serves_a_restarted_app_without_the_server(
    tmp_path: Path, server: OrthancServer
) -> None:
    with web_source(tmp_path, server.dicomweb_url) as web:
        case = next(iter(web.iter_cases()))
        first = load_case(web, case)
    # A new source on the same cache, the server unreachable: the case loads from the cache.
    dead = web_source(tmp_path, "http://127.0.0.1:9/dicom-web", extra="retries = 0")
    again = load_case(dead, case)
    np.testing.assert_array_equal(again.image.volume.array, first.image.volume.array)


def test_paging_is_lazy_and_complete(tmp_path: Path, server: OrthancServer) -> None:
    with web_source(tmp_path, server.dicomweb_url, extra="page_size = 1") as web:
        requests_made: list[str] = []
        web.client._session.hooks["response"].append(
            lambda response, *a, **k: requests_made.append(response.url)
        )
        cases = web.iter_cases()
        first = next(cases)
        study_queries = [u for u in requests_made if "/studies?" in u]
        assert len(study_queries) == 1 and "limit=1" in study_queries[0]
        rest = list(cases)
        ids = [first.id, *(c.id for c in rest)]
        assert len(ids) == 3 == len(set(ids))
        assert [c.index for c in [first, *rest]] == [0, 1, 2]
        assert len([u for u in requests_made if "/studies?" in u]) == 4  # 3 pages + empty end
    with web_source(tmp_path, server.dicomweb_url) as again:
        assert [c.id for c in again.iter_cases()] == ids  # stable order


def test_query_filters(tmp_path: Path, server: OrthancServer) -> None:
    one = web_source(tmp_path, server.dicomweb_url, query='PatientID = "DEMO-002"')
    assert [c.details["patient_id"] for c in one.iter_cases()] == ["DEMO-002"]
    none = web_source(tmp_path, server.dicomweb_url, query='StudyDate = "19000101-19001231"')
    assert list(none.iter_cases()) == []
    mr = web_source(tmp_path, server.dicomweb_url, query='Modality = "MR"')
    assert list(mr.iter_cases()) == []
    ct = web_source(tmp_path, server.dicomweb_url, query='Modality = "CT"')
    assert len(list(ct.iter_cases())) == 3
    # QIDO-RS wildcards reach the server as wildcards (not as a literal %2A).
    wild = web_source(tmp_path, server.dicomweb_url, query='PatientID = "DEMO-00*"')
    assert len(list(wild.iter_cases())) == 3
    one_char = web_source(tmp_path, server.dicomweb_url, query='PatientID = "DEMO-00?"')
    assert len(list(one_char.iter_cases())) == 3


def test_uid_list(tmp_path: Path, server: OrthancServer, demo_folder: Path) -> None:
    cases = list(open_source(load_batch(demo_folder)).iter_cases())
    table = tmp_path / "uids.csv"
    table.write_text(
        "StudyInstanceUID,SeriesInstanceUID\n"
        f"{cases[1].result.study_uid},{cases[1].id}\n"
        "1.2.3.4.5,\n"
    )
    web = web_source(tmp_path, server.dicomweb_url, extra=f'uid_list = "{table}"')
    assert [c.id for c in web.iter_cases()] == [cases[1].id]
    (skipped,) = web.skipped
    assert "study 1.2.3.4.5 is not on server" in skipped.reason


def test_authentication_good_and_bad_credentials(
    tmp_path: Path, demo_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    secret = "correct-horse-battery"
    with OrthancServer(users={"reader": secret}) as orthanc:
        orthanc.upload_files(sorted((demo_folder.parent / "dicom").rglob("*.dcm"))[:12])
        auth = 'auth = "basic"\nusername = "reader"\npassword_env = "TEST_PACS_PASSWORD"'
        monkeypatch.setenv("TEST_PACS_PASSWORD", secret)
        caplog.set_level(logging.DEBUG)
        good = web_source(tmp_path, orthanc.dicomweb_url, extra=auth)
        (case,) = list(good.iter_cases())
        assert load_case(good, case).image.volume.geometry.size == (64, 64, 12)

        monkeypatch.setenv("TEST_PACS_PASSWORD", "wrong-password-123")
        bad = web_source(tmp_path, orthanc.dicomweb_url, extra=auth)
        with pytest.raises(ServerAuthError) as info:
            list(bad.iter_cases())
        message = str(info.value)
        assert "refused the QIDO-RS study search with 401" in message
        assert "check the user name and the password in $TEST_PACS_PASSWORD" in message
        assert orthanc.dicomweb_url in message
        for text in (message, caplog.text):
            assert secret not in text and "wrong-password-123" not in text

        anonymous = web_source(tmp_path, orthanc.dicomweb_url)
        with pytest.raises(ServerAuthError, match="the server asks for credentials"):
            list(anonymous.iter_cases())


def test_server_down_marks_case_failed_and_batch_goes_on(tmp_path: Path, demo_folder) -> None:
    orthanc = start_orthanc()
    try:
        orthanc.upload_files(sorted((demo_folder.parent / "dicom").rglob("*.dcm")))
        web = web_source(tmp_path, orthanc.dicomweb_url, extra="retries = 1\nbackoff_s = 0.05")
        cases = list(web.iter_cases())
        orthanc.kill()
        reports = [inspect_case(web, c) for c in cases]
        assert all(not r.ok for r in reports)
        problem = reports[0].problems[0]
        assert problem.code is ProblemCode.FETCH_FAILED
        assert "cannot be reached" in problem.message and orthanc.dicomweb_url in problem.message
        orthanc.start()
        assert inspect_case(web, cases[0]).ok
    finally:
        orthanc.close(graceful=False)


def test_secret_in_clear_is_refused(tmp_path: Path) -> None:
    path = web_batch(
        tmp_path,
        "http://127.0.0.1:9/dicom-web",
        extra='auth = "basic"\nusername = "u"\npassword = "hunter2"',
    )
    with pytest.raises(BatchDefinitionError) as info:
        open_source(load_batch(path))
    assert "'password' written in clear is refused" in str(info.value)
    assert "hunter2" not in str(info.value) and info.value.line == 9


def test_secret_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "pacs.secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    web = web_source(
        tmp_path,
        "http://127.0.0.1:9/dicom-web",
        extra=f'auth = "basic"\nusername = "u"\npassword_file = "{secret}"',
    )
    with pytest.raises(Exception, match=f"chmod 600 {secret}") as info:
        list(web.iter_cases())
    assert "s3cret" not in str(info.value)


def test_slow_server_times_out_with_a_clear_reason(tmp_path: Path, server: OrthancServer) -> None:
    from link_simulator import LinkProfile, LinkSimulator

    slow = LinkProfile("slow server", None, 0.0, response_delay_s=2.0)
    with LinkSimulator("127.0.0.1", server.http_port, slow) as link:
        web = web_source(
            tmp_path,
            link.url + "/dicom-web",
            extra="timeout_s = 0.4\nretries = 1\nbackoff_s = 0.01",
        )
        started = time.monotonic()
        with pytest.raises(ServerTimeout) as info:
            list(web.iter_cases())
        elapsed = time.monotonic() - started
    print(f"timed out after {elapsed:.2f} s (timeout 0.4 s, 1 retry)")
    assert "did not answer the QIDO-RS study search within 0.4 s (after 1 retries)" in str(
        info.value
    )
    assert elapsed < 10  # bounded: a hanging server does not hang the reader's station


def test_server_killed_mid_retrieval_then_back(tmp_path: Path, demo_folder: Path) -> None:
    from link_simulator import LOOPBACK, LinkProfile, LinkSimulator

    orthanc = start_orthanc()
    thin = LinkProfile("thin", 1.5e6, 0.0)  # ~100 kB series take ~0.5 s: time to cut it
    try:
        orthanc.upload_files(sorted((demo_folder.parent / "dicom").rglob("*.dcm")))
        with LinkSimulator("127.0.0.1", orthanc.http_port, thin) as link:
            web = web_source(tmp_path, link.url + "/dicom-web", extra="retries = 0\ntimeout_s = 5")
            cases = list(web.iter_cases())
            cut = threading.Timer(0.25, lambda: (orthanc.kill(), link.drop_connections()))
            cut.start()
            reports = [inspect_case(web, case) for case in cases]  # the batch goes on
            cut.join()
            assert not reports[0].ok
            problem = reports[0].problems[0]
            assert problem.code is ProblemCode.FETCH_FAILED
            assert "cannot be reached" in problem.message or "ended early" in problem.message
            assert all(not r.ok for r in reports[1:])  # the server is still down for them
            orthanc.start()
            link.set_profile(LOOPBACK)
            folder = {c.id: c for c in open_source(load_batch(demo_folder)).iter_cases()}
            for case in cases:
                loaded = load_case(web, case)
                expected = load_case(open_source(load_batch(demo_folder)), folder[case.id])
                np.testing.assert_array_equal(
                    loaded.image.volume.array, expected.image.volume.array
                )
    finally:
        orthanc.close(graceful=False)


def test_first_retrieval_is_one_request(tmp_path: Path, server: OrthancServer) -> None:
    """Nothing cached and the series' size known from the listing: the WADO-RS request alone
    (an instance listing first would add a round trip to every on-demand "Next")."""
    with web_source(tmp_path, server.dicomweb_url) as web:
        case = next(iter(web.iter_cases()))
        made: list[str] = []
        web.client._session.hooks["response"].append(
            lambda response, *a, **k: made.append(response.url)
        )
        loaded = load_case(web, case)
        assert loaded.image.volume.array.shape[0] == 12
        assert len(made) == 1 and made[0].endswith(f"/series/{case.images[0].series_uid}")


def test_series_that_lost_an_instance_since_listing_still_loads(
    tmp_path: Path, demo_folder: Path
) -> None:
    """The batch was listed with 12 instances; one is deleted on the server before the case is
    opened: fewer arrive than counted, the instance listing says that is all, and the case
    loads with what the server has (not an endless "ended early")."""
    orthanc = start_orthanc()
    try:
        orthanc.upload_files(sorted((demo_folder.parent / "dicom").rglob("*.dcm")))
        with web_source(tmp_path, orthanc.dicomweb_url) as web:
            case = next(iter(web.iter_cases()))
            assert case.images[0].n_instances == 12
            session = orthanc.session()
            found = session.post(
                f"{orthanc.url}/tools/lookup", data=case.images[0].series_uid
            ).json()
            instances = session.get(f"{orthanc.url}/series/{found[0]['ID']}/instances").json()
            top = max(instances, key=lambda i: int(i["MainDicomTags"]["InstanceNumber"]))
            session.delete(f"{orthanc.url}/instances/{top['ID']}").raise_for_status()
            loaded = load_case(web, case)
            assert loaded.image.volume.array.shape[0] == 11
            gone = top["MainDicomTags"]["SOPInstanceUID"]
            assert gone not in loaded.image.dicom.sop_instance_uids
    finally:
        orthanc.close(graceful=False)


def _compressed_demo(tmp_path: Path, syntax: str) -> Path:
    """One 64x64x4 demo CT study, its files compressed (lossless) to ``syntax``."""
    import pydicom

    batch = write_demo_batch(tmp_path / "compressed", 1, size=64, n_slices=4)
    for path in sorted((batch.parent / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    return batch


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"], ids=["JPEG-LS", "JPEG2000"]
)
def test_a_compressed_archive_is_retrieved_as_stored(tmp_path: Path, syntax: str) -> None:
    """transfer-syntax=*: the PACS sends its JPEG-LS / JPEG 2000 files as they are (no
    transcoding to a larger answer), the cache keeps them so, and the voxels are the same."""
    import pydicom

    batch = _compressed_demo(tmp_path, syntax)
    orthanc = start_orthanc()
    try:
        orthanc.upload_files(sorted((batch.parent / "dicom").rglob("*.dcm")))
        with web_source(tmp_path, orthanc.dicomweb_url) as web:
            case = next(iter(web.iter_cases()))
            loaded = load_case(web, case)
            files = web.cache.series_files(case.images[0].study_uid, case.images[0].series_uid)
            assert {str(pydicom.dcmread(f).file_meta.TransferSyntaxUID) for f in files} == {syntax}
        folder = open_source(load_batch(batch))
        expected = load_case(folder, next(iter(folder.iter_cases())))
        np.testing.assert_array_equal(loaded.image.volume.array, expected.image.volume.array)
    finally:
        orthanc.close(graceful=False)


def test_a_server_refusing_transfer_syntax_star_is_asked_without_it(
    tmp_path: Path, server: OrthancServer
) -> None:
    """Some servers answer 406 to ``transfer-syntax=*``. Orthanc accepts it, so a small proxy
    in front of the real Orthanc refuses it (the one fault here that Orthanc cannot give)."""
    import http.server

    import requests

    asked: list[str] = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            accept = self.headers.get("Accept", "")
            asked.append(accept)
            if "transfer-syntax" in accept:
                self.send_response(406)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = requests.get(
                server.url + self.path, headers={"Accept": accept}, auth=server.auth, timeout=30
            )
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/dicom-web"
        with web_source(tmp_path, url) as web:
            cases = list(web.iter_cases())[:2]
            for case in cases:
                assert load_case(web, case).image.volume.array.shape[0] == 12
        retrievals = [a for a in asked if a.startswith("multipart/related")]
        # Refused once, then asked without the parameter, and not offered it again.
        assert len(retrievals) == 3 and "transfer-syntax=*" in retrievals[0]
        assert all("transfer-syntax" not in a for a in retrievals[1:])
    finally:
        proxy.shutdown()
        thread.join()
