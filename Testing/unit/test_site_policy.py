"""Site policy: the site's [sources] refuse batches it does not allow, its [output] wins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from CaseIteratorApp.cli import main
from CaseIteratorCoreLib.batch_from_selection import BatchOrigin, SelectedItem, write_batch
from CaseIteratorCoreLib.errors import SitePolicyError, SiteSettingsError
from CaseIteratorCoreLib.site_policy import load_site_batch, load_site_policy, site_policy
from CaseIteratorCoreLib.site_settings import load_site_settings

SERVERS = (
    '[[servers]]\nname = "pacs"\nurl = "https://pacs.example.org/dicom-web"\n\n'
    '[[servers]]\nname = "research"\nurl = "http://research:8042/dicom-web"\n\n'
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the site file (servers pacs and research first) and point the settings at it."""
    path = tmp_path / "etc" / "site.toml"
    path.parent.mkdir()
    monkeypatch.setenv("CASEITERATOR_SITE_SETTINGS", str(path))

    def write(text: str) -> Path:
        path.write_text(SERVERS + text)
        return path

    return write


def _batch(folder: Path, source: str, output: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "batch.toml"
    path.write_text(f'name = "b"\n\n[source]\n{source}\n{output}')
    return path


def _refused(batch: Path) -> SitePolicyError:
    with pytest.raises(SitePolicyError) as info:
        load_site_batch(batch)
    return info.value


def test_tables_are_read(site, tmp_path: Path) -> None:
    site(
        '[sources]\ntypes = ["dicomweb", "dicom-db"]\nservers = ["pacs"]\n'
        'folders = ["/data/studies"]\n\n'
        '[output]\ndestination = "/data/results"\nformat = "seg.nrrd"\nseg_type = "labelmap"\n'
    )
    policy = load_site_policy()
    assert policy.types == ("dicomweb", "dicom-db") and policy.servers == ("pacs",)
    assert policy.folders == (Path("/data/studies"),)
    assert (policy.destination, policy.format, policy.seg_type) == (
        "/data/results",
        "seg.nrrd",
        "labelmap",
    )
    # Nothing set: nothing fixed, every batch passes as written.
    site("")
    empty = load_site_policy()
    assert empty.types is empty.servers is empty.folders is empty.destination is None


@pytest.mark.parametrize(
    ("table", "key", "line", "says"),
    [
        ('[sources]\ntype = ["csv"]\n', "sources.type", 10, "unknown key 'type'"),
        ('[sources]\ntypes = ["dicom"]\n', "sources.types", 10, "'dicom' is not known"),
        ('[sources]\ntypes = "csv"\n', "sources.types", 10, "must be a list"),
        ('[sources]\nservers = ["pacs", "x"]\n', "sources.servers", 10, "'x' is not a"),
        ('[sources]\nfolders = ["data"]\n', "sources.folders", 10, "relative path"),
        ('[output]\n\nformat = "nifti"\n', "output.format", 11, "'nifti' is not known"),
        ('[output]\ndestination = "results"\n', "output.destination", 10, "relative"),
        ("[output]\nseg_type = 3\n", "output.seg_type", 10, "seg_type 3 is not known"),
    ],
)
def test_bad_tables_name_file_key_and_line(site, table, key, line, says) -> None:
    path = site(table)
    with pytest.raises(SiteSettingsError) as info:
        load_site_policy()
    assert (info.value.path, info.value.key, info.value.line) == (path, key, line)
    assert says in str(info.value) and str(path) in str(info.value)


def test_the_file_that_set_the_table_is_named(tmp_path: Path) -> None:
    """The admin file holds servers only; [sources] comes from the reader's file: it is named."""
    admin, user = tmp_path / "admin.toml", tmp_path / "user.toml"
    admin.write_text(SERVERS + '[output]\nformat = "dicom-seg"\n')
    user.write_text('[output]\nformat = "seg.nrrd"\n\n[sources]\nservers = ["nope"]\n')
    settings = load_site_settings([admin, user])
    with pytest.raises(SiteSettingsError) as info:
        site_policy(settings)
    assert (info.value.path, info.value.line) == (user, 5)
    user.write_text('[output]\nformat = "seg.nrrd"\n')
    assert site_policy(load_site_settings([admin, user])).format == "dicom-seg"  # admin wins


def test_source_type_refused(site, tmp_path: Path) -> None:
    path = site('[sources]\ntypes = ["dicomweb"]\n')
    (tmp_path / "images").mkdir()
    batch = _batch(tmp_path / "b", 'type = "dicom-folder"\npath = "../images"\n')
    error = _refused(batch)
    assert (error.path, error.key, error.line) == (batch, "source.type", 4)
    assert (error.site_file, error.rule) == (path, "sources.types")
    text = str(error)
    assert "does not read 'dicom-folder' batches (allowed: dicomweb)" in text
    assert f"[sources] types in the site settings {path}, line 10" in text
    assert "ask your site admin" in text


def test_dicomweb_batch_must_name_an_allowed_site_server(site, tmp_path: Path) -> None:
    path = site('[sources]\nservers = ["pacs"]\n')
    own = _batch(tmp_path / "own", 'type = "dicomweb"\nurl = "https://user@other/dicom-web"\n')
    error = _refused(own)
    assert (error.key, error.line, error.rule, error.site_file) == (
        "source.url",
        5,
        "sources.servers",
        path,
    )
    assert 'write server = "pacs" under [source]' in str(error)
    assert "user@other" not in str(error)  # a url may carry a user name: never repeated
    other = _batch(tmp_path / "other", 'type = "dicomweb"\nserver = "research"\n')
    error = _refused(other)
    assert error.key == "source.server" and "server 'research' is not one" in str(error)
    allowed = _batch(tmp_path / "ok", 'type = "dicomweb"\nserver = "pacs"\n')
    assert load_site_batch(allowed).source.options["server"] == "pacs"


def test_local_paths_must_be_inside_the_allowed_folders(site, tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "study").mkdir(parents=True)
    elsewhere.mkdir()
    path = site(f'[sources]\nfolders = ["{data}"]\n')
    inside = _batch(data, 'type = "dicom-folder"\npath = "study"\n')
    assert load_site_batch(inside).source.type == "dicom-folder"
    escape = _batch(data / "x", 'type = "dicom-folder"\npath = "../../elsewhere"\n')
    error = _refused(escape)
    assert (error.key, error.rule, error.site_file) == ("source.path", "sources.folders", path)
    assert f"outside the folders this station may read ({data})" in str(error)
    (data / "link").symlink_to(elsewhere)  # a link out of the allowed folder does not get out
    with pytest.raises(SitePolicyError):
        load_site_batch(_batch(data / "y", f'type = "dicom-folder"\npath = "{data / "link"}"\n'))
    # A bare folder (no batch file) is checked the same way.
    with pytest.raises(SitePolicyError, match="outside the folders"):
        load_site_batch(elsewhere)
    table = elsewhere / "cases.csv"
    table.write_text("image\n")
    csv = _batch(data / "c", f'type = "csv"\npath = "{table}"\n')
    assert _refused(csv).key == "source.path"
    csv_root = _batch(data / "r", f'type = "csv"\npath = "{data / "x.csv"}"\nroot = "/"\n')
    assert _refused(csv_root).key == "source.root"


def test_site_output_replaces_the_batchs(site, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    batch = _batch(
        tmp_path / "b",
        'type = "dicom-folder"\npath = "../images"\n',
        '[output]\nformat = "seg.nrrd"\ndestination = "mine"\nseg_type = "binary"\n',
    )
    site('[output]\ndestination = "/srv/results"\nformat = "dicom-seg"\nseg_type = "labelmap"\n')
    output = load_site_batch(batch).output
    assert (output.format, output.folder, output.seg_type) == (
        "dicom-seg",
        Path("/srv/results"),
        "labelmap",
    )
    site('[output]\ndestination = "source"\n')  # only the destination fixed
    output = load_site_batch(batch).output
    assert output.to_source and output.format == "seg.nrrd"


def test_browser_offers_only_allowed_servers(site) -> None:
    site('[sources]\nservers = ["research"]\n')
    settings = load_site_settings()
    assert list(site_policy(settings).allowed_servers(settings.servers)) == ["research"]
    site('[sources]\ntypes = ["dicom-db"]\n')
    settings = load_site_settings()
    assert site_policy(settings).allowed_servers(settings.servers) == {}
    site("")
    settings = load_site_settings()
    assert list(site_policy(settings).allowed_servers(settings.servers)) == ["pacs", "research"]


def test_selection_batch_the_site_refuses_is_not_written(site, tmp_path: Path) -> None:
    out = tmp_path / "batches"
    site('[sources]\nservers = ["pacs"]\n')
    items = [SelectedItem("1.2.3")]
    with pytest.raises(SitePolicyError, match="server 'research' is not one"):
        write_batch(BatchOrigin("dicomweb", server="research"), items, folder=out)
    assert not out.exists() or os.listdir(out) == []
    written = write_batch(BatchOrigin("dicomweb", server="pacs"), items, folder=out)
    assert written.path.is_file()
    site(f'[sources]\nfolders = ["{tmp_path / "data"}"]\n')
    database = BatchOrigin("dicom-db", database=tmp_path / "db")
    with pytest.raises(SitePolicyError, match="outside the folders"):
        write_batch(database, items, folder=tmp_path / "other")
    assert not (tmp_path / "other").exists() or os.listdir(tmp_path / "other") == []


def test_cli_refuses_what_the_app_refuses(site, demo_batch: Path, tmp_path: Path, capsys) -> None:
    """``validate`` and ``status`` open a batch as the app does (the same load_site_batch)."""
    path = site(f'[sources]\nfolders = ["{tmp_path}"]\n')
    assert main(["validate", str(demo_batch), "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert str(demo_batch) in error and f"[sources] folders in the site settings {path}" in error
    assert "ask your site admin" in error
    assert main(["status", str(demo_batch)]) == 2
    assert "outside the folders" in capsys.readouterr().err
    site(f'[sources]\nfolders = ["{demo_batch.parent}"]\n')
    assert main(["status", str(demo_batch), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["cases"]) == 2
    site('[sources]\ntypo = ["csv"]\n')  # a wrong site file: said, exit 2
    assert main(["status", str(demo_batch)]) == 2
    assert "unknown key 'typo' in [sources]" in capsys.readouterr().err


def test_each_file_a_table_names_must_be_inside_the_allowed_folders(site, tmp_path: Path) -> None:
    """A CSV inside an allowed folder cannot read a row's image from elsewhere: that row's case
    names the file and the rule, and the other rows go on."""
    import SimpleITK as sitk

    from CaseIteratorCoreLib.loading import inspect_case
    from CaseIteratorCoreLib.problems import ProblemCode
    from CaseIteratorCoreLib.sources import open_source

    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    image = sitk.Image(8, 8, 4, sitk.sitkInt16)
    for folder in (data, elsewhere):
        sitk.WriteImage(image, str(folder / "ct.nrrd"))
    (data / "link.nrrd").symlink_to(elsewhere / "ct.nrrd")
    table = data / "cases.csv"
    table.write_text(
        f"ID,image\ninside,ct.nrrd\nabsolute,{elsewhere / 'ct.nrrd'}\n"
        "dotdot,../elsewhere/ct.nrrd\nlinked,link.nrrd\n"
    )
    site(f'[sources]\nfolders = ["{data}"]\n')
    batch = load_site_batch(_batch(data / "b", f'type = "csv"\npath = "{table}"\n'))
    cases = {c.id: c for c in open_source(batch).iter_cases()}
    assert list(cases) == ["inside", "absolute", "dotdot", "linked"]
    assert cases["inside"].problems == ()
    for name in ("absolute", "dotdot", "linked"):
        (problem,) = cases[name].problems
        assert problem.code is ProblemCode.OUTSIDE_ALLOWED_FOLDERS and problem.is_error
        assert "column 'image'" in problem.message
        assert f"outside the folders this station may read ({data})" in problem.message
    report = inspect_case(open_source(batch), cases["absolute"])
    assert not report.ok
    # Without the site's folders the same table reads every row.
    site("")
    free = load_site_batch(_batch(data / "b", f'type = "csv"\npath = "{table}"\n'))
    assert all(not c.problems for c in open_source(free).iter_cases())


def test_a_link_out_of_an_allowed_dicom_folder_is_skipped(site, tmp_path: Path) -> None:
    import shutil

    from CaseIteratorCoreLib.demo_data import write_demo_batch
    from CaseIteratorCoreLib.sources import open_source

    demo = write_demo_batch(tmp_path / "demo", 2, size=16, n_slices=4).parent / "dicom"
    first, second = sorted(p for p in demo.iterdir() if p.is_dir())
    data = tmp_path / "data"
    shutil.copytree(first, data / "copied")
    outside = sorted(second.rglob("*.dcm"))
    for k, path in enumerate(outside):
        (data / f"linked-{k}.dcm").symlink_to(path)
    site(f'[sources]\nfolders = ["{data}"]\n')
    source = open_source(load_site_batch(data))
    assert len(list(source.iter_cases())) == 1  # the copied series; the linked one is not read
    assert sorted(s.path for s in source.skipped) == sorted(
        str(data / f"linked-{k}.dcm") for k in range(len(outside))
    )
    assert all("outside the folders this station may read" in s.reason for s in source.skipped)


def test_slicer_database_files_linked_from_elsewhere_are_refused(site, tmp_path: Path) -> None:
    """Slicer's "add link" import leaves the files where they were: a database inside the
    allowed folder does not open the door to them."""
    from CaseIteratorCoreLib.demo_data import write_demo_batch
    from CaseIteratorCoreLib.problems import ProblemCode
    from CaseIteratorCoreLib.sources import open_source

    from slicer_dicom_db import build_slicer_database

    demo = write_demo_batch(tmp_path / "demo", 2, size=16, n_slices=4).parent / "dicom"
    first, second = sorted(p for p in demo.iterdir() if p.is_dir())
    data = tmp_path / "data"
    build_slicer_database(data / "db", sorted(first.rglob("*.dcm")))  # copied in
    build_slicer_database(data / "db", sorted(second.rglob("*.dcm")), copy=False)  # linked
    site(f'[sources]\nfolders = ["{data}"]\n')
    batch = load_site_batch(_batch(data / "b", f'type = "slicer-db"\npath = "{data / "db"}"\n'))
    copied, linked = list(open_source(batch).iter_cases())
    assert copied.problems == ()
    (problem,) = linked.problems
    assert problem.code is ProblemCode.OUTSIDE_ALLOWED_FOLDERS and problem.is_error
    assert str(second) in problem.message and "(and 3 more files)" in problem.message
