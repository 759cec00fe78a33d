"""Requests: what a task needs from the model, described before any model is loaded, and how they are answered.

A task's runner turns a (task, language) unit into requests (`Request`: the rows, each with its item id and row
language, as texts or token ids, and what to read from them, or a greedy generation); the executor answers every
request for every condition of the unit (`answer_requests`: batching, shared prefixes, stacked conditions and
remote sessions stay its business); the task scores the answers. Because requests exist before the model does,
the input checks are a function of the requests, the tokenizer and the compiled plans (`check_requests`), run for
every unit before any weights load, and a patch finds each row's source by the row's item id (`Sources`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..compile.plan import Plan
from ..errors import DataError
from ..sites import architecture_for
from .api import generate_ids, generation_rows, lay_out_rows, read_many, read_tokens_many, refuse_language_sources
from .batching import token_lengths
from .patching import parallel_for
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


def check_requests(tokenizer, plans: Mapping[str, Plan | None], requests: Sequence[Request],
                   sources: Sources | None = None) -> None:
    """Every request's rows against every plan, without a model: row languages the plans know, a source for
    every row a patch touches, and every position selector on every row and source row. Raises DataError."""
    for request in requests:
        chosen = {} if request.unmodified else {name: plan for name, plan in plans.items() if plan is not None}
        if not chosen:
            continue
        parallel = parallel_texts(request, sources or {})
        if request.generates:
            for plan in chosen.values():
                generation_rows(tokenizer, plan, request.texts, request.languages, batch_size=request.batch_size,
                                max_length=request.max_length, parallel=parallel)
            continue
        if request.tokens is not None:
            refuse_language_sources(chosen)
        lay_out_rows(chosen, request.rows, request.languages, batch_size=request.batch_size,
                     lengths_of=functools.partial(row_lengths, tokenizer, request),
                     parallel_of=functools.partial(parallel_for, texts=request.rows, languages=request.languages,
                                                   parallel=parallel))


def row_lengths(tokenizer, request: Request, rows: Sequence) -> list[int]:
    """Token counts of rows of the request's kind (texts as the tokenizer encodes them, or token ids)."""
    if request.tokens is not None:
        return [len(row) for row in rows]
    return token_lengths(tokenizer, rows, request.max_length)


def answer_requests(model, plans: Mapping[str, Plan | None], requests: Sequence[Request],
                    sources: Sources | None = None, cache: dict | None = None) -> Answers:
    """Every request's answer under every plan (an `unmodified` request's one answer for all); `cache` keeps
    `cached` requests' answers by (name, condition) across calls."""
    cache = {} if cache is None else cache
    out: Answers = {}
    for request in requests:
        if request.unmodified:
            value = answer_one(model, {"": None}, request, sources or {})[""]
            out[request.name] = {name: value for name in plans}
            continue
        missing = {name: plan for name, plan in plans.items()
                   if not request.cached or (request.name, name) not in cache}
        answered = answer_one(model, missing, request, sources or {}) if missing else {}
        if request.cached:
            cache.update({(request.name, name): value for name, value in answered.items()})
            answered = {name: cache[(request.name, name)] for name in plans}
        out[request.name] = answered
    return out


def answer_one(model, plans: Mapping[str, Plan | None], request: Request, sources: Sources) -> dict[str, Any]:
    """{condition: answer} of one request, through the current executor."""
    options = {"batch_size": request.batch_size}
    parallel = parallel_texts(request, sources)
    if request.generates:
        return {name: generate_ids(model, plan, request.texts, request.languages, request.max_new_tokens,
                                   max_length=request.max_length, parallel=parallel, **options)
                for name, plan in plans.items()}
    hf = model._module
    readout = request.readout.for_model(hf, architecture_for(hf.config))
    if request.tokens is not None:
        return read_tokens_many(model, plans, request.tokens, request.languages, readout, **options)
    return read_many(model, plans, request.texts, request.languages, readout, max_length=request.max_length,
                     parallel=parallel, **options)


def decoded(tokenizer, token_ids: Sequence[Sequence[int]]) -> list[str]:
    """A generation's answer as text, special tokens left out (as `clas_graph.generate` returns it)."""
    return [tokenizer.decode(list(row), skip_special_tokens=True) for row in token_ids]
