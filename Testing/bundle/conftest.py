"""The bundle test builds, unpacks and starts the frozen application: minutes, not seconds.

It is collected only when ``CASEITERATOR_BUNDLE_TEST=1`` (``Testing/bundle/run_bundle_test.sh``
sets it), so the main run (``Testing/run_tests.sh``, CI) skips this folder without a word.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

collect_ignore_glob = [] if os.environ.get("CASEITERATOR_BUNDLE_TEST") == "1" else ["test_*.py"]

# screen_grab (beside this file) and the unit tests' series_factory.
HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "unit"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
