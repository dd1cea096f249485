"""Starting the reading application: splash, Slicer core, batch, reader, the reading window.

Order matters for how it feels: the splash shows before anything heavy; the Slicer core
(~250 MB of libraries) is imported while the splash says so; the batch is listed on a worker
thread while the splash stays painted; the reader is asked once; then the window opens on the
case where this reader stopped last time.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from CaseIteratorCoreLib.paths import default_reader, user_data_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_OK, EXIT_UNUSABLE, EXIT_CANCELLED = 0, 2, 130


@dataclass(frozen=True)
class AppOptions:
    """What ``caseiterator app`` was asked to do."""

    batch: Path | None = None
    reader: str | None = None
    kiosk: bool = False


def _prepare_environment() -> None:
    # VTK renders offscreen and Qt shows the pixels: EGL needs no X server and works with GPU
    # drivers too. Must be set before VTK is imported.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _setup_logging() -> Path:
    folder = user_data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "caseiterator.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return folder


def _in_background(splash: Any, work: Callable[[], T]) -> T:
    """Run ``work`` on a thread while the splash keeps painting; return its result."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # re-raised on the GUI thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="caseiterator-start", daemon=True)
    thread.start()
    while thread.is_alive():
        splash.pump()
        thread.join(0.03)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _show_error(title: str, text: str) -> None:
    from Qt import QtWidgets

    from CaseReaderLib.style import APP_TITLE

    box = QtWidgets.QMessageBox()
    box.setWindowTitle(APP_TITLE)
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    box.setText(title)
    box.setInformativeText(text)
    box.exec()


def _install_excepthook() -> None:
    """An unexpected error is logged and shown as a message, never as a traceback."""

    def hook(kind, value, trace) -> None:
        log.error("unexpected error", exc_info=(kind, value, trace))
        try:
            _show_error(
                "Something went wrong",
                f"{value}\n\nYour saved work and your progress are safe. The details are in "
                f"{user_data_dir() / 'logs' / 'caseiterator.log'}.",
            )
        except Exception:  # never let the hook itself fail
            sys.__excepthook__(kind, value, trace)

    sys.excepthook = hook


def site_prefetch(settings: Any, batch_prefetch: Any) -> Any:
    """The batch's ``[prefetch]`` with what the site's ``[prefetch]`` table fixes.

    Raises
    ------
    SiteSettingsError
        On an unknown key or a value out of range, naming the file and the key.
    """
    from dataclasses import replace

    from CaseIteratorCoreLib.errors import SiteSettingsError

    table = settings.tables.get("prefetch", {})
    path = settings.files[0] if settings.files else Path("site.toml")
    if not isinstance(table, dict):
        raise SiteSettingsError(path, "[prefetch] must be a table.", key="prefetch")
    limits = {"depth": (0, 32), "max_memory_mb": (64, 1 << 20)}
    values = {}
    for key, value in table.items():
        if key not in limits:
            raise SiteSettingsError(
                path,
                f"unknown key {key!r} in [prefetch].",
                key=f"prefetch.{key}",
                fix="allowed keys: depth, max_memory_mb.",
            )
        low, high = limits[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise SiteSettingsError(
                path,
                f"{key} must be a whole number from {low} to {high}, got {value!r}.",
                key=f"prefetch.{key}",
            )
        values[key] = value
    return replace(batch_prefetch, **values)


def choose_reader(options: AppOptions, station: Any, known: list[str]) -> str | None:
    """The reader: ``--reader``, ``$CASEITERATOR_READER``, the station's, else asked."""
    if options.reader:
        return options.reader
    if os.environ.get("CASEITERATOR_READER"):
        return os.environ["CASEITERATOR_READER"]
    if station.reader:
        return station.reader
    from Qt import QtWidgets

    from CaseReaderLib.reader_dialog import ReaderDialog

    if station.readers:
        dialog = ReaderDialog(station.readers, fixed_list=True)
    else:
        dialog = ReaderDialog([default_reader(), *known])
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return None
    return dialog.reader() or None


def _open_batch(splash: Any, batch_path: Path, policy: Any) -> tuple[Any, Any, list] | None:
    """Load and list a batch while the splash shows; None (after telling why) when unusable.

    The site ``policy`` refuses a batch it does not allow like any unusable batch.
    """
    from CaseIteratorCoreLib.errors import CaseIteratorError
    from CaseIteratorCoreLib.site_policy import load_site_batch

    splash.set_message(f"Reading the batch {batch_path}…")
    try:
        batch = load_site_batch(batch_path, policy)

        def list_cases():
            from CaseIteratorCoreLib.sources import open_source

            source = open_source(batch)
            return source, list(source.iter_cases())

        source, cases = _in_background(splash, list_cases)
    except CaseIteratorError as exc:
        splash.hide()
        _show_error("This batch cannot be opened", str(exc))
        return None
    if not cases:
        splash.hide()
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in source.skipped[:3])
        _show_error("This batch has no cases", reasons or str(batch_path))
        source.close()
        return None
    return batch, source, cases


