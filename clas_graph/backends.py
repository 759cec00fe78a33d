"""Running plans: the only place that calls the generated nnsight traces.

`forward`, `generate`, `token_nll` and `pooled_hidden` take texts with one
language per row; the plan's row rules turn those languages into per-row
masks, so one batch can mix languages (left-padded) and anchor rows stay
untouched. Every call goes through the current `Execution` (local, or NDIF
with retries; see `clas_graph.execution`), unchanged either way.

`forward_many`, `token_nll_many` and `pooled_hidden_many` evaluate several
conditions on the same texts and share what they have in common (see
`clas_graph.shared`): per batch, the layers below a condition's lowest
intervened layer run once, in the base trace, and each condition runs only
from there. The numbers equal the single-plan functions'.
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import torch

from .compile.plan import Plan
from .compile.emit import emit
from .compile.emit import emit_readout
from .errors import DataError
from .execution import current


def _check_rows(plan: Plan | None, texts: Sequence[str], languages: Sequence[str]) -> None:
    if len(texts) != len(languages):
        raise DataError(f"got {len(texts)} texts but {len(languages)} languages", fix="give one language per text")
    if plan is not None:
        unknown = sorted(set(languages) - set(plan.languages))
        if unknown:
            raise DataError(
                f"row language(s) {unknown} are not among the spec's languages {list(plan.languages)}",
                fix="add them to `languages` in the spec, or fix the row labels",
            )


def _plan_or_base(model, plan: Plan | None, languages: Sequence[str]) -> Plan:
    """The plan, or an empty one (the unmodified model), so every call takes the same generated-trace path."""
    if plan is not None:
        return plan
    from .sites import architecture_for, dims_of

    config = model._module.config
    dims = dims_of(config)
    return Plan("base", dims.model_type, architecture_for(config), dims, tuple(dict.fromkeys(languages)), ())


def _batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int):
    """Index batches, longest-first by token count so padding stays small (order is restored by callers)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _encode(tokenizer, texts: list[str], max_length: int) -> dict:
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def forward(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], *,
            batch_size: int = 8, max_length: int = 512, token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Next-token logits at each text's last real token, with `plan` applied (None: unmodified model).

    Returns a float32 CPU tensor [len(texts), vocab], or [len(texts), len(token_ids)] with `token_ids`
    (only those logits are kept in the trace: what a remote run brings back). Rows are batched by
    length; the result does not depend on which rows share a batch.
    """
    if token_ids is not None:
        return forward_many(model, {"plan": plan}, texts, languages, batch_size=batch_size, max_length=max_length,
                            token_ids=token_ids)["plan"]
    _check_rows(plan, texts, languages)
    plan = _plan_or_base(model, plan, languages)
    trace = emit(plan)
    out: list[torch.Tensor | None] = [None] * len(texts)
    for index in _batches(model.tokenizer, texts, batch_size, max_length):
        inputs = _encode(model.tokenizer, [texts[i] for i in index], max_length)
        rows = plan.row_inputs([languages[i] for i in index])
        with torch.inference_mode():
            logits = current().run(model, trace.forward, inputs, rows, plan.tensors(),
                                   call_kwargs={"logits_to_keep": 1})
        for row, i in enumerate(index):
            out[i] = logits[row].float().cpu()
    return torch.stack(out) if out else torch.empty(0)


def _eos_ids(model) -> set[int]:
    config = model._module.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else model.tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def generate_ids(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], max_new_tokens: int, *,
                 batch_size: int = 8, max_length: int = 512) -> list[list[int]]:
    """Greedy decoding with the plan applied at every step; new token ids per row, cut before the first EOS."""
    from transformers import GenerationConfig

    _check_rows(plan, texts, languages)
    plan = _plan_or_base(model, plan, languages)
    trace = emit(plan)
    tokenizer = model.tokenizer
    eos = _eos_ids(model)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        eos_token_id=sorted(eos) or None, pad_token_id=tokenizer.pad_token_id,
    )
    results: list[list[int] | None] = [None] * len(texts)
    for index in _batches(tokenizer, texts, batch_size, max_length):
        inputs = _encode(tokenizer, [texts[i] for i in index], max_length)
        width = inputs["input_ids"].shape[1]
        rows = plan.row_inputs([languages[i] for i in index])
        with torch.inference_mode(), warnings.catch_warnings():
            # The open per-step loop ends when decoding stops early (EOS): expected, not a problem.
            warnings.filterwarnings("ignore", message=".*was never reached", category=UserWarning)
            token_ids = current().run(model, trace.generate, inputs, rows, plan.tensors(),
                                      call_kwargs={"generation_config": config})
        for row, i in enumerate(index):
            new = token_ids[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in eos), len(new))
            results[i] = new[:cut]
    return results


def generate(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], max_new_tokens: int, *,
             batch_size: int = 8, max_length: int = 512) -> list[str]:
    """Greedy continuations as text, the plan applied at every step (prompt and generated tokens)."""
    ids = generate_ids(model, plan, texts, languages, max_new_tokens, batch_size=batch_size, max_length=max_length)
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def token_nll(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], *,
              batch_size: int = 8, max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: summed next-token negative log-likelihood (nats) and the number of predicted tokens."""
    _check_rows(plan, texts, languages)
    plan = _plan_or_base(model, plan, languages)
    trace = emit_readout(plan, "token_nll")
    nll = torch.zeros(len(texts), dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.float64)
    for index in _batches(model.tokenizer, texts, batch_size, max_length):
        inputs = _encode(model.tokenizer, [texts[i] for i in index], max_length)
        rows = plan.row_inputs([languages[i] for i in index])
        with torch.inference_mode():
            sums, n = current().run(model, trace, inputs, rows, plan.tensors(), {}, call_kwargs={})
        nll[index] = sums.double()
        counts[index] = n.double()
    return nll, counts


