"""Entry point of the frozen CaseIterator bundle: the ``caseiterator`` command line.

Without arguments (a double-click on the desktop entry) the reading application opens, as
``caseiterator app`` does; with arguments it is the same command line as the pip install, plus
``--bundle-check`` (what the bundle carries, see :mod:`bundle_check`).
"""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    """Run the bundle's command line on ``argv`` (without the program name)."""
    if argv == ["--bundle-check"]:
        from bundle_check import bundle_check

        return bundle_check()
    from CaseIteratorApp.cli import main

    return main(argv or ["app"])


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
