"""Site settings: the admin's file wins, mistakes name file and line, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest

from CaseIteratorCoreLib.errors import SiteSettingsError
from CaseIteratorCoreLib.server_settings import AuthKind, SecretError
from CaseIteratorCoreLib.site_settings import load_site_settings


def test_admin_file_wins_and_user_file_adds(tmp_path: Path) -> None:
    admin, user = tmp_path / "admin.toml", tmp_path / "user.toml"
    admin.write_text('[[servers]]\nname = "pacs"\nurl = "https://pacs/dicom-web"\n')
    user.write_text(
        '[[servers]]\nname = "pacs"\nurl = "http://evil/dicom-web"\n\n'
        '[[servers]]\nname = "research"\nurl = "http://research:8042/dicom-web/"\n'
        'auth = "bearer"\ntoken_file = "token.txt"\ntimeout_s = 5\n'
    )
    settings = load_site_settings([admin, tmp_path / "missing.toml", user])
    assert settings.files == (admin, user)
    assert settings.server("pacs").url == "https://pacs/dicom-web"
    research = settings.server("research")
    assert research.url == "http://research:8042/dicom-web" and research.auth is AuthKind.BEARER
    assert research.secret.file == tmp_path / "token.txt" and research.timeout_s == 5
    with pytest.raises(KeyError, match=r"no server named 'x'.*pacs, research"):
        settings.server("x")


def test_mistakes_name_the_line(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[[servers]]\nname = "pacs"\nurl = "https://pacs"\ntimeout = 5\n')
    with pytest.raises(SiteSettingsError) as info:
        load_site_settings([site])
    assert info.value.line == 4 and "did you mean 'timeout_s'" in str(info.value)
    site.write_text('[[servers]]\nname = "pacs"\nurl = "https://pacs"\ntoken = "abc"\n')
    with pytest.raises(SiteSettingsError) as info:
        load_site_settings([site])
    assert "written in clear is refused" in str(info.value) and "abc" not in str(info.value)
    site.write_text('[[servers]]\nurl = "https://pacs"\n')
    with pytest.raises(SiteSettingsError, match="needs a name"):
        load_site_settings([site])


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        '[[servers]]\nname = "a"\nurl = "https://a"\nauth = "basic"\nusername = "u"\n'
        'password_env = "A_PW"\n\n'
        '[[servers]]\nname = "b"\nurl = "https://b"\nauth = "bearer"\ntoken_file = "tok"\n'
    )
    settings = load_site_settings([site])
    with pytest.raises(SecretError, match=r"A_PW is not set"):
        settings.server("a").secret.read()
    monkeypatch.setenv("A_PW", "pw")
    assert settings.server("a").secret.read() == "pw"
    token = tmp_path / "tok"
    token.write_text("tkn\n")
    token.chmod(0o640)
    with pytest.raises(SecretError, match="chmod 600"):
        settings.server("b").secret.read()
    token.chmod(0o600)
    assert settings.server("b").secret.read() == "tkn"
    assert "tkn" not in repr(settings.server("b")) and "pw" not in repr(settings.server("a"))


def test_the_environment_cannot_leave_the_admin_file_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$CASEITERATOR_SITE_SETTINGS replaces the reader's files, never the admin's."""
    from CaseIteratorCoreLib import site_settings

    admin = tmp_path / "etc" / "site.toml"
    admin.parent.mkdir()
    admin.write_text('[[servers]]\nname = "pacs"\nurl = "http://pacs.example.org/dicom-web"\n')
    own = tmp_path / "own.toml"
    own.write_text('[[servers]]\nname = "mine"\nurl = "http://127.0.0.1:1/dicom-web"\n')
    monkeypatch.setattr(site_settings, "ADMIN_FILE", admin)
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(own))
    assert site_settings.site_settings_paths() == [admin, own]
    assert sorted(load_site_settings().servers) == ["mine", "pacs"]
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", "")
    assert site_settings.site_settings_paths() == [admin]
    admin.unlink()  # no admin file on this machine: the list is the environment's
    assert site_settings.site_settings_paths() == []
