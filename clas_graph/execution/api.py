"""Running plans on texts: the calls runners and users make (`clas_graph.forward`, `generate`, ...).

Each takes texts with one language per row; the plan's row rules turn those languages into per-row masks,
so one batch can mix languages (left-padded) and anchor rows stay untouched. Every call goes through the
current executor (`clas_graph.execution.context`): local, or NDIF with retries, unchanged either way.

The `*_many` calls evaluate several conditions on the same texts and share what they have in common
(clas_graph.execution.schedule): per batch, the layers below a condition's lowest intervened layer run once,
in the base trace, and each condition runs only from there. The numbers equal the single-plan calls'.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from ..compile.emit import emit
from ..compile.plan import Plan, label_language
from ..errors import DataError
from ..sites import architecture_for, dims_of
from .batching import longest_first, token_lengths
from .context import current
from .lens import lens_readout
from .patching import (
    Layout,
    SourceRowsReadout,
    caller_rows,
    check_positions,
    check_positions_in,
    layout,
    parallel_for,
    source_signature,
    sources_by_row,
)
from .readouts import LastLogits, NextToken, Pooled, Readout, TokenNll, gold_ids, label_logits

Parallel = Mapping[str, Sequence[str]] | None
"""A patch's parallel texts: {language: [one text per row]} (default: from the evaluation runner's task data)."""


def check_rows(plan: Plan | None, texts: Sequence[str], languages: Sequence[str]) -> None:
    """One language per text, and every language one the plan knows."""
    if len(texts) != len(languages):
        raise DataError(f"got {len(texts)} texts but {len(languages)} languages", fix="give one language per text")
    if plan is not None:
        unknown = sorted(set(languages) - set(plan.languages))
        if unknown:
            raise DataError(
                f"row language(s) {unknown} are not among the spec's languages {list(plan.languages)}",
                fix="add them to `languages` in the spec, or fix the row labels",
            )


def base_plan(model, languages: Sequence[str]) -> Plan:
    """An empty plan (the unmodified model), so every call takes the same generated-trace path."""
    config = model._module.config
    dims = dims_of(config)
    return Plan("base", dims.model_type, architecture_for(config), dims, tuple(dict.fromkeys(languages)), ())


def batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int) -> list[list[int]]:
    """Index batches, longest-first by token count so padding stays small (order is restored by callers)."""
    return longest_first(token_lengths(tokenizer, texts, max_length), batch_size)


def encode(tokenizer, texts: list[str], max_length: int) -> dict:
    """Left-padded model inputs of a batch of texts (the tokenizer's padding side)."""
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def read_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
              readout: Readout, *, batch_size: int = 8, max_length: int = 512, parallel: Parallel = None) -> dict:
    """`readout` for every plan (by condition name; None: the unmodified model) on the texts: {name: result},
    each result assembled by the readout (e.g. [rows, vocab] logits). Plans that patch from a source run on
    batches that also hold the source rows (execution/patching.py), grouped by the sources they read."""
    tokenizer = model.tokenizer
    return read_rows(model, plans, texts, languages, readout, batch_size=batch_size,
                     lengths_of=lambda rows: token_lengths(tokenizer, rows, max_length),
                     encode_rows=lambda rows: encode(tokenizer, rows, max_length),
                     parallel_of=lambda group: parallel_for(group, texts, languages, parallel))


def read_tokens_many(model, plans: Mapping[str, Plan | None], rows: Sequence[Sequence[int]],
                     languages: Sequence[str], readout: Readout, *, batch_size: int = 8) -> dict:
    """`read_many` on token ids given per row (already encoded, e.g. as lm-evaluation-harness encodes its requests),
    left-padded into batches, longest first. Patches may read a `{condition: ...}` source (a copy of the row);
    a language source needs the rows' parallel texts, which token rows do not have."""
    refuse_language_sources(plans)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    return read_rows(model, plans, rows, languages, readout, batch_size=batch_size,
                     lengths_of=lambda items: [len(row) for row in items],
                     encode_rows=lambda items: encode_ids(items, pad), parallel_of=lambda group: {})


