"""User-facing errors.

Every error a user can cause says three things: what was wrong, where (file,
field path, line, layer), and how to fix it. The CLI prints ``str(error)`` and
exits with status 2; no traceback reaches the user for these.
"""

from __future__ import annotations

import errno


class ClasGraphError(Exception):
    """Base class: an error the user can fix. ``str()`` is the whole message."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text = f"{text.rstrip('.')}. Fix: {self.fix}"
        return text


class SpecError(ClasGraphError):
    """A spec file is unreadable or invalid (syntax, schema, references)."""


class CompileError(ClasGraphError):
    """A valid spec does not fit the model (layers, mask sizes, sites)."""


class BackendError(ClasGraphError):
    """The model could not be loaded or run (missing weights, no network, remote failure)."""


class BusyError(ClasGraphError):
    """Another process is writing the same run directory or statistics cache."""


class DataError(ClasGraphError, ValueError):
    """Input data is missing, misaligned or malformed."""


def field_path(loc: tuple | list) -> str:
    """Render a pydantic-style location as ``interventions[0].layers[2]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error a user can meet (disk full, permission denied, ...): the path, what
    happened and the fix."""
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    fixes = {
        errno.ENOSPC: "free space on that disk (or pass --runs-dir on another disk) and rerun the same command; "
                      "finished results are kept and reused",
        errno.EDQUOT: "free space within your quota (or pass --runs-dir elsewhere) and rerun the same command; "
                      "finished results are kept and reused",
        errno.EACCES: "make it (and its folder) readable and writable for this user, or pass --runs-dir elsewhere",
        errno.EPERM: "make it (and its folder) readable and writable for this user, or pass --runs-dir elsewhere",
        errno.EROFS: "pass --runs-dir on a writable disk (or set CLAS_GRAPH_CACHE for the model cache)",
        errno.ENOENT: "check the path, then rerun",
    }
    fix = fixes.get(exc.errno, "check the path and its disk (and the network, for downloads), then rerun the same "
                               "command; finished results are kept")
    where = f"{exc.filename}: " if exc.filename else ""  # none for a network error (a download cut off)
    code = f" (errno {exc.errno})" if exc.errno else ""
    return f"{where}{reason}{code}. Fix: {fix}"
