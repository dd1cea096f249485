"""The core never imports Qt or the UI, checked by importing every core module for real.

import-linter (``lint-imports``, run by Testing/run_tests.sh) checks the same rule statically;
this test checks it at run time, in a fresh interpreter, so that an import hidden in a
function, a plugin hook or a third-party package that drags Qt in is caught as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

CORE_PACKAGE = "CaseIteratorCoreLib"
FORBIDDEN = ("Qt", "PySide6", "shiboken6", "CaseReaderLib", "CaseIteratorApp")

# Runs in a fresh interpreter: imports every module of a package, reports what got imported.
CHECKER = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, traceback

    package_name, forbidden = sys.argv[1], sys.argv[2].split(",")
    report = {"modules": [], "errors": {}, "offenders": {}}

    def check(name):
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except Exception:
            report["errors"][name] = traceback.format_exc(limit=3)
            return
        report["modules"].append(name)
        new = set(sys.modules) - before
        bad = sorted(m for m in new if m.split(".")[0] in forbidden)
        if bad:
            report["offenders"][name] = bad

    check(package_name)
    package = sys.modules.get(package_name)
    if package is not None and hasattr(package, "__path__"):
        for info in pkgutil.walk_packages(package.__path__, package_name + ".",
                                          onerror=lambda name: None):
            check(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
    report["leaked"] = leaked
    print("REPORT" + json.dumps(report))
    """
)


def import_report(package: str, extra_path: Path | None = None) -> dict:
    """Import every module of ``package`` in a fresh interpreter; return what was imported."""
    env = dict(os.environ)
    env.pop("QT_API", None)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", CHECKER, package, ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def violations(report: dict) -> list[str]:
    problems = [f"{mod} imports {', '.join(bad)}" for mod, bad in report["offenders"].items()]
    if report["leaked"] and not problems:
        problems.append(f"forbidden modules loaded: {', '.join(report['leaked'])}")
    return problems


def test_core_imports_no_qt_and_no_ui():
    report = import_report(CORE_PACKAGE)

    assert not report["errors"], "core modules fail to import:\n" + "\n".join(
        f"{name}:\n{tb}" for name, tb in report["errors"].items()
    )
    assert CORE_PACKAGE in report["modules"]
    assert len(report["modules"]) > 1, "the walk found no core modules"
    assert not violations(report), "the core must not import Qt or the UI:\n" + "\n".join(
        violations(report)
    )


def test_the_check_catches_a_module_that_imports_qt(tmp_path):
    """The same check fails on a package with a (nested) module that imports Qt."""
    package = tmp_path / "fake_core"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "clean.py").write_text("import json\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "view.py").write_text(
        "def f():\n    pass\n\nfrom Qt import QtWidgets  # noqa\n"
    )

    report = import_report("fake_core", extra_path=tmp_path)

    assert not report["errors"]
    assert set(report["modules"]) == {
        "fake_core",
        "fake_core.clean",
        "fake_core.sub",
        "fake_core.sub.view",
    }
    assert "fake_core.sub.view" in report["offenders"]
    assert "Qt" in report["offenders"]["fake_core.sub.view"]
    assert "fake_core.clean" not in report["offenders"]
    assert violations(report)


def test_the_check_catches_an_import_of_the_ui_package(tmp_path):
    package = tmp_path / "fake_core2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "uses_ui.py").write_text("import CaseReaderLib  # noqa\n")
    # A stand-in UI package (found before the installed one): the test does not depend on
    # the real CaseReaderLib importing cleanly.
    (tmp_path / "CaseReaderLib").mkdir()
    (tmp_path / "CaseReaderLib" / "__init__.py").write_text("")

    report = import_report("fake_core2", extra_path=tmp_path)

    assert report["offenders"].get("fake_core2.uses_ui") == ["CaseReaderLib"]
