"""The self-contained bundle, end to end: unpacked into an empty folder, run with no virtual env.

The archive is ``$CASEITERATOR_BUNDLE_ARCHIVE`` when set, else built here by
``packaging/build_bundle.sh`` (minutes). Every command runs the frozen ``caseiterator`` with a
bare environment (no PYTHONPATH, no venv on PATH, a temporary HOME), the way a double-click on
a reading station does. ``run_bundle_test.sh`` runs this inside a network namespace with only
loopback: nothing is fetched at run time.

The reading window is started under Xvfb on a demo batch and grabbed from the X server (from
outside the application): the window must fill the screen, show the first case in its
header (compared with ``reference/header_first_case.png``) and CT pixels in the axial view.
Screenshots land in ``Testing/_output/bundle/``. Cold start (process start to the log line
"case ... shown") is printed, not asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from screen_grab import load_rgb

from series_factory import write_series

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parent / "reference"
OUTPUT = ROOT / "Testing" / "_output" / "bundle"
#: Screen of the virtual display (the reference crop was made at this size).
SCREEN = (1600, 1000)
#: Demo batch of the test (the reference header shows its first case).
DEMO_ARGS = ("--cases", "2", "--size", "256", "--slices", "60")
#: Header crop (rows, columns) of the window that shows "Case 1 of 2" and the case title.
HEADER = (slice(0, 58), slice(440, 1160))
#: A part of the axial view well inside the body of the phantom.
AXIAL = (slice(300, 700), slice(400, 850))


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a desktop start: nothing of the developer's Python set-up."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CASEITERATOR_DATA_DIR": str(home / "data"),
        "CASEITERATOR_SITE_SETTINGS": "",
    }
    env.update(extra)
    return env


def run_frozen(
    exe: Path, *args: str, home: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the frozen command line; output captured as text."""
    return subprocess.run(
        [str(exe), *args],
        env=bare_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle archive: the one named by the environment, else a fresh build."""
    given = os.environ.get("CASEITERATOR_BUNDLE_ARCHIVE")
    if given:
        path = Path(given)
        assert path.is_file(), f"CASEITERATOR_BUNDLE_ARCHIVE={given} is not a file"
        return path
    build = tmp_path_factory.mktemp("bundle-build")
    subprocess.run(
        [str(ROOT / "packaging" / "build_bundle.sh")],
        env={**os.environ, "CASEITERATOR_BUNDLE_BUILD": str(build)},
        check=True,
        timeout=3600,
    )
    (path,) = build.glob("caseiterator-*-linux-x86_64.tar.gz")
    return path


@pytest.fixture(scope="module")
def bundle(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive unpacked into an empty folder: its one top folder."""
    target = tmp_path_factory.mktemp("unpacked")
    assert not any(target.iterdir())
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(target)], check=True, timeout=600)
    (top,) = target.iterdir()
    assert (top / "caseiterator").is_file() and os.access(top / "caseiterator", os.X_OK)
    print(
        f"\nbundle {archive.name}: {archive.stat().st_size / 2**20:.0f} MiB archive, "
        f"{_folder_size(top) / 2**20:.0f} MiB unpacked"
    )
    return top


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty home folder for the frozen app."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def demo_batch(bundle: Path, home: Path) -> Path:
    """The demo batch, written by the bundle's own demo-batch generator."""
    result = run_frozen(
        bundle / "caseiterator", "demo-data", str(home / "demo"), *DEMO_ARGS, home=home
    )
    assert result.returncode == 0, result.stderr
    batch = home / "demo" / "demo.toml"
    assert batch.is_file(), result.stdout + result.stderr
    return batch


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_help_lists_the_commands(bundle: Path, home: Path) -> None:
    result = run_frozen(bundle / "caseiterator", "--help", home=home)
    assert result.returncode == 0, result.stderr
    for command in ("app", "validate", "demo-data", "import", "outbox"):
        assert command in result.stdout


def test_bundle_carries_decoders_qt_and_slicer_core(bundle: Path, home: Path) -> None:
    import json

    result = run_frozen(bundle / "caseiterator", "--bundle-check", home=home)
    report = json.loads(result.stdout)
    assert report["problems"] == [], report["problems"]
    assert result.returncode == 0
    assert report["frozen"] is True
    # pylibjpeg found its plugins through the entry points copied into the bundle.
    assert "1.2.840.10008.1.2.4.90" in report["decoders"]["pylibjpeg_entry_points"]
    assert {"xcb", "offscreen"} <= set(report["qt"]["platforms"])