def pooled_hidden(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], layer: int, *,
                  batch_size: int = 8, max_length: int = 512, exclude_bos: bool = True) -> torch.Tensor:
    """[len(texts), hidden] mean of decoder layer `layer`'s output over each text's tokens (BOS left out)."""
    _check_rows(plan, texts, languages)
    plan = _plan_or_base(model, plan, languages)
    trace = emit_readout(plan, "pooled", layer)
    tokenizer = model.tokenizer
    out = torch.zeros(len(texts), plan.dims.hidden_size)
    for index in _batches(tokenizer, texts, batch_size, max_length):
        inputs = _encode(tokenizer, [texts[i] for i in index], max_length)
        pool_mask = inputs["attention_mask"].clone()
        if exclude_bos and tokenizer.bos_token_id is not None:
            pool_mask[inputs["input_ids"] == tokenizer.bos_token_id] = 0
        rows = plan.row_inputs([languages[i] for i in index])
        with torch.inference_mode():
            pooled = current().run(model, trace, inputs, rows, plan.tensors(), {"pool_mask": pool_mask},
                                   call_kwargs={"logits_to_keep": 1})
        out[index] = pooled.float()
    return out


# --- several conditions on the same texts ------------------------------------------------------------


def forward_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str], *,
                 batch_size: int = 8, max_length: int = 512,
                 token_ids: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """`forward` for every plan (by condition name), sharing each batch's common prefix: {name: [rows, vocab]}
    (or [rows, len(token_ids)])."""
    extra = {} if token_ids is None else {"token_ids": torch.tensor(list(token_ids), dtype=torch.long)}
    parts = run_many(model, plans, texts, languages, "last_logits", extra=lambda inputs, index: dict(extra),
                     call_kwargs={"logits_to_keep": 1}, batch_size=batch_size, max_length=max_length)
    width = model._module.config.get_text_config().vocab_size if token_ids is None else len(token_ids)
    out = {}
    for name, batches in parts.items():
        logits = torch.zeros(len(texts), width) if batches else torch.empty(0)
        for index, value in batches:
            logits[index] = value.float().cpu()
        out[name] = logits
    return out


def token_nll_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str], *,
                   batch_size: int = 8, max_length: int = 512) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`token_nll` for every plan, sharing each batch's common prefix: {name: (nll sums, token counts)}."""
    parts = run_many(model, plans, texts, languages, "token_nll", call_kwargs={},
                     batch_size=batch_size, max_length=max_length)
    out = {}
    for name, batches in parts.items():
        nll = torch.zeros(len(texts), dtype=torch.float64)
        counts = torch.zeros(len(texts), dtype=torch.float64)
        for index, (sums, n) in batches:
            nll[index] = sums.double()
            counts[index] = n.double()
        out[name] = (nll, counts)
    return out


