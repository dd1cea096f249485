"""Entry point of the frozen CaseIterator bundle: the ``caseiterator`` command line.

Without arguments (a double-click on the desktop entry) the reading application opens, as
``caseiterator app`` does; with arguments it is the same command line as the pip install.
"""

from __future__ import annotations

import sys

from CaseIteratorApp.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv:
        argv = ["app"]
    raise SystemExit(main(argv))