def refuse_language_sources(plans: Mapping[str, Plan | None]) -> None:
    """Token rows have no parallel texts: a plan that patches from another language cannot run on them."""
    for plan in plans.values():
        if any(source.languages for source in (plan.sources() if plan is not None else {}).values()):
            raise DataError(f"condition '{plan.condition}' patches from another language's text, which token rows "
                            "do not have", where="patch source",
                            fix="use read_many with texts, or patch from a condition (`source: {condition: base}`)")


def read_rows(model, plans: Mapping[str, Plan | None], rows: Sequence, languages: Sequence[str], readout: Readout, *,
              batch_size: int, lengths_of: Callable[[Sequence], list[int]], encode_rows: Callable[[list], dict],
              parallel_of: Callable[[list[Plan]], Mapping]) -> dict:
    """`read_many` over rows of any kind (texts or token ids): `lengths_of(rows)` counts their tokens,
    `encode_rows(rows)` makes a batch's model inputs, `parallel_of(plans)` gives the parallel texts they patch from.
    Every group's inputs are checked before the first trace."""
    config = model._module.config
    if not rows:
        for plan in plans.values():
            check_rows(plan, rows, languages)
        return {name: readout.assemble(0, [], config) for name in plans}
    laid_out = lay_out_rows(plans, rows, languages, batch_size=batch_size, lengths_of=lengths_of,
                            parallel_of=parallel_of)
    out: dict = {}
    for signature, group in laid_out.groups.items():
        if not signature:
            parts = current().readouts(
                model, group, base_plan(model, languages), longest_first(laid_out.lengths, batch_size),
                lambda index: encode_rows([rows[i] for i in index]), languages, readout, batch_size=batch_size)
            out.update({name: readout.assemble(len(rows), value, config) for name, value in parts.items()})
            continue
        laid = laid_out.layouts[signature]
        parts = current().readouts(
            model, group, base_plan(model, [label_language(label) for label in laid.labels]), laid.batches,
            lambda index, laid=laid: encode_rows([laid.texts[i] for i in index]), laid.labels,
            SourceRowsReadout(readout, laid.target_of), batch_size=batch_size)
        out.update({name: readout.assemble(len(rows), caller_rows(value, laid.n), config)
                    for name, value in parts.items()})
    return {name: out[name] for name in plans}


@dataclass(frozen=True)
class RowLayout:
    """How a call's rows run: plans grouped by the sources they read, each row's token count, and for each group
    that reads sources its rows with their source rows."""

    groups: dict[tuple, dict]
    lengths: list[int]
    layouts: dict[tuple, Layout]


def lay_out_rows(plans: Mapping[str, Plan | None], rows: Sequence, languages: Sequence[str], *, batch_size: int,
                 lengths_of: Callable[[Sequence], list[int]],
                 parallel_of: Callable[[list[Plan]], Mapping]) -> RowLayout:
    """Check a call's rows against its plans and lay them out, without a model: one language per row and every
    language one the plans know, the patches' parallel texts, and every position selector on every row (source
    rows included). What the input checks before any weights load run, and what `read_rows` runs on."""
    for plan in plans.values():
        check_rows(plan, rows, languages)
    groups: dict[tuple, dict] = {}
    for name, plan in plans.items():
        groups.setdefault(source_signature(plan), {})[name] = plan
    lengths = lengths_of(rows)
    layouts = {signature: source_layout(list(group.values()), rows, languages, lengths, lengths_of,
                                        parallel_of(list(group.values())), batch_size)
               for signature, group in groups.items() if signature}
    if () in groups:
        check_positions_in(list(groups[()].values()), lengths, languages)
    return RowLayout(groups, lengths, layouts)


def source_layout(plans: list[Plan], rows: Sequence, languages: Sequence[str], lengths: list[int],
                  lengths_of: Callable[[Sequence], list[int]], parallel: Mapping, batch_size: int):
    """The rows and batches of plans that read source rows (`lengths`: the caller rows' token counts; only the
    source rows are counted here), with every position selector checked."""
    laid = layout(lengths, plans, rows, languages, parallel, batch_size)
    check_positions_in(plans, lengths + lengths_of(laid.texts[laid.n:]), laid.labels,
                       sources_by_row(laid.labels, laid.batches))
    return laid


