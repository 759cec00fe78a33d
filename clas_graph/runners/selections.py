"""Selections runner: LAPE and expert neurons over the statistics corpus, added to the statistics artifact.

Runs only when `stats.selections` asks for them, as its own generated trace: one batch at a time locally;
remotely, like the statistics, up to `session_batches` batches per request in one `model.session` that sums
LAPE's counts on the server and brings back only those sums and the experts' pooled rows (a group is also cut at
RESULT_BUDGET bytes of pooled rows, see execution/ndif.py). The result is the statistics artifact plus `lape.*` /
`experts.*` tensors, described in stats.json under `selections`; an artifact that already holds the same
selections (same corpus, same parameters) is reused.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from rich.console import Console

from ..compile.emit_selection import emit_selection
from ..errors import DataError
from ..execution.context import current
from ..selections.registry import LANGUAGE_AXIS, TENSOR_PREFIXES
from ..sites import architecture_for, dims_of
from ..spec.run_spec import RunSpec
from .progress import progress_bar


def wanted(spec: RunSpec) -> dict:
    """What the spec asks for, as recorded in stats.json (compared to decide whether to recompute)."""
    chosen = spec.stats.selections
    if chosen is None:
        return {}
    return {name: getattr(chosen, name).model_dump(mode="json") for name in chosen.names()}


def _encode(tokenizer, texts, groups, num_languages: int, max_length: int, exclude_bos: bool):
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    onehot = torch.nn.functional.one_hot(torch.tensor(groups), num_languages).to(torch.float64)
    mask = encoded["attention_mask"].to(torch.float64)
    if exclude_bos and tokenizer.bos_token_id is not None:
        mask[encoded["input_ids"] == tokenizer.bos_token_id] = 0.0  # the same rule as the CLAS statistics
    return inputs, onehot, mask


def collect(model, samples, languages, *, lape: bool, expert_layers: list[int], expert_site: str,
            batch_size: int, max_length: int, exclude_bos: bool, console: Console | None = None):
    """(positive counts [L, G, I] or None, counted tokens [G], pooled [L_e, N, I] or None, row language [N])."""
    config = model._module.config
    arch, dims = architecture_for(config), dims_of(config)
    trace = emit_selection(arch, dims.num_layers, lape=lape, expert_layers=expert_layers, expert_site=expert_site)
    rows = [(sample.texts[lang], g) for sample in samples for g, lang in enumerate(languages)]
    batches = [list(range(start, min(start + batch_size, len(rows)))) for start in range(0, len(rows), batch_size)]
    # Remotely, several batches per request; the pooled rows (float32) come back, so they bound a group's size.
    # LAPE's counts are one fixed-size sum per request, however many batches it holds.
    row_bytes = 4 * len(expert_layers) * dims.intermediate_size
    requests = current().request_groups(batches, row_bytes)
    state = {"positive": None, "pooled": [], "tokens": torch.zeros(len(languages), dtype=torch.float64)}
    console = console or Console(stderr=True)
    what = " + ".join((["LAPE"] if lape else []) + (["experts"] if expert_layers else []))
    with progress_bar(console) as progress:
        bar = progress.add_task(f"selections: {what}", total=len(rows), tok_s="-")
        for group in requests:
            _one_request(model, trace, [[rows[i] for i in index] for index in group], languages, max_length,
                         exclude_bos, lape, expert_layers, state)
            progress.update(bar, advance=sum(map(len, group)),
                            tok_s=f"{float(state['tokens'].sum()) / (progress.tasks[bar].elapsed or 1e-9):,.0f}")
    positive, tokens, pooled = state["positive"], state["tokens"], state["pooled"]
    row_language = torch.tensor([g for _, g in rows])
    return positive, tokens, (torch.cat(pooled, 1) if pooled else None), row_language


def _one_request(model, trace, chunks, languages, max_length, exclude_bos, lape, expert_layers, state) -> None:
    """Run the trace on one batch (or the session on several) and add the counts / pooled responses to `state`."""
    batches = [_encode(model.tokenizer, [t for t, _ in chunk], [g for _, g in chunk], len(languages), max_length,
                       exclude_bos) for chunk in chunks]
    if any(bool((mask.sum(1) == 0).any()) for _, _, mask in batches):
        raise DataError("a text has no token to count (empty, or only BOS)", where="stats.corpus",
                        fix="drop empty texts from the corpus")
    with torch.inference_mode():
        out = current().call_grouped(model, trace.run, trace.session, batches, call_kwargs={"logits_to_keep": 1})
    if lape:
        state["positive"] = out["positive"] if state["positive"] is None else state["positive"] + out["positive"]
    if expert_layers:
        state["pooled"].append(out["pooled"].float())
    for _, onehot, mask in batches:
        state["tokens"] += onehot.T @ mask.sum(1)


def compute(spec: RunSpec, model, samples, *, previous=None, console: Console | None = None) -> tuple[dict, dict]:
    """(tensors, meta) of the selections the spec asks for, over `samples` (the statistics corpus).

    From `previous` (an artifact of the same corpus) it reuses LAPE's probabilities (only the selection rule's
    parameters changed) and expert tensors asked for with the same parameters, so the pass over the corpus runs only
    for what is missing, or not at all."""
    stats, chosen = spec.stats, spec.stats.selections
    languages = list(spec.languages)
    num_layers = dims_of(model._module.config).num_layers
    old = previous.tensors if previous is not None else {}
    old_meta = previous.meta.get("selections", {}) if previous is not None else {}
    reuse_prob = chosen.lape is not None and chosen.lape.reusable(old, old_meta)
    reuse_experts = chosen.experts is not None and chosen.experts.reusable(old, old_meta)
    expert_layers = chosen.experts.searched_layers(num_layers) if chosen.experts is not None else []
    count_lape = chosen.lape is not None and not reuse_prob
    search = expert_layers if chosen.experts is not None and not reuse_experts else []
    positive = tokens = pooled = row_language = None
    if count_lape or search:
        positive, tokens, pooled, row_language = collect(
            model, samples, languages, lape=count_lape, expert_layers=search,
            expert_site=chosen.experts.site if chosen.experts is not None else "mlp.act_fn.output",
            batch_size=stats.batch_size, max_length=stats.max_length, exclude_bos=stats.exclude_bos, console=console)
    tensors, meta = {}, {"requested": wanted(spec), "language_axis": []}
    if chosen.lape is not None:
        found, info = chosen.lape.stored(positive, tokens, languages, reused=old if reuse_prob else None)
        tensors.update(found)
        meta.update(info)
    if chosen.experts is not None:
        found, info = chosen.experts.stored(pooled, row_language, languages, expert_layers, num_layers,
                                            reused=(old, old_meta) if reuse_experts else None)
        tensors.update(found)
        meta.update(info)
    meta["language_axis"] = [name for name in LANGUAGE_AXIS if name in tensors]
    return tensors, meta


def has_selections(artifact, spec: RunSpec) -> bool:
    """Whether `artifact` already holds exactly the selections the spec asks for."""
    recorded = artifact.meta.get("selections", {}).get("requested")
    return not wanted(spec) or recorded == wanted(spec)


def with_selections(artifact, spec: RunSpec, model, samples, *, console: Console | None = None):
    """The artifact with the spec's selections added (recomputed when missing or asked for with other parameters)."""
    if has_selections(artifact, spec):
        return artifact
    tensors, meta = compute(spec, model, samples, previous=artifact, console=console)
    kept = {k: v for k, v in artifact.tensors.items() if not k.startswith(TENSOR_PREFIXES)}
    return replace(artifact, tensors={**kept, **tensors}, meta={**artifact.meta, "selections": meta})
