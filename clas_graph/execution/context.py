"""The executor every call uses: the one of the enclosing `use(...)`, or a local one; where patches find the
parallel texts of the rows they patch (`parallel_texts(...)`, set by the evaluation runner); and whether calls
only check their inputs (`checking_inputs()`: the evaluation runner's pass before any model work)."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Sequence

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


ParallelTexts = Callable[[Sequence[str], Sequence[str], tuple[str, ...]], dict[str, list]]
"""provider(texts, row languages, wanted languages) -> {language: [each row's parallel text, or None]}."""

_PARALLEL: contextvars.ContextVar[ParallelTexts | None] = contextvars.ContextVar("clas_graph_parallel", default=None)


def parallel_provider() -> ParallelTexts | None:
    return _PARALLEL.get()


@contextlib.contextmanager
def parallel_texts(provider: ParallelTexts | None):
    """Calls in the block that patch from another language ask `provider` for the rows' parallel texts (when the
    caller gives none)."""
    token = _PARALLEL.set(provider)
    try:
        yield provider
    finally:
        _PARALLEL.reset(token)


class InputsChecked(Exception):
    """Raised by a call inside `checking_inputs()` once its inputs passed every check, before any model work;
    `rows` are the call's inputs (texts, or token id rows)."""

    def __init__(self, rows: Sequence):
        super().__init__("inputs checked")
        self.rows = list(rows)


_CHECK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("clas_graph_check_only", default=False)


@contextlib.contextmanager
def checking_inputs():
    """The first model call in the block checks its inputs (rows, languages, position selectors, patch sources)
    and raises InputsChecked with them instead of running the model."""
    token = _CHECK_ONLY.set(True)
    try:
        yield
    finally:
        _CHECK_ONLY.reset(token)


def inputs_checked(rows: Sequence) -> None:
    """Called by every model call with its inputs after their checks, right before the model runs."""
    if _CHECK_ONLY.get():
        raise InputsChecked(rows)