def next_token_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
                    gold: Sequence[int | None], *, batch_size: int = 8,
                    max_length: int = 512) -> dict[str, dict[str, torch.Tensor]]:
    """Per plan and text, the next-token distribution at the last real token compared with the unmodified
    model's on the same batch, reduced in the trace: {name: {"kl": KL(base || plan) in nats, "top1": argmax,
    "base_top1": base's argmax, "gold_logprob": log-prob of `gold` (NaN where gold is None)}}. Only these four
    numbers per row leave the trace (a remote run brings back no vocabulary-sized rows)."""
    gold_ids = torch.tensor([-1 if g is None else int(g) for g in gold], dtype=torch.long)
    parts = run_many(model, plans, texts, languages, "next_token", extra=lambda inputs, index: {"gold": gold_ids[index]},
                     call_kwargs={"logits_to_keep": 1}, batch_size=batch_size, max_length=max_length)
    out = {}
    for name, batches in parts.items():
        columns = {"kl": torch.zeros(len(texts), dtype=torch.float64), "top1": torch.zeros(len(texts), dtype=torch.long),
                   "base_top1": torch.zeros(len(texts), dtype=torch.long),
                   "gold_logprob": torch.zeros(len(texts), dtype=torch.float64)}
        for index, values in batches:
            for column, value in zip(columns.values(), values):
                column[index] = value.to(column.dtype)
        columns["gold_logprob"][gold_ids < 0] = float("nan")
        out[name] = columns
    return out


def pooled_hidden_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
                       layer: int, *, batch_size: int = 8, max_length: int = 512,
                       exclude_bos: bool = True) -> dict[str, torch.Tensor]:
    """`pooled_hidden` for every plan, sharing each batch's common prefix: {name: [rows, hidden]}.
    A plan with no op at or below `layer` gets the base vectors (it cannot change them)."""
    tokenizer = model.tokenizer

    def pool_mask(inputs, index):
        mask = inputs["attention_mask"].clone()
        if exclude_bos and tokenizer.bos_token_id is not None:
            mask[inputs["input_ids"] == tokenizer.bos_token_id] = 0
        return {"pool_mask": mask}

    parts = run_many(model, plans, texts, languages, "pooled", layer=layer, extra=pool_mask,
                     call_kwargs={"logits_to_keep": 1}, batch_size=batch_size, max_length=max_length)
    hidden = model._module.config.get_text_config().hidden_size
    out = {}
    for name, batches in parts.items():
        vectors = torch.zeros(len(texts), hidden)
        for index, value in batches:
            vectors[index] = value.float()
        out[name] = vectors
    return out


def run_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str], readout: str, *,
             layer: int | None = None, extra: Callable[[dict, list[int]], dict] | None = None, call_kwargs: dict,
             batch_size: int, max_length: int) -> dict[str, list[tuple[list[int], object]]]:
    """Per condition, the readout of every batch as (row indices, value); batches visit every condition."""
    from .shared import batch_plan, run_batch, traces_for

    for plan in plans.values():
        _check_rows(plan, texts, languages)
    if not texts:
        return {name: [] for name in plans}
    base = _plan_or_base(model, None, languages)
    if current().is_remote:
        from .shared_remote import run_many_remote

        return run_many_remote(model, plans, texts, languages, readout, base, layer=layer, extra=extra,
                               call_kwargs=call_kwargs, batches=list(_batches(model.tokenizer, texts, batch_size,
                                                                              max_length)), max_length=max_length)
    stack_rows = current().stack_rows or 4 * batch_size
    schedule = batch_plan(plans, readout, layer, row_languages=languages, stack=stack_rows // batch_size)
    traces = traces_for(schedule, plans)
    out: dict[str, list] = {name: [] for name in plans}
    for index in _batches(model.tokenizer, texts, batch_size, max_length):
        inputs = _encode(model.tokenizer, [texts[i] for i in index], max_length)
        with torch.inference_mode():
            values = run_batch(model, schedule, base, traces, inputs, [languages[i] for i in index],
                               extra(inputs, index) if extra else {}, call_kwargs)
        for name, value in values.items():
            out[name].append((index, value))
    return out
