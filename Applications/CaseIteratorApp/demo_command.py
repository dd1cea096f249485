"""``caseiterator demo-data``: write the built-in demo batch (synthetic CT studies)."""

from __future__ import annotations

import argparse
from pathlib import Path

from CaseIteratorCoreLib.demo_data import write_demo_batch

from . import console


def run_demo_data(folder: Path, cases: int, size: int, slices: int | None) -> int:
    """Write ``cases`` demo studies and ``demo.toml`` into ``folder``; print the batch path."""
    if cases < 1:
        console.err.print(f"--cases must be at least 1, got {cases}")
        return 2
    with console.progress_bar("Writing demo studies") as progress:
        batch = write_demo_batch(folder, cases, size=size, n_slices=slices, progress=progress)
    console.err.print(f"Wrote {cases} demo studies; batch file:")
    console.out.print(str(batch), soft_wrap=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``caseiterator demo-data`` to the command line."""
    parser = sub.add_parser(
        "demo-data",
        help="write synthetic CT studies and a batch file for them",
        description="Write N deterministic synthetic CT studies (DICOM) and demo.toml.",
    )
    parser.add_argument("folder", type=Path, help="folder to write into (created)")
    parser.add_argument("--cases", type=int, default=3, help="number of studies (default 3)")
    parser.add_argument("--size", type=int, default=512, help="image rows and columns")
    parser.add_argument(
        "--slices", type=int, default=None, help="slices per series (default: varied, 100-300)"
    )
    parser.set_defaults(
        run=lambda args: run_demo_data(args.folder, args.cases, args.size, args.slices)
    )
