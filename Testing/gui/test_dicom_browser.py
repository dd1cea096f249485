"""The DICOM browser on real parts: a real Orthanc searched over DICOMweb, a real local
database filled by a real import, real Qt widgets driven with pytest-qt."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from Qt import QtCore, QtWidgets

from CaseIteratorCoreLib.batch_file import load_batch
from CaseIteratorCoreLib.dicom_search import LocalDatabaseSearch, SearchFilters
from CaseIteratorCoreLib.server_settings import AuthKind, SecretRef, ServerSettings
from CaseIteratorCoreLib.sources import open_source
from CaseReaderLib.browser_import import ImportFolderDialog
from CaseReaderLib.dicom_browser import DicomBrowserDialog

from orthanc_server import OrthancServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from series_factory import write_series

LEFT = QtCore.Qt.MouseButton.LeftButton
WAIT_MS = 20_000


def _two_series(root: Path, patient_id: str) -> list[tuple[str, str]]:
    """One study of one patient with two CT series; ``[(study uid, series uid), ...]``."""
    study = f"2.25.{uuid.uuid4().int}"
    uids = []
    for number, description in enumerate(("portal venous", "arterial"), start=1):

        def tweak(k, ds, number=number, description=description):
            ds.PatientID, ds.PatientName = patient_id, "Browser^Test"
            ds.StudyInstanceUID, ds.StudyDescription = study, "CT Abdomen"
            ds.SeriesNumber, ds.SeriesDescription = number, description

        paths = write_series(root / description.replace(" ", "-"), n=6, rows=32, cols=28,
                             tweak=tweak, seed=patient_id)  # fmt: skip
        import pydicom

        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        uids.append((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)))
    return uids


def _browser(qtbot, **kwargs) -> DicomBrowserDialog:
    dialog = DicomBrowserDialog(**kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _close(dialog: DicomBrowserDialog) -> None:
    dialog.close()
    assert dialog.runner.pool.activeThreadCount() == 0  # every search and thumbnail ended


@pytest.fixture
def server_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer
) -> tuple[str, list[tuple[str, str]]]:
    """A patient with two series on the real Orthanc, and site settings naming the server."""
    patient_id = f"BR-{uuid.uuid4().hex[:8].upper()}"
    uids = _two_series(tmp_path / "images", patient_id)
    orthanc.upload_files(sorted((tmp_path / "images").rglob("*.dcm")))
    site = tmp_path / "site.toml"
    site.write_text(
        f'[[servers]]\nname = "test-pacs"\nurl = "{orthanc.dicomweb_url}"\nretries = 0\n'
    )
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(site))
    return patient_id, uids


def test_search_a_server_and_start_a_batch_from_a_series(
    qtbot, tmp_path: Path, server_site, no_leaks
) -> None:
    patient_id, uids = server_site
    batches = tmp_path / "batches"
    dialog = _browser(qtbot, database_dir=tmp_path / "db", batches_dir=batches)
    assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())] == [
        "This computer",
        "test-pacs",
    ]
    dialog.tabs.setCurrentIndex(1)
    tab = dialog.current_tab
    assert not dialog.start_button.isEnabled()  # nothing selected yet

    tab.search_bar.set_filters(patient_id=patient_id, modality="CT")
    qtbot.mouseClick(tab.search_bar.search_button, LEFT)
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 1, timeout=WAIT_MS)
    assert tab.studies.item(0, 1).text() == "Browser, Test"
    assert tab.patients.rowCount() == 2  # "All patients" and the one patient

    tab.studies.selectRow(0)
    qtbot.waitUntil(lambda: tab.series.rowCount() == 2, timeout=WAIT_MS)
    assert [r.description for r in tab.series.records()] == ["portal venous", "arterial"]
    qtbot.waitUntil(lambda: tab.thumbnails_shown == 2, timeout=WAIT_MS)

    tab.series.selectRow(1)
    assert dialog.selection_label.text() == "Selected: 1 series"
    with qtbot.waitSignal(dialog.batch_created, timeout=WAIT_MS) as created:
        qtbot.mouseClick(dialog.start_button, LEFT)
    path = created.args[0]
    assert path.parent == batches and not dialog.isVisible()
    batch = load_batch(path)
    with open_source(batch) as source:
        assert [c.id for c in source.iter_cases()] == [uids[1][1]]
    _close(dialog)

    # Later: add the other series to that batch; the batch then reads both.
    again = _browser(qtbot, database_dir=tmp_path / "db", batches_dir=batches, current_batch=path)
    again.tabs.setCurrentIndex(1)
    tab = again.current_tab
    tab.search_bar.set_filters(patient_id=patient_id)
    tab.run_search()
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 1, timeout=WAIT_MS)
    tab.studies.selectRow(0)
    qtbot.waitUntil(lambda: tab.series.rowCount() == 2, timeout=WAIT_MS)
    tab.series.selectRow(0)
    assert again.addable_batches() == [path]
    again.add_menu.aboutToShow.emit()  # what opening the "Add to batch…" menu does
    (action,) = again.add_menu.actions()
    assert action.text() == f"{path.stem}  (being read)"
    with qtbot.waitSignal(again.batch_created, timeout=WAIT_MS) as added:
        action.trigger()
    assert added.args[0] == path
    with open_source(load_batch(path)) as source:
        assert sorted(c.id for c in source.iter_cases()) == sorted(u[1] for u in uids)
    _close(again)


def test_show_more_pages_and_closing_mid_search_leaves_nothing_running(
    qtbot, tmp_path: Path, orthanc: OrthancServer, no_leaks
) -> None:
    prefix = f"PG-{uuid.uuid4().hex[:6].upper()}"
    for number in range(3):
        _two_series(tmp_path / f"p{number}", f"{prefix}-{number}")
    orthanc.upload_files(sorted(tmp_path.rglob("*.dcm")))
    server = ServerSettings(name="test-pacs", url=orthanc.dicomweb_url, retries=0)
    dialog = _browser(
        qtbot, servers={"test-pacs": server}, database_dir=tmp_path / "db", page_size=2
    )
    dialog.tabs.setCurrentIndex(1)
    tab = dialog.current_tab
    tab.search_bar.set_filters(patient_id=f"{prefix}-*")
    tab.run_search()
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 2, timeout=WAIT_MS)
    assert tab.more_button.isVisible()
    assert tab.count_label.text() == "2 studies shown, more match"
    qtbot.mouseClick(tab.more_button, LEFT)
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 3, timeout=WAIT_MS)
    assert not tab.more_button.isVisible()
    assert len({r.study_uid for r in tab.studies.records()}) == 3
    assert tab.patients.rowCount() == 4  # all patients + 3
    # Choosing a patient narrows the studies to theirs (and selects the only one).
    tab.patients.selectRow(2)
    patient = tab.patients.record(2)
    assert [s.patient_id for s in tab.studies.records()] == [patient.patient_id]
    qtbot.waitUntil(lambda: tab.series.rowCount() == 2, timeout=WAIT_MS)
    tab.patients.selectRow(0)  # "All patients"
    assert tab.studies.rowCount() == 3
    # Close while a search and thumbnails are under way: the dialog waits for its threads.
    tab.studies.selectAll()
    tab.run_search()
    _close(dialog)


def test_unreachable_server_is_named_calmly_in_its_tab(qtbot, tmp_path: Path, no_leaks) -> None:
    gone = ServerSettings(name="gone-pacs", url="http://127.0.0.1:9/dicom-web", retries=0)
    dialog = _browser(qtbot, servers={"gone-pacs": gone}, database_dir=tmp_path / "db")
    dialog.tabs.setCurrentIndex(1)
    tab = dialog.current_tab
    tab.run_search()
    qtbot.waitUntil(tab.banner.isVisible, timeout=WAIT_MS)
    assert tab.banner.title.text() == "gone-pacs cannot be searched"
    text = tab.banner.text.text()
    assert "'gone-pacs' (http://127.0.0.1:9/dicom-web)" in text
    assert "check that the server is running" in text
    assert "Traceback" not in text
    assert tab.banner.button_texts() == ["Try again"]
    assert tab.search_bar.search_button.isEnabled()  # the tab stays usable
    # A date range that ends before it starts: said in the banner, nothing is sent.
    tab.search_bar.set_filters(date_from=QtCore.QDate(2025, 2, 1), date_to=QtCore.QDate(2025, 1, 1))
    tab.run_search()
    assert tab.banner.title.text() == "Check the search fields"
    assert "swap" in tab.banner.text.text()
    _close(dialog)


def test_refused_credentials_name_where_the_password_comes_from(
    qtbot, tmp_path: Path, orthanc_factory, monkeypatch: pytest.MonkeyPatch, no_leaks
) -> None:
    secured = orthanc_factory(users={"reader": "right-password"})
    monkeypatch.setenv("BROWSER_TEST_PASSWORD", "wrong-password")
    server = ServerSettings(
        name="secure-pacs",
        url=secured.dicomweb_url,
        auth=AuthKind.BASIC,
        username="reader",
        secret=SecretRef(env="BROWSER_TEST_PASSWORD"),
        retries=0,
    )
    dialog = _browser(qtbot, servers={"secure-pacs": server}, database_dir=tmp_path / "db")
    dialog.tabs.setCurrentIndex(1)
    tab = dialog.current_tab
    tab.run_search()
    qtbot.waitUntil(tab.banner.isVisible, timeout=WAIT_MS)
    assert tab.banner.title.text() == "secure-pacs refused the search"
    text = tab.banner.text.text()
    assert "401" in text and "$BROWSER_TEST_PASSWORD" in text
    assert "wrong-password" not in text  # never the secret
    _close(dialog)


def test_import_a_folder_with_progress_then_read_it(qtbot, tmp_path: Path, no_leaks) -> None:
    uids = _two_series(tmp_path / "incoming", f"IMP-{uuid.uuid4().hex[:6]}")
    files = sorted((tmp_path / "incoming").rglob("*.dcm"))
    database = tmp_path / "db"
    dialog = _browser(qtbot, database_dir=database, batches_dir=tmp_path / "batches")
    tab = dialog.current_tab
    qtbot.waitUntil(lambda: tab.searched_once, timeout=WAIT_MS)
    assert tab.studies.rowCount() == 0 and tab.count_label.text() == "No studies match"

    bar = dialog.import_bar
    seen: list[tuple[int, int]] = []
    bar.progress.valueChanged.connect(lambda v: seen.append((v, bar.progress.maximum())))
    with qtbot.waitSignal(bar.imported, timeout=WAIT_MS) as done:
        bar.start_import(tmp_path / "incoming")
        assert bar.progress.isVisible() and bar.cancel_button.isVisible()
    report = done.args[0]
    assert report.imported == len(files)
    assert seen and seen[-1] == (len(files), len(files))  # the bar reached the end
    assert not bar.progress.isVisible()
    assert bar.status.text() == f"{len(files)} images imported."
    # The local tab searches again by itself and lists the new study.
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 1, timeout=WAIT_MS)
    tab.studies.selectRow(0)
    qtbot.waitUntil(lambda: tab.thumbnails_shown == 2, timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.batch_created, timeout=WAIT_MS) as created:
        dialog.start_batch()  # the study: every series of it
    batch = load_batch(created.args[0])
    assert batch.source.type == "dicom-db"
    with open_source(batch) as source:
        cases = list(source.iter_cases())
    assert sorted(c.id for c in cases) == sorted(u[1] for u in uids)
    assert all(len(c.images[0].files) == 6 for c in cases)
    _close(dialog)


def test_cancelled_import_leaves_the_browser_ready(qtbot, tmp_path: Path, no_leaks) -> None:
    _two_series(tmp_path / "incoming", "CANCEL-1")
    dialog = _browser(qtbot, database_dir=tmp_path / "db")
    bar = dialog.import_bar
    bar.start_import(tmp_path / "incoming")
    qtbot.mouseClick(bar.cancel_button, LEFT)
    assert bar.status.text().startswith("Import cancelled")
    assert bar.import_button.isEnabled() and not bar.progress.isVisible()
    assert not dialog.current_tab.banner.isVisible()  # a cancel is not a problem
    _close(dialog)
    # What came in before the cancel stays (nothing, when it was cancelled before it began).
    studies = LocalDatabaseSearch(tmp_path / "db").search_studies(SearchFilters()).items
    assert len(studies) <= 1


def test_failed_import_is_shown_in_the_banner(qtbot, tmp_path: Path, no_leaks) -> None:
    _two_series(tmp_path / "incoming", "FAIL-1")
    not_a_database = tmp_path / "my-files"
    not_a_database.mkdir()
    (not_a_database / "notes.txt").write_text("mine")
    dialog = _browser(qtbot, database_dir=not_a_database)
    tab = dialog.current_tab
    with qtbot.waitSignal(dialog.import_bar.failed, timeout=WAIT_MS):
        dialog.import_bar.start_import(tmp_path / "incoming")
    assert tab.banner.isVisible()
    assert tab.banner.title.text() == "The import stopped"
    assert "not a CaseIterator DICOM database" in tab.banner.text.text()
    assert dialog.import_bar.import_button.isEnabled()
    assert sorted(p.name for p in not_a_database.iterdir()) == ["notes.txt"]  # untouched
    _close(dialog)


def test_import_folder_dialog_stays_in_allowed_folders(qtbot, tmp_path: Path, no_leaks) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    dialog = ImportFolderDialog([allowed])
    qtbot.addWidget(dialog)
    assert dialog.is_allowed(allowed / "study") and not dialog.is_allowed(other)
    # Kiosk without allowed folders: no folder dialog, so no import button at all.
    kiosk = _browser(qtbot, database_dir=tmp_path / "db", kiosk=True)
    assert not kiosk.import_bar.import_button.isVisible()
    _close(kiosk)
    allowed_kiosk = _browser(
        qtbot, database_dir=tmp_path / "db", kiosk=True, allowed_folders=[allowed]
    )
    assert allowed_kiosk.import_bar.import_button.isVisible()
    _close(allowed_kiosk)


def test_reading_window_switches_to_a_batch_made_in_the_browser(
    qtbot, tmp_path: Path, reading, no_leaks
) -> None:
    """The wiring the reading window uses: a batch made in the browser becomes the window's
    requested batch and the window closes for it, leaving no thread behind."""
    window = reading.window
    dialog = DicomBrowserDialog(
        {},
        database_dir=tmp_path / "db",
        batches_dir=tmp_path / "batches",
        current_batch=reading.batch.path,
        parent=window,
    )
    dialog.show()
    qtbot.waitExposed(dialog)
    tab = dialog.current_tab
    with qtbot.waitSignal(dialog.import_bar.imported, timeout=WAIT_MS):
        dialog.import_bar.start_import(reading.batch.path.parent / "dicom")
    qtbot.waitUntil(lambda: tab.studies.rowCount() == 2, timeout=WAIT_MS)
    tab.studies.selectRow(0)
    study_uid = tab.studies.record(0).study_uid
    assert dialog.addable_batches() == []  # the demo batch reads a folder, not this database
    with qtbot.waitSignal(dialog.batch_created, timeout=WAIT_MS):
        dialog.start_batch()
    path = dialog.created_batch
    assert path is not None and not dialog.isVisible()
    dialog.deleteLater()
    window.requested_batch = path
    assert window.close()
    assert window.requested_batch == path and not window.isVisible()
    with open_source(load_batch(path)) as source:
        (case,) = source.iter_cases()
    (expected,) = [c for c in reading.cases if c.result.study_uid == study_uid]
    assert (case.id, case.name) == (expected.id, expected.name)  # the same case as the demo's


def test_header_button_opens_the_browser_and_cancel_keeps_the_batch(reading, qtbot) -> None:
    """The reader reaches the browser from the window's header; closing it changes nothing."""
    window = reading.window
    seen: list[str] = []

    def close_browser() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        seen.append(type(dialog).__name__ if dialog is not None else "none")
        if dialog is not None:
            dialog.reject()

    QtCore.QTimer.singleShot(300, close_browser)
    qtbot.mouseClick(window.header.browser_button, QtCore.Qt.MouseButton.LeftButton)
    assert seen == ["DicomBrowserDialog"]
    assert window.isVisible() and window.requested_batch is None
