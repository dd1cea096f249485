"""``caseiterator servers`` checks each configured server for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from CaseIteratorApp.cli import main

from orthanc_server import OrthancServer

pytestmark = pytest.mark.orthanc


def test_servers_lists_and_checks_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, orthanc: OrthancServer
) -> None:
    with OrthancServer(users={"reader": "pw-good-1"}) as secured:
        site = tmp_path / "site.toml"
        site.write_text(
            f'[[servers]]\nname = "open"\nurl = "{orthanc.dicomweb_url}"\n\n'
            f'[[servers]]\nname = "secured"\nurl = "{secured.dicomweb_url}"\nauth = "basic"\n'
            'username = "reader"\npassword_env = "SECURED_PW"\n\n'
            '[[servers]]\nname = "gone"\nurl = "http://127.0.0.1:9/dicom-web"\nretries = 0\n'
        )
        monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(site))
        monkeypatch.setenv("SECURED_PW", "pw-good-1")
        assert main(["servers", "--json"]) == 1  # "gone" fails
        report = {s["name"]: s for s in json.loads(capsys.readouterr().out)["servers"]}
        assert report["open"]["ok"] and report["open"]["stow"] is True
        assert report["secured"]["ok"]
        assert report["gone"]["reachable"] is False and report["gone"]["stow"] is None
        assert "cannot be reached" in report["gone"]["notes"][0]

        monkeypatch.setenv("SECURED_PW", "pw-wrong-2")
        main(["servers", "--json"])
        out = capsys.readouterr().out
        secured_report = {s["name"]: s for s in json.loads(out)["servers"]}["secured"]
        assert secured_report["reachable"] and not secured_report["qido"]
        assert secured_report["stow"] is False
        assert "401" in secured_report["notes"][0] and "$SECURED_PW" in secured_report["notes"][0]
        assert "pw-wrong-2" not in out and "pw-good-1" not in out


def test_servers_without_configuration(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["servers"]) == 0
    assert "No DICOMweb servers configured" in capsys.readouterr().out