def encode_ids(rows: Sequence[Sequence[int]], pad_id: int) -> dict:
    """Left-padded model inputs of token id rows."""
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        if tokens:
            input_ids[row, width - len(tokens):] = torch.tensor(list(tokens), dtype=torch.long)
            attention_mask[row, width - len(tokens):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def forward(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], *,
            batch_size: int = 8, max_length: int = 512, token_ids: Sequence[int] | None = None,
            parallel: Parallel = None) -> torch.Tensor:
    """Next-token logits at each text's last real token, with `plan` applied (None: unmodified model).

    Returns a float32 CPU tensor [len(texts), vocab], or [len(texts), len(token_ids)] with `token_ids`
    (only those logits are kept in the trace: what a remote run brings back). Rows are batched by
    length; the result does not depend on which rows share a batch. It reads rows as every call does
    (`read_rows`), with the `LastLogits` readout.
    """
    return forward_many(model, {"plan": plan}, texts, languages, batch_size=batch_size, max_length=max_length,
                        token_ids=token_ids, parallel=parallel)["plan"]


def generation_rows(tokenizer, plan: Plan, texts: Sequence[str], languages: Sequence[str], *, batch_size: int,
                    max_length: int, parallel: Parallel = None) -> tuple[list, list, list[list[int]]]:
    """Check a generation's rows against its plan and lay them out, without a model: (every row's text, source
    rows after the caller's, their labels, the batches). A patching plan decodes its source rows in the same
    batches."""
    check_rows(plan, texts, languages)
    if source_signature(plan):
        count = functools.partial(token_lengths, tokenizer, max_length=max_length)
        rows = source_layout([plan], texts, languages, count(texts), count,
                             parallel_for([plan], texts, languages, parallel), batch_size)
        return rows.texts, rows.labels, rows.batches
    check_positions(tokenizer, [plan], texts, languages, max_length)
    return list(texts), list(languages), batches(tokenizer, texts, batch_size, max_length)


def eos_ids(model) -> set[int]:
    """The token ids that end a generation (the generation config's, else the tokenizer's)."""
    config = model._module.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else model.tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def generate_ids(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], max_new_tokens: int, *,
                 batch_size: int = 8, max_length: int = 512, parallel: Parallel = None) -> list[list[int]]:
    """Greedy decoding with the plan applied at every step; new token ids per row, cut before the first EOS.
    A patching plan decodes its source rows in the same batches (their tokens are dropped)."""
    from transformers import GenerationConfig

    plan = plan or base_plan(model, languages)
    all_texts, labels, groups = generation_rows(model.tokenizer, plan, texts, languages, batch_size=batch_size,
                                                max_length=max_length, parallel=parallel)
    trace = emit(plan)
    tokenizer = model.tokenizer
    eos = eos_ids(model)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        eos_token_id=sorted(eos) or None, pad_token_id=tokenizer.pad_token_id,
    )
    results: list[list[int] | None] = [None] * len(texts)
    for index in groups:
        inputs = encode(tokenizer, [all_texts[i] for i in index], max_length)
        width = inputs["input_ids"].shape[1]
        rows = plan.row_inputs([labels[i] for i in index])
        with torch.inference_mode(), warnings.catch_warnings():
            # The open per-step loop ends when decoding stops early (EOS): expected, not a problem.
            warnings.filterwarnings("ignore", message=".*was never reached", category=UserWarning)
            token_ids = current().call(model, trace.generate, inputs, rows, plan.tensors(),
                                       call_kwargs={"generation_config": config})
        for row, i in enumerate(index):
            if i >= len(texts):  # a source row
                continue
            new = token_ids[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in eos), len(new))
            results[i] = new[:cut]
    return results


