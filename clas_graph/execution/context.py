"""The executor every call uses: the one of the enclosing `use(...)`, or a local one."""

from __future__ import annotations

import contextlib
import contextvars

from .executor import Executor
from .local import LocalExecutor

_DEFAULT = LocalExecutor()
_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("clas_graph_executor", default=None)


def current() -> Executor:
    return _CURRENT.get() or _DEFAULT


@contextlib.contextmanager
def use(executor: Executor):
    """Run the enclosed calls with `executor` (e.g. `NdifExecutor(host=True)`)."""
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
