"""Requests: what a task needs from the model, described before any model is loaded, and how they are answered.

A task's runner turns a (task, language) unit into requests (`Request`: the rows, each with its item id and row
language, as texts or token ids, and what to read from them, or a greedy generation); the executor answers every
request for every condition of the unit (`answers.answer_requests`: batching, shared prefixes, stacked conditions
and remote sessions stay its business); the task scores the answers. Because requests exist before the model does,
the input checks are a function of the requests, the tokenizer and the compiled plans (`answers.check_requests`),
run for every unit before any weights load, and a patch finds each row's source by the row's item id (`Sources`).

This module only describes (it loads without torch, as the task modules that build requests do); answering and
checking are in clas_graph.execution.answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import DataError

if TYPE_CHECKING:
    from ..compile.plan import Plan
    from .readouts import Readout

Sources = Mapping[str, Mapping[str, str]]
"""A patch's source texts: {source language: {item id: the item's text in that language}}."""

Answers = dict[str, dict[str, Any]]
"""{request name: {condition: the request's answer under that condition}}."""


@dataclass(frozen=True)
class Request:
    """One model call a unit needs: rows and what to read from them (`readout`), or a greedy generation of
    `max_new_tokens` tokens per row (then the answer is each row's new token ids)."""

    name: str
    """The unit's name for the request (a unit's requests have distinct names)."""
    ids: tuple[str, ...]
    """Each row's item id: a patch reads the row's source from the same item in the source language."""
    languages: tuple[str, ...]
    """Each row's language (its label, or the detected one): the plans' row rules read it."""
    texts: tuple[str, ...] | None = None
    tokens: tuple[tuple[int, ...], ...] | None = None
    """The rows as token ids instead of texts (already encoded, e.g. as lm-evaluation-harness encodes them)."""
    readout: Readout | None = None
    max_new_tokens: int = 0
    unmodified: bool = False
    """Answered once, by the unmodified model, whatever the condition (every condition gets that answer)."""
    cached: bool = False
    """The answer depends only on (name, condition), so the runner keeps it across the task's units."""
    batch_size: int = 8
    max_length: int = 512

    def __post_init__(self):
        rows = self.texts if self.texts is not None else self.tokens
        if rows is None or (self.texts is not None and self.tokens is not None):
            raise ValueError(f"request {self.name!r} needs either texts or tokens")
        if not (len(rows) == len(self.ids) == len(self.languages)):
            raise DataError(f"request {self.name!r} has {len(rows)} rows, {len(self.ids)} ids and "
                            f"{len(self.languages)} languages", fix="give one id and one language per row")
        if (self.readout is None) == (self.max_new_tokens <= 0):
            raise ValueError(f"request {self.name!r} needs a readout or max_new_tokens, not both")

    @property
    def rows(self) -> Sequence:
        return self.texts if self.texts is not None else self.tokens

    @property
    def generates(self) -> bool:
        return self.max_new_tokens > 0


def source_languages(plans: Mapping[str, Plan | None]) -> tuple[str, ...]:
    """The languages the plans patch from."""
    return tuple(sorted({code for plan in plans.values() if plan is not None
                         for source in plan.sources().values() for code in source.languages}))


def parallel_texts(request: Request, sources: Sources) -> dict[str, list[str | None]]:
    """Each row's source text in every source language, found by the row's item id (None: the item has no text
    there, an error only where a patch touches the row)."""
    return {code: [texts.get(ident) for ident in request.ids] for code, texts in sources.items()}


def decoded(tokenizer, token_ids: Sequence[Sequence[int]]) -> list[str]:
    """A generation's answer as text, special tokens left out (as `clas_graph.generate` returns it)."""
    return [tokenizer.decode(list(row), skip_special_tokens=True) for row in token_ids]
