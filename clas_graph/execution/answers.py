"""Answering requests (clas_graph.execution.requests) for every condition of a unit, and checking them without a
model: both lay the rows out the same way (clas_graph.execution.api), so what the check passes is what runs."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from ..compile.plan import Plan
from ..sites import architecture_for
from .api import generate_ids, generation_rows, lay_out_rows, read_many, read_tokens_many, refuse_language_sources
from .batching import token_lengths
from .patching import parallel_for
from .requests import Answers, Request, Sources, parallel_texts


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
