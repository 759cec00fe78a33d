"""The selections trace (LAPE, expert neurons), as generated source (same reasons as emit.py: it must run remotely).

Per batch it returns, over counted tokens (`token_mask` [B, T]: 1 on real tokens, BOS left out when asked):
  positive  [L, G, I]   float64 count of tokens with act_fn output > 0, per language (LAPE's statistic)
  pooled    [L_e, B, I] float32 max over each row's counted tokens of the expert site's value, for the
                         searched layers (expert ranking needs every text's pooled response)
Rows with no counted token pool to -inf; the caller refuses them.

`session` runs several batches in one request (`model.session`): the counts are summed on the server and the
pooled responses concatenated there, so one result comes back per group of batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..sites import Architecture
from .emit import compile_source
from .emit_session import without_comments


@dataclass(frozen=True)
class SelectionTrace:
    source: str
    filename: str
    run: Callable
    """run(model, inputs, onehot, token_mask, trace_kwargs) -> dict of saved tensors."""
    session: Callable
    """session(model, [(inputs, onehot, token_mask), ...], session_kwargs) -> the same dict over all the batches
    (counts summed, pooled rows concatenated in order), in one request."""


def emit_selection_source(architecture: Architecture, num_layers: int, *, lape: bool,
                          expert_layers: tuple[int, ...], expert_site: str) -> str:
    layers = f"model.{architecture.layers_path}"
    read_h = expert_site == "mlp.down_proj.input"
    last = max([*(range(num_layers) if lape else []), *expert_layers])
    lines = [
        "w = token_mask.to(torch.float64)",
        "g = onehot.to(torch.float64)",
        "out_positive, out_pooled = [], []",
        f"for i in range({last + 1}):",
        f"    mlp = {layers}[i].{architecture.mlp}",
        f"    a = mlp.{architecture.act_fn}.output",
        "    w_here, g_here = w.to(a.device), g.to(a.device)",
    ]
    if lape:
        lines += ["    fired = (a > 0).to(torch.float64)",
                  "    out_positive.append(g_here.T @ torch.einsum('bt,bti->bi', w_here, fired))"]
    if expert_layers:
        lines += [f"    if i in {tuple(expert_layers)!r}:"]
        if read_h:
            lines += [f"        x = mlp.{architecture.down_proj}.input.float()"]
        else:
            lines += ["        x = a.float()"]
        lines += ["        counted = (w_here > 0)[:, :, None]",
                  "        out_pooled.append(torch.where(counted, x, torch.full_like(x, float('-inf'))).amax(1))"]
    names = (["positive"] if lape else []) + (["pooled"] if expert_layers else [])
    stacked = {"positive": "torch.stack(out_positive)", "pooled": "torch.stack(out_pooled)"}
    combined = {"positive": "sums['positive'] + part['positive']",  # counts: summed on the server
                "pooled": "torch.cat([sums['pooled'], part['pooled']], 1)"}  # rows: concatenated in order
    saved = "\n".join(f"        {name} = {stacked[name]}.cpu().save()" for name in names)
    part = "{" + ", ".join(f"{name!r}: {stacked[name]}" for name in names) + "}"
    merged = "{" + ", ".join(f"{name!r}: {combined[name]}" for name in names) + "}"
    session_saved = "\n".join(f"        {name} = sums[{name!r}].cpu().save()" for name in names)
    result = "{" + ", ".join(f"{name!r}: {name}" for name in names) + "}"
    body = "\n".join(" " * 8 + line for line in lines)
    inner = "\n".join(" " * 16 + line for line in lines)
    return f'''# Generated selections trace (LAPE activation counts, max-pooled expert responses).
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def selection_trace(model, inputs, onehot, token_mask, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{saved}
        tracer.stop()  # layers above the last one read, and the LM head, are not needed
    return {result}


def selection_session(model, batches, session_kwargs):
    # Many batches in one request: the server sums the counts and concatenates the pooled rows; only that
    # comes back. (No comments below: see without_comments in emit_session.py.)
    with model.session(**session_kwargs):
        sums = None
        for inputs, onehot, token_mask in batches:
            with model.trace(inputs, logits_to_keep=1) as tracer:
{without_comments(inner)}
                part = {part}
                tracer.stop()
            sums = part if sums is None else {merged}
{session_saved}
    return {result}
'''


def emit_selection(architecture: Architecture, num_layers: int, *, lape: bool, expert_layers=(),
                   expert_site: str = "mlp.act_fn.output") -> SelectionTrace:
    source = emit_selection_source(architecture, num_layers, lape=lape, expert_layers=tuple(expert_layers),
                                   expert_site=expert_site)
    namespace = compile_source(source, "selection")
    return SelectionTrace(source, namespace["__file__"], namespace["selection_trace"], namespace["selection_session"])
