"""The DICOM browser offers as tabs only the servers the site's [sources] servers allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from CaseReaderLib.dicom_browser import DicomBrowserDialog


def test_browser_tabs_follow_the_site_policy(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        '[[servers]]\nname = "pacs"\nurl = "http://127.0.0.1:9/dicom-web"\n\n'
        '[[servers]]\nname = "research"\nurl = "http://127.0.0.1:9/research"\n\n'
        '[sources]\nservers = ["research"]\n'
    )
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(site))
    dialog = DicomBrowserDialog(database_dir=tmp_path / "db")
    qtbot.addWidget(dialog)
    try:
        names = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
        assert len(names) == 2 and names[1] == "research"  # the local database, then research
        assert not dialog.banner.isVisible()
    finally:
        dialog.close()
    assert dialog.runner.pool.activeThreadCount() == 0


def test_no_local_database_tab_when_the_site_allows_no_dicom_db_batch(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        '[[servers]]\nname = "pacs"\nurl = "http://127.0.0.1:9/dicom-web"\n\n'
        '[sources]\ntypes = ["dicomweb"]\n'
    )
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(site))
    dialog = DicomBrowserDialog(database_dir=tmp_path / "db")
    qtbot.addWidget(dialog)
    try:
        names = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
        assert names == ["pacs"] and dialog.import_bar is None
    finally:
        dialog.close()
    site.write_text('[sources]\ntypes = ["csv"]\n')  # nothing the browser can offer
    dialog = DicomBrowserDialog(database_dir=tmp_path / "db")
    qtbot.addWidget(dialog)
    try:
        assert dialog.tabs.count() == 0
        assert "ask your site admin" in dialog.banner.text.text()
    finally:
        dialog.close()
