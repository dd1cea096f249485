"""The built-in demo batch: written once into the user's data folder, then reused."""

from __future__ import annotations

from pathlib import Path

from CaseIteratorCoreLib.demo_data import write_demo_batch
from CaseIteratorCoreLib.paths import user_data_dir
from CaseIteratorCoreLib.tasks import ProgressCallback, no_progress

#: Number of cases of the built-in demo batch.
DEMO_CASES = 3


def demo_folder() -> Path:
    """Where the demo batch lives: ``user_data_dir() / "demo"``."""
    return user_data_dir() / "demo"


def ensure_demo_batch(progress: ProgressCallback = no_progress) -> Path:
    """The demo batch file, writing the demo cases first when they are not there yet.

    A batch left incomplete (the first start was interrupted) is written again: ``demo.toml``
    is written last, so its presence means the cases are complete.
    """
    folder = demo_folder()
    batch = folder / "demo.toml"
    if batch.is_file():
        return batch
    return write_demo_batch(folder, DEMO_CASES, progress=progress)
