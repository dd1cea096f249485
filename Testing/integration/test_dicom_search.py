"""The DICOM browser's search, thumbnails and batches against a real Orthanc and a real local
database holding the same series: the same filters give the same studies in both.

The local-database tests run without Orthanc; the others get the ``orthanc`` marker."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.batch_from_selection import (
    BatchOrigin,
    SelectedItem,
    SelectionError,
    add_to_batch,
    batches_for,
    write_batch,
)
from CaseIteratorCoreLib.dicom_database import LocalDicomDatabase
from CaseIteratorCoreLib.dicom_search import (
    DicomSearch,
    DicomWebSearch,
    LocalDatabaseSearch,
    SearchFilterError,
    SearchFilters,
)
from CaseIteratorCoreLib.dicomweb_connection import ServerUnreachable
from CaseIteratorCoreLib.errors import BatchDefinitionError
from CaseIteratorCoreLib.series_thumbnail import (
    series_thumbnail,
    thumbnail_from_server,
    thumbnail_of_files,
)
from CaseIteratorCoreLib.server_settings import ServerSettings
from CaseIteratorCoreLib.sources import open_source

from orthanc_server import OrthancServer

# The series factory lives with the unit tests (their conftest puts it on the path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from series_factory import write_series

#: Distinguishes this module's patients from other tests' on the shared Orthanc.
TOKEN = uuid.uuid4().hex[:6].upper()
PREFIX = f"DS{TOKEN}"

#: (folder, patient id, name, study date, study description, study key, series, modality, n)
SERIES = [
    ("p1-venous", "001", "Smith^John", "20250110", "CT Abdomen", "s1", "portal venous", "CT", 6),
    ("p1-arterial", "001", "Smith^John", "20250110", "CT Abdomen", "s1", "arterial", "CT", 4),
    ("p2-t1", "002", "Smithers^Anna", "20250620", "MR Brain", "s2", "T1 axial", "MR", 5),
    ("p3-lung", "OTHER", "Jones^Bob", "20240301", "CT Chest", "s3", "lung", "CT", 3),
]


def _write_all(root: Path) -> dict[str, tuple[str, str]]:
    """Write the series; return ``{folder: (study uid, series uid)}``."""
    studies = {key: generate_uid(entropy_srcs=[TOKEN, key]) for key in ("s1", "s2", "s3")}
    uids = {}
    for number, (name, pid, pname, date, study_desc, key, desc, modality, n) in enumerate(SERIES):

        def tweak(k, ds, pid=pid, pname=pname, date=date, study_desc=study_desc, key=key,
                  desc=desc, number=number):  # fmt: skip
            ds.PatientID, ds.PatientName = f"{PREFIX}-{pid}", pname
            ds.StudyDate, ds.StudyDescription = date, study_desc
            ds.StudyInstanceUID = studies[key]
            ds.SeriesDescription, ds.SeriesNumber = desc, number + 1
            ds.WindowCenter, ds.WindowWidth = "-800", "600"

        paths = write_series(
            root / name, n=n, rows=24, cols=20, modality=modality, seed=TOKEN, tweak=tweak
        )
        import pydicom

        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        uids[name] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    return uids


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    root = tmp_path_factory.mktemp("browser-series")
    return root, _write_all(root)


@pytest.fixture(scope="module")
def server(orthanc: OrthancServer, images) -> ServerSettings:
    root, _ = images
    orthanc.upload_files(sorted(root.rglob("*.dcm")))
    return ServerSettings(name="test-pacs", url=orthanc.dicomweb_url, retries=0)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, images) -> Path:
    root, _ = images
    folder = tmp_path_factory.mktemp("browser-db") / "db"
    with LocalDicomDatabase(folder) as db:
        report = db.import_paths(root)
    assert report.imported == sum(s[-1] for s in SERIES)
    return folder


@pytest.fixture(params=["local", pytest.param("dicomweb", marks=pytest.mark.orthanc)])
def search(request, database: Path) -> Iterator[DicomSearch]:
    """The same questions to the local database and (when Orthanc runs) to the server."""
    found: DicomSearch = (
        LocalDatabaseSearch(database)
        if request.param == "local"
        else DicomWebSearch(request.getfixturevalue("server"))
    )
    yield found
    found.close()


def _patients(search: DicomSearch, **filters) -> list[str]:
    """Patient ids (without the module prefix) of the studies matching ``filters``."""
    page = search.search_studies(SearchFilters(patient_id=f"{PREFIX}-*", **filters))
    return sorted(s.patient_id.removeprefix(f"{PREFIX}-") for s in page.items)


def test_filters_find_the_same_studies_locally_and_on_the_server(search: DicomSearch) -> None:
    assert _patients(search) == ["001", "002", "OTHER"]
    # Names: anywhere in the name, case-insensitive; with a wildcard: as written.
    assert _patients(search, patient_name="smith") == ["001", "002"]
    assert _patients(search, patient_name="Smith^*") == ["001"]
    # IDs: exact, or with wildcards (* any run, ? one character).
    page = search.search_studies(SearchFilters(patient_id=f"{PREFIX}-002"))
    assert [s.patient_name for s in page.items] == ["Smithers^Anna"]
    assert search.search_studies(SearchFilters(patient_id=f"{PREFIX}-00")).items == ()
    ids = [
        s.patient_id for s in search.search_studies(SearchFilters(patient_id=f"{PREFIX}-00?")).items
    ]
    assert sorted(ids) == [f"{PREFIX}-001", f"{PREFIX}-002"]
    # A name typed with a space finds the DICOM "^" (some servers never match "^" itself).
    assert _patients(search, patient_name="smith john") == ["001"]
    # Date ranges, either end open.
    assert _patients(search, date_from="20250101", date_to="20251231") == ["001", "002"]
    assert _patients(search, date_from="2025-06-01") == ["002"]
    assert _patients(search, date_to="2024-12-31") == ["OTHER"]
    assert _patients(search, date_from="2025-01-10", date_to="2025-01-10") == ["001"]
    # Modality: studies that hold a series of it; description: anywhere, any case.
    assert _patients(search, modality="ct") == ["001", "OTHER"]
    assert _patients(search, modality="MR") == ["002"]
    assert _patients(search, description="Brain") == ["002"]
    assert _patients(search, description="*Ch?st") == ["OTHER"]


def test_study_rows_and_series_of_a_study(search: DicomSearch, images) -> None:
    _, uids = images
    (study,) = search.search_studies(SearchFilters(patient_id=f"{PREFIX}-001")).items
    assert study.study_uid == uids["p1-venous"][0]
    assert study.study_date == "20250110"
    assert study.description == "CT Abdomen"
    assert "CT" in study.modalities
    assert (study.n_series, study.n_instances) == (2, 10)
    series = search.search_series(study.study_uid)
    assert [s.description for s in series] == ["portal venous", "arterial"]  # series number
    assert [s.series_uid for s in series] == [uids["p1-venous"][1], uids["p1-arterial"][1]]
    assert [s.n_images for s in series] == [6, 4]
    assert [s.description for s in search.search_series(study.study_uid, description="ART")] == [
        "arterial"
    ]
    assert search.search_series(study.study_uid, modality="MR") == []


def test_paging_and_patients(search: DicomSearch) -> None:
    filters = SearchFilters(patient_id=f"{PREFIX}-*")
    seen, offset, pages = [], 0, 0
    while True:
        page = search.search_studies(filters, offset=offset, limit=2)
        pages += 1
        assert len(page.items) <= 2
        seen.extend(s.study_uid for s in page.items)
        if not page.has_more:
            break
        offset = page.next_offset
    assert pages == 2 and len(seen) == 3 == len(set(seen))
    patients = search.search_patients(filters)
    assert sorted((p.patient_name, p.n_studies) for p in patients.items) == [
        ("Jones^Bob", 1),
        ("Smith^John", 1),
        ("Smithers^Anna", 1),
    ]
    first = search.search_patients(filters, limit=2)
    assert len(first.items) == 2 and first.has_more


def test_bad_filters_are_refused_with_the_fix() -> None:
    with pytest.raises(SearchFilterError, match="YYYY-MM-DD"):
        SearchFilters(date_from="31.01.2025x")
    with pytest.raises(SearchFilterError, match="swap"):
        SearchFilters(date_from="2025-02-01", date_to="2025-01-01")
    with pytest.raises(SearchFilterError, match="modality code"):
        SearchFilters(modality="C T")


def test_missing_local_database_finds_nothing(tmp_path: Path) -> None:
    search = LocalDatabaseSearch(tmp_path / "no-db-yet")
    assert search.search_studies(SearchFilters()).items == ()
    assert not (tmp_path / "no-db-yet").exists()  # searching never creates it


def test_unreachable_server_names_itself_and_what_to_check() -> None:
    gone = DicomWebSearch(
        ServerSettings(name="gone", url="http://127.0.0.1:9/dicom-web", retries=0)
    )
    with pytest.raises(ServerUnreachable) as caught:
        gone.search_studies(SearchFilters())
    assert "'gone'" in str(caught.value)
    assert "check that the server is running" in str(caught.value)


def _local_thumbnail(database: Path, uids) -> tuple[np.ndarray, object]:
    local = LocalDatabaseSearch(database)
    study_uid, series_uid = uids["p1-venous"]
    (row,) = [s for s in local.search_series(study_uid) if s.series_uid == series_uid]
    return series_thumbnail(local, row), row


def test_thumbnail_from_the_local_database_is_the_middle_image_windowed(
    database: Path, images
) -> None:
    _, uids = images
    thumbnail, row = _local_thumbnail(database, uids)
    assert thumbnail.dtype == np.uint8 and thumbnail.shape == (24, 20)
    # The middle of 6 slices is slice 3: its first voxel is -700 HU; the header's window
    # (centre -800, width 600) spans -1100..-500, so it shows at 400/600 of white.
    assert thumbnail[0, 0] == round(400 / 600 * 255)
    assert thumbnail[-1, -1] == 255  # -482 HU: above the window
    assert np.array_equal(thumbnail, thumbnail_of_files(row.files))
    small = series_thumbnail(LocalDatabaseSearch(database), row, size=10)
    assert small.shape == (8, 6)  # 24 x 20 in blocks of 3 (the 2 columns left over dropped)


def test_thumbnails_from_the_server_rendered_or_retrieved(
    server: ServerSettings, database: Path, images
) -> None:
    _, uids = images
    from_file, _ = _local_thumbnail(database, uids)
    study_uid, series_uid = uids["p1-venous"]
    with DicomWebSearch(server) as web:
        answers: list[tuple[str, int]] = []
        web.client._session.hooks["response"].append(
            lambda response, *a, **k: answers.append((response.url, response.status_code))
        )
        # The instance itself, windowed here: the same picture as from the file, whether the
        # middle one is found by its number (n_images known), by listing them all, or by
        # listing after the number was not there (a series not numbered 1..n).
        for n_images in (6, None, 99):
            retrieved = thumbnail_from_server(
                web, study_uid, series_uid, rendered=False, n_images=n_images
            )
            assert np.array_equal(retrieved, from_file), n_images
        answers.clear()
        rendered = thumbnail_from_server(web, study_uid, series_uid, size=16, n_images=6)
        assert rendered.dtype == np.uint8 and 0 < max(rendered.shape) <= 16
        assert rendered.min() < rendered.max()
        # Rendered by the server (a small PNG), not retrieved as a DICOM instance.
        assert [status for url, status in answers if url.endswith("/rendered?viewport=16,16")] == [
            200
        ]
        assert not [url for url, _ in answers if "/instances/" in url and "rendered" not in url]


def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ServerSettings) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'[[servers]]\nname = "{server.name}"\nurl = "{server.url}"\nretries = 0\n')
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(site))


def test_batch_from_a_server_selection_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ServerSettings, images
) -> None:
    _site(tmp_path, monkeypatch, server)
    _, uids = images
    origin = BatchOrigin.of(DicomWebSearch(server))
    written = write_batch(
        origin, [SelectedItem(*uids["p1-arterial"])], name="Arterial phase", folder=tmp_path
    )
    batch = load_batch(written.path)
    assert batch.name == "Arterial phase" and batch.source.type == "dicomweb"
    with open_source(batch) as source:
        assert [c.id for c in source.iter_cases()] == [uids["p1-arterial"][1]]
    assert batches_for(origin, tmp_path) == [written.path]

    # Add a whole study and a series already there: the study's series join, nothing doubles.
    added = add_to_batch(
        written.path,
        origin,
        [SelectedItem(uids["p2-t1"][0]), SelectedItem(*uids["p1-arterial"])],
    )
    assert (added.path, added.added, added.already_there) == (written.path, 1, 1)
    with open_source(load_batch(written.path)) as source:
        assert [c.id for c in source.iter_cases()] == [uids["p1-arterial"][1], uids["p2-t1"][1]]

    other = BatchOrigin("dicom-db", database=tmp_path / "db")
    with pytest.raises(SelectionError, match="another source"):
        add_to_batch(written.path, other, [SelectedItem(*uids["p2-t1"])])
    with pytest.raises(SelectionError, match="nothing is selected"):
        write_batch(origin, [], folder=tmp_path)


def test_batch_from_a_local_selection_round_trips(tmp_path: Path, database: Path, images) -> None:
    _, uids = images
    origin = BatchOrigin.of(LocalDatabaseSearch(database))
    first = write_batch(origin, [SelectedItem(uids["p1-venous"][0])], folder=tmp_path)
    second = write_batch(origin, [SelectedItem(*uids["p3-lung"])], folder=tmp_path)
    assert first.path != second.path  # never overwritten
    with open_source(load_batch(first.path)) as source:
        cases = list(source.iter_cases())
    assert [c.id for c in cases] == [uids["p1-venous"][1], uids["p1-arterial"][1]]
    assert all(c.images[0].files for c in cases)  # local files, ready to load
    add_to_batch(first.path, origin, [SelectedItem(*uids["p3-lung"])])
    with open_source(load_batch(first.path)) as source:
        assert uids["p3-lung"][1] in [c.id for c in source.iter_cases()]
    assert set(batches_for(origin, tmp_path)) == {first.path, second.path}
    # A listed series the database no longer holds is skipped with the reason; a list of
    # nothing the database holds is refused, naming the list.
    add_to_batch(second.path, origin, [SelectedItem("2.25.1", "2.25.2")])
    with open_source(load_batch(second.path)) as source:
        assert [c.id for c in source.iter_cases()] == [uids["p3-lung"][1]]
        (skipped,) = source.skipped
    assert skipped.reason == "series 2.25.2 of study 2.25.1 is not in the DICOM database"
    gone = write_batch(origin, [SelectedItem("2.25.3")], folder=tmp_path)
    with (
        open_source(load_batch(gone.path)) as source,
        pytest.raises(BatchDefinitionError, match="none of the studies and series"),
    ):
        list(source.iter_cases())
