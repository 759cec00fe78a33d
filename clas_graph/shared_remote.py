"""Remote evaluation of several conditions: groups of batches per request, reduced on the server.

Each request is one `model.session` (compile/emit_session.py) that runs, per batch, the base trace and
every condition's trace from its shared prefix; only the readouts come back. A group holds at most
`Execution.session_batches` batches and at most RESULT_BUDGET bytes of results, because the server
sends results of more than about 4 MiB outside the websocket (see the NDIF server notes) and each
request must finish well within the server's one-hour limit (fewer batches per request: less work each).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .compile.plan import Plan
from .compile.emit import READOUT_NAMES
from .compile.emit_session import emit_session
from .execution import current
from .shared import batch_plan, traces_for

RESULT_BUDGET = 3 * 2**20
"""Bytes of readouts per request (float32 on the wire); below the websocket's ~4 MiB."""


def readout_width(model, readout: str, extra_width: int | None) -> int:
    """Numbers per row one condition's readout brings back."""
    config = model._module.config.get_text_config()
    if readout == "last_logits":
        return extra_width or config.vocab_size
    if readout == "pooled":
        return config.hidden_size
    if readout == "next_token":
        return 4  # KL, top-1, base's top-1, gold log-prob
    return 2  # token_nll: sum and count


def groups(batches: list[list[int]], per_request: int, row_bytes: int) -> list[list[list[int]]]:
    """Consecutive batches, at most `per_request` and RESULT_BUDGET bytes a group (always at least one batch)."""
    out: list[list[list[int]]] = []
    for index in batches:
        last = out[-1] if out else None
        if last is not None and len(last) < per_request and \
                (sum(map(len, last)) + len(index)) * row_bytes <= RESULT_BUDGET:
            last.append(index)
        else:
            out.append([index])
    return out


def run_many_remote(model, plans: Mapping[str, Plan | None], texts: Sequence[str], languages: Sequence[str],
                    readout: str, base: Plan, *, layer: int | None, extra: Callable[[dict, list[int]], dict] | None,
                    call_kwargs: dict, batches: list[list[int]], max_length: int) -> dict[str, list]:
    """Like backends.run_many, one request per group of batches."""
    from .backends import _encode

    execution = current()
    batch_size = max(map(len, batches))
    stack_rows = execution.stack_rows or 4 * batch_size
    schedule = batch_plan(plans, readout, layer, row_languages=languages, stack=stack_rows // batch_size)
    traces = traces_for(schedule, plans)
    base_readout = schedule.base_readout
    session = emit_session(base, [("+".join(t.names), t.plan, t.start, len(t.names)) for t in traces], readout,
                           layer, schedule.prefix_layers, base_readout)
    trace_plans = ([base] if schedule.needs_base_trace else []) + [t.plan for t in traces]
    all_tensors = [plan.tensors() for plan in trace_plans]
    # per output list: the conditions whose results it holds, in block order (as_base: one block, shared)
    outputs = ([(tuple(schedule.as_base), 1)] if base_readout else []) + [(t.names, len(t.names)) for t in traces]
    kwargs = {**call_kwargs, "use_cache": False}
    probe = extra({"input_ids": torch.zeros(1, 1, dtype=torch.long),
                   "attention_mask": torch.ones(1, 1, dtype=torch.long)}, [0]) if extra else {}
    width = readout_width(model, readout, len(probe["token_ids"]) if "token_ids" in probe else None)
    rows_out = sum(count for _, count in outputs)  # result rows per input row
    out: dict[str, list] = {name: [] for name in plans}
    for group in groups(batches, execution.session_batches, 4 * width * rows_out):
        payload = []
        for index in group:
            inputs = _encode(model.tokenizer, [texts[i] for i in index], max_length)
            row_languages = [languages[i] for i in index]
            payload.append((inputs, extra(inputs, index) if extra else {},
                            [plan.row_inputs(row_languages) for plan in trace_plans]))
        with torch.inference_mode():
            results = execution.run(model, session.run, payload, all_tensors, kwargs, call_kwargs={})
        for (names, count), values in zip(outputs, results):
            start = 0
            for index in group:  # each batch left count * len(index) rows: block k is names[k] (or all as_base)
                rows = count * len(index)
                blocks = [[value[start + k * len(index):start + (k + 1) * len(index)] for value in values]
                          for k in range(count)]
                start += rows
                for k, block in enumerate(blocks):
                    value = tuple(block) if len(READOUT_NAMES[readout]) > 1 else block[0]
                    for name in (names if count == 1 else names[k:k + 1]):
                        out[name].append((index, value))
    return out
