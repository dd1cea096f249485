"""Exception types of the core.

Every message names the value that is wrong and says how to fix it, because the reader or the
site admin sees it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .problems import Problem


class CaseIteratorError(Exception):
    """Base class of all errors raised by CaseIterator."""


class ConfigFileError(CaseIteratorError):
    """A file an admin or reader wrote is wrong; says the file, the line, the key and the fix.

    Parameters
    ----------
    path
        The file (or CSV table / folder) that is wrong.
    message
        What is wrong, in words a site admin understands.
    line
        1-based line in ``path`` where the problem is, when known.
    key
        The dotted TOML key or CSV column concerned, when there is one.
    fix
        What to do about it.
    """

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.key = key
        self.fix = fix
        self.reason = message
        where = f"{self.path}" + (f", line {line}" if line else "")
        text = f"{where}: {message}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class BatchDefinitionError(ConfigFileError):
    """The batch itself is unusable: missing file, bad TOML key, unusable CSV header."""


class SiteSettingsError(ConfigFileError):
    """The site settings file is wrong (see :mod:`CaseIteratorCoreLib.site_settings`)."""


class SitePolicyError(BatchDefinitionError):
    """The site settings refuse this batch (a source, server or folder the site does not allow).

    A :class:`BatchDefinitionError` (not a :class:`SiteSettingsError`): the site file is right,
    the batch asks for something it forbids, so ``path``/``line``/``key`` point at the batch's
    key and every place that reports an unusable batch shows it unchanged. ``site_file`` and
    ``rule`` (``sources.servers``) say which admin setting refused it; both are in the message.
    """

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        site_file: Path,
        rule: str,
        line: int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.site_file = Path(site_file)
        self.rule = rule
        super().__init__(path, message, line=line, key=key, fix=fix)


class CaseLoadError(CaseIteratorError):
    """A case cannot be loaded; ``problems`` says why (each naming the file or slice)."""

    def __init__(self, case_label: str, problems: Sequence[Problem]) -> None:
        self.case_label = case_label
        self.problems = tuple(problems)
        reasons = "; ".join(p.message for p in self.problems) or "unknown reason"
        super().__init__(f"case {case_label}: {reasons}")


class OperationCancelled(CaseIteratorError):
    """A long operation was cancelled through its :class:`~.tasks.CancelToken`."""