def run_app(options: AppOptions) -> int:
    """Run the reading application until its window closes; return the exit code."""
    _prepare_environment()
    from Qt import QtWidgets

    from CaseIteratorCoreLib.errors import CaseIteratorError
    from CaseIteratorCoreLib.site_policy import site_policy
    from CaseIteratorCoreLib.site_settings import load_site_settings
    from CaseReaderLib.qt_binding_guard import protect_none_refcount
    from CaseReaderLib.style import APP_TITLE, apply_style

    from .app_demo_batch import ensure_demo_batch
    from .app_splash import Splash
    from .site_station import station_settings

    protect_none_refcount()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName(APP_TITLE)
    app.setOrganizationName(APP_TITLE)
    apply_style(app)
    logs = _setup_logging()
    _install_excepthook()
    splash = Splash()
    splash.show_centered()

    try:
        site = load_site_settings()
        station = station_settings(site)
        policy = site_policy(site)  # a wrong [sources] or [output] is said now, not per batch
        from CaseIteratorCoreLib.batch_file import PrefetchSpec

        site_prefetch(site, PrefetchSpec())  # a wrong [prefetch] is said now, not per batch
        from CaseIteratorCoreLib.progress_store import ProgressStore

        store = ProgressStore()
    except CaseIteratorError as exc:
        splash.close()
        _show_error("CaseIterator cannot start", str(exc))
        return EXIT_UNUSABLE
    kiosk = options.kiosk or station.kiosk
    batch_path = options.batch or station.batch
    if batch_path is None:
        splash.set_message("Preparing the demo batch (first start only)…")
        batch_path = _in_background(splash, ensure_demo_batch)
    splash.set_message("Starting the Slicer core…")
    import trame_slicer.core  # noqa: F401 - the heavy import, while the splash says so

    from CaseReaderLib.reading_scene import ReadingScene
    from CaseReaderLib.reading_session import ReadingSession
    from CaseReaderLib.reading_window import ReadingWindow, freeze_startup_objects

    reader: str | None = None
    code = EXIT_OK
    previous: Path | None = None
    try:
        while batch_path is not None:
            opened = _open_batch(splash, batch_path, policy)
            if opened is None:
                if previous is None:
                    return EXIT_UNUSABLE
                batch_path, previous = previous, None  # back to the batch the reader left
                splash.show_centered()
                continue
            batch, source, cases = opened
            if reader is None:
                splash.hide()
                reader = choose_reader(options, station, store.readers(batch.key))
                if reader is None:
                    source.close()
                    return EXIT_CANCELLED
                splash.show_centered()
            splash.set_message(f"Opening {batch.name} for {reader}…")
            session = ReadingSession.open(batch, source, cases, store, reader)
            window = ReadingWindow(
                session,
                ReadingScene(vtk_log=logs / "vtk.log"),
                effects=station.effects,
                kiosk=kiosk,
                allowed_folders=station.allowed_folders,
                prefetch=site_prefetch(site, batch.prefetch),
            )
            comparison = None
            if batch.compare is not None:  # the compared segmentations beside the views
                from CaseReaderLib.comparison_mode import ComparisonMode

                comparison = ComparisonMode(window, batch.compare)
            if kiosk:
                window.showFullScreen()
            else:
                window.showMaximized()
            # close(), not hide(): a hidden splash would keep the application from quitting
            # when the reading window closes.
            splash.close()
            freeze_startup_objects()  # full GC passes would otherwise stall the window
            # Unsaved edits left by a crash (or kill -9) are offered first.
            window.start(offer_recovery=True)
            code = int(app.exec())
            if comparison is not None:
                comparison.close()  # its workers read the source
            source.close()
            previous, batch_path = batch_path, window.requested_batch
            window.deleteLater()
            app.processEvents()
            if batch_path is not None:
                splash.show_centered()
    finally:
        splash.close()
        store.close()
    return code
