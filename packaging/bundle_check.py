"""``caseiterator --bundle-check``: what the frozen bundle carries, as JSON (exit 1 if short).

For packagers and site admins: the decoders of the compressed transfer syntaxes (pylibjpeg
finds its plugins through entry points, which need each distribution's metadata in the
bundle), Qt's platform and image-format plugins, the Slicer core, highdicom's data files,
the demo-batch generator and the application's resources. Handled by the bundle's entry
point only (not by the pip-installed command line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Compressed transfer syntaxes the bundle must decode, with the plugins expected for each.
EXPECTED_DECODERS = {
    "1.2.840.10008.1.2.4.50": {"pylibjpeg"},  # JPEG Baseline
    "1.2.840.10008.1.2.4.90": {"pylibjpeg"},  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.80": {"pyjpegls", "pylibjpeg"},  # JPEG-LS Lossless
    "1.2.840.10008.1.2.5": {"pylibjpeg"},  # RLE Lossless
}
#: Qt plugins the reading window needs (X11 desktops, headless runs, SVG and PNG icons).
EXPECTED_QT_PLUGINS = {"platforms": {"xcb", "offscreen"}, "imageformats": {"svg"}}


def _decoders() -> tuple[dict[str, Any], list[str]]:
    from pydicom.pixels.decoders.base import get_decoder
    from pylibjpeg.utils import get_pixel_data_decoders

    report: dict[str, Any] = {"pylibjpeg_entry_points": sorted(get_pixel_data_decoders())}
    problems = []
    for uid, wanted in EXPECTED_DECODERS.items():
        plugins = set(get_decoder(uid).available_plugins)
        report[uid] = sorted(plugins)
        if not wanted <= plugins:
            problems.append(f"decoder plugins for {uid}: {sorted(wanted - plugins)} missing")
    return report, problems


def _qt() -> tuple[dict[str, Any], list[str]]:
    from PySide6 import QtCore

    folder = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath))
    report: dict[str, Any] = {"plugins": str(folder)}
    problems = []
    for kind, wanted in EXPECTED_QT_PLUGINS.items():
        names = {p.name.split(".")[0].removeprefix("libq") for p in (folder / kind).glob("*.so")}
        report[kind] = sorted(names)
        if not wanted <= names:
            problems.append(f"Qt {kind} plugins {sorted(wanted - names)} missing in {folder}")
    return report, problems


def _slicer() -> tuple[dict[str, Any], list[str]]:
    import slicer

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    ok = node is not None and scene.GetNumberOfNodes() >= 1
    return {"mrml_scene": ok}, [] if ok else ["cannot add a volume node to an MRML scene"]


def _data_files() -> tuple[dict[str, Any], list[str]]:
    import highdicom

    from CaseIteratorResources import resource_path

    wanted = [
        Path(highdicom.__file__).parent / "_standard" / "anatomic_regions.json",
        Path(highdicom.__file__).parent / "_icc_profiles" / "sRGB_v4_ICC_preference.icc",
        resource_path("style", "caseiterator.qss"),
        resource_path("branding", "logo.svg"),
    ]
    missing = [str(p) for p in wanted if not p.is_file()]
    return {"data_files": len(wanted) - len(missing)}, [f"missing file {p}" for p in missing]


def _demo_generator() -> tuple[dict[str, Any], list[str]]:
    from CaseIteratorCoreLib.demo_data import write_demo_batch

    return {"demo_batch_writer": write_demo_batch.__name__}, []


def bundle_check() -> int:
    """Print the report as JSON; 0 when everything is there, else 1 (the problems listed)."""
    report: dict[str, Any] = {"frozen": bool(getattr(sys, "frozen", False))}
    problems: list[str] = []
    for name, part in (
        ("decoders", _decoders),
        ("qt", _qt),
        ("slicer", _slicer),
        ("files", _data_files),
        ("demo", _demo_generator),
    ):
        try:
            report[name], found = part()
        except Exception as exc:  # a report, not a crash: say what could not be checked
            report[name], found = None, [f"{name}: {type(exc).__name__}: {exc}"]
        problems += found
    report["problems"] = problems
    print(json.dumps(report, indent=2))
    return 1 if problems else 0