def generate(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], max_new_tokens: int, *,
             batch_size: int = 8, max_length: int = 512, parallel: Parallel = None) -> list[str]:
    """Greedy continuations as text, the plan applied at every step (prompt and generated tokens)."""
    ids = generate_ids(model, plan, texts, languages, max_new_tokens, batch_size=batch_size, max_length=max_length,
                       parallel=parallel)
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def token_nll(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], *,
              batch_size: int = 8, max_length: int = 512,
              parallel: Parallel = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: summed next-token negative log-likelihood (nats) and the number of predicted tokens."""
    return token_nll_many(model, {"plan": plan}, texts, languages, batch_size=batch_size,
                          max_length=max_length, parallel=parallel)["plan"]


def pooled_hidden(model, plan: Plan | None, texts: Sequence[str], languages: Sequence[str], layer: int, *,
                  batch_size: int = 8, max_length: int = 512, exclude_bos: bool = True,
                  parallel: Parallel = None) -> torch.Tensor:
    """[len(texts), hidden] mean of decoder layer `layer`'s output over each text's tokens (BOS left out)."""
    return pooled_hidden_many(model, {"plan": plan}, texts, languages, layer, batch_size=batch_size,
                              max_length=max_length, exclude_bos=exclude_bos, parallel=parallel)["plan"]


def forward_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str], *,
                 batch_size: int = 8, max_length: int = 512,
                 token_ids: Sequence[int] | None = None, parallel: Parallel = None) -> dict[str, torch.Tensor]:
    """`forward` for every plan (by condition name), sharing each batch's common prefix: {name: [rows, vocab]}
    (or [rows, len(token_ids)])."""
    hf = model._module
    readout = LastLogits() if token_ids is None else label_logits(hf, architecture_for(hf.config), token_ids)
    return read_many(model, plans, texts, languages, readout, batch_size=batch_size, max_length=max_length,
                     parallel=parallel)


def token_nll_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str], *,
                   batch_size: int = 8, max_length: int = 512,
                   parallel: Parallel = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`token_nll` for every plan, sharing each batch's common prefix: {name: (nll sums, token counts)}."""
    return read_many(model, plans, texts, languages, TokenNll(), batch_size=batch_size, max_length=max_length,
                     parallel=parallel)


def next_token_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
                    gold: Sequence[int | None], *, batch_size: int = 8,
                    max_length: int = 512, parallel: Parallel = None) -> dict[str, dict[str, torch.Tensor]]:
    """Per plan and text, the next-token distribution at the last real token compared with the unmodified
    model's on the same batch, reduced in the trace: {name: {"kl": KL(base || plan) in nats, "top1": argmax,
    "base_top1": base's argmax, "gold_logprob": log-prob of `gold` (NaN where gold is None)}}. Only these four
    numbers per row leave the trace (a remote run brings back no vocabulary-sized rows)."""
    return read_many(model, plans, texts, languages, NextToken(gold_ids(gold)), batch_size=batch_size,
                     max_length=max_length, parallel=parallel)


def pooled_hidden_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
                       layer: int, *, batch_size: int = 8, max_length: int = 512,
                       exclude_bos: bool = True, parallel: Parallel = None) -> dict[str, torch.Tensor]:
    """`pooled_hidden` for every plan, sharing each batch's common prefix: {name: [rows, hidden]}.
    A plan with no op at or below `layer` gets the base vectors (it cannot change them)."""
    return read_many(model, plans, texts, languages, Pooled(layer, exclude_bos), batch_size=batch_size,
                     max_length=max_length, parallel=parallel)


def lens_many(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
              layers: Sequence[int], *, position: int = -1, row_groups: Sequence[Sequence[Sequence[int]]] = (),
              sets: Sequence[Sequence[int]] = (), batch_size: int = 8, max_length: int = 512,
              parallel: Parallel = None) -> dict[str, dict]:
    """The logit lens for every plan: {name: {"lens": [rows, len(layers), groups] probabilities, "top1": [rows,
    len(layers)] token ids}}. At each layer the final norm and unembedding are applied to the residual at
    `position` (from the end) while the plan's interventions run; a group's probability is the sum over its tokens,
    per-row groups (`row_groups[i]`, the same count for every row) first, then the shared `sets`."""
    config = model._module.config
    readout = lens_readout(config, architecture_for(config), layers, position=position, row_groups=row_groups,
                           sets=sets)
    return read_many(model, plans, texts, languages, readout, batch_size=batch_size, max_length=max_length,
                     parallel=parallel)