def test_demo_batch_validates(bundle: Path, home: Path, demo_batch: Path) -> None:
    result = run_frozen(bundle / "caseiterator", "validate", str(demo_batch), home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all cases are fine" in result.stdout


@pytest.mark.parametrize(
    "syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless], ids=lambda uid: uid.name
)
def test_compressed_series_decode_in_the_bundle(
    bundle: Path, home: Path, tmp_path: Path, syntax: pydicom.uid.UID
) -> None:
    good = tmp_path / "good"
    write_series(good, n=6, rows=32, cols=32, tweak=lambda k, ds: ds.compress(syntax))
    assert pydicom.dcmread(next(good.iterdir())).file_meta.TransferSyntaxUID == syntax
    result = run_frozen(bundle / "caseiterator", "validate", str(good), home=home)
    assert result.returncode == 0, result.stdout + result.stderr

    # The same series with one slice's compressed frame replaced by noise: validate decodes
    # the pixels (so the check above did), and reports the case.
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    victim = sorted(bad.iterdir())[2]
    ds = pydicom.dcmread(victim)
    ds.PixelData = encapsulate([np.random.default_rng(7).bytes(400)])
    ds.save_as(victim)
    result = run_frozen(bundle / "caseiterator", "validate", str(bad), home=home)
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb display (black root, no TCP) for the app; stopped afterwards."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: apt-get install xvfb (./bootstrap.sh installs it)"
    number = next(
        n
        for n in range(91, 200)
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists()
    )
    server = subprocess.Popen(
        [
            xvfb,
            f":{number}",
            "-screen",
            "0",
            f"{SCREEN[0]}x{SCREEN[1]}x24",
            "-br",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 30
    while not socket.exists():
        assert server.poll() is None, f"Xvfb :{number} exited with {server.returncode}"
        assert time.monotonic() < deadline, f"Xvfb :{number} did not start"
        time.sleep(0.05)
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _grab(display: str, out: Path) -> np.ndarray:
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("screen_grab.py")), str(out)],
        env={**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"},
        check=True,
        timeout=120,
    )
    return np.load(out.with_suffix(".npy"))


def _mapped_files(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


def test_app_shows_the_first_case_under_xvfb(
    bundle: Path, home: Path, demo_batch: Path, display: str
) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = home / "data" / "logs" / "caseiterator.log"
    if log.exists():
        log.unlink()
    started = time.monotonic()
    app = subprocess.Popen(
        [str(bundle / "caseiterator"), "app", str(demo_batch), "--reader", "tester"],
        env=bare_env(home, DISPLAY=display, QT_QPA_PLATFORM="xcb"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=home,
    )
    try:
        while not (log.exists() and " shown in " in log.read_text(errors="replace")):
            if app.poll() is not None:
                pytest.fail(f"the app exited with {app.returncode}:\n{app.stdout.read()}")
            if time.monotonic() - started > 300:
                pytest.fail("no case shown within 300 s")
            time.sleep(0.05)
        cold_start = time.monotonic() - started
        shown = next(line for line in log.read_text().splitlines() if " shown in " in line)
        assert "DEMO-001" in shown, shown
        # Everything the process mapped comes from the unpacked bundle or the system:
        # nothing from the developer's virtual environment or the source tree.
        leaked = sorted(
            f for f in _mapped_files(app.pid) if f.startswith(str(ROOT)) or "site-packages" in f
        )
        assert leaked == []
        time.sleep(2.0)  # let the views finish their first render
        screen = _grab(display, OUTPUT / "first-case.png")
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    print(f"\ncold start to the first case shown: {cold_start:.1f} s ({shown.split(': ', 1)[1]})")

    # The reading window fills the screen (not a message box on a black root).
    lit = np.argwhere(screen.max(axis=2) > 0)
    height, width = lit.max(axis=0) - lit.min(axis=0) + 1
    assert width >= SCREEN[0] - 20 and height >= SCREEN[1] - 60, (width, height)

    # Its header names the first case, as in the reference crop.
    header = screen[HEADER].astype(int)
    reference = load_rgb(REFERENCE / "header_first_case.png").astype(int)
    assert header.shape == reference.shape
    # Compared where the reference has text (light on the dark header), and over the whole
    # crop: a shift of one pixel, another case's title or an empty header all fail.
    diff = np.abs(header - reference).max(axis=2)
    ink = reference.max(axis=2) > 90
    if diff[ink].mean() > 20 or diff.mean() > 4:
        from screen_grab import save_rgb

        save_rgb(screen[HEADER], OUTPUT / "header-found.png")
        pytest.fail(
            f"header differs from reference/header_first_case.png: {diff[ink].mean():.0f} on "
            f"the text, {diff.mean():.1f} on average (see {OUTPUT}/header-found.png)"
        )

    # The axial view shows CT grey levels, not a blank or uniform area.
    axial = screen[AXIAL].mean(axis=2)
    assert axial.std() > 20 and len(np.unique(axial.astype(int))) > 50, axial.std()


def test_install_and_uninstall_for_one_user(bundle: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    before = sorted(p.relative_to(user) for p in user.rglob("*"))
    env = bare_env(user)
    subprocess.run(
        [str(bundle / "install.sh"), "--user", "--kiosk-autostart"],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    prefix = user / ".local" / "opt" / "caseiterator"
    link = user / ".local" / "bin" / "caseiterator"
    entry = user / ".local" / "share" / "applications" / "caseiterator.desktop"
    autostart = user / ".config" / "autostart" / "caseiterator-kiosk.desktop"
    version = subprocess.run(
        [str(link), "--version"], env=env, capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and version.stdout.startswith("caseiterator ")
    text = entry.read_text()
    assert f'Exec="{prefix}/caseiterator" app %f' in text
    assert "Icon=caseiterator" in text
    assert (user / ".local/share/icons/hicolor/256x256/apps/caseiterator.png").is_file()
    assert (user / ".local/share/icons/hicolor/scalable/apps/caseiterator.svg").is_file()
    assert f'Exec="{prefix}/caseiterator" app --kiosk' in autostart.read_text()

    subprocess.run(
        [str(prefix / "uninstall.sh")], env=env, check=True, timeout=600, capture_output=True
    )
    assert sorted(p.relative_to(user) for p in user.rglob("*")) == before
