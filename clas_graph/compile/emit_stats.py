"""The statistics trace, as generated source (same reasons as emit.py: it must run remotely).

Per batch it returns only small per-language sums, never activations: for
every layer, over non-pad tokens, in float64,
  h_sum, h_sqsum   [L, G, I]  sums of h and h^2      (h = input of down_proj)
  act_sum          [L, G, I]  sum of act_fn output   (Int-mu's other site)
  resid_sum        [L, G, H]  sum of the layer's output (residual stream)
  active           [L, G, I]  count of tokens with h (or |h|) > T_act[layer]
where G is the number of languages and each row belongs to one of them
(`onehot` [B, G]); `token_mask` [B, T] is 1 on real tokens, 0 on padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..sites import Architecture
from .emit import _compile


@dataclass(frozen=True)
class StatsTrace:
    source: str
    filename: str
    run: Callable
    """run(model, inputs, onehot, token_mask, thresholds, trace_kwargs) -> dict of saved tensors."""
    session: Callable
    """session(model, [(inputs, onehot, token_mask), ...], thresholds, session_kwargs) -> summed dict (one request)."""


def emit_stats_source(architecture: Architecture, num_layers: int, *, moments: bool, active: str | None) -> str:
    """`active`: None (skip), "signed" (h > T) or "abs" (|h| > T)."""
    layers = f"model.{architecture.layers_path}"
    lines = [
        "w = token_mask.to(torch.float64)",
        "g = onehot.to(torch.float64)",
        "out_h, out_hsq, out_act, out_resid, out_active = [], [], [], [], []",
        f"for i in range({num_layers}):",
        f"    mlp = {layers}[i].{architecture.mlp}",
    ]
    if moments:
        lines += [
            f"    a = mlp.{architecture.act_fn}.output.to(torch.float64)",
            "    w_here, g_here = w.to(a.device), g.to(a.device)",
            "    out_act.append(g_here.T @ torch.einsum('bt,bti->bi', w_here, a))",
        ]
    lines += [f"    h = mlp.{architecture.down_proj}.input.to(torch.float64)"]
    if not moments:
        lines += ["    w_here, g_here = w.to(h.device), g.to(h.device)"]
    if moments:
        lines += [
            "    out_h.append(g_here.T @ torch.einsum('bt,bti->bi', w_here, h))",
            "    out_hsq.append(g_here.T @ torch.einsum('bt,bti->bi', w_here, h * h))",
        ]
    if active is not None:
        value = "h.abs()" if active == "abs" else "h"
        lines += [f"    fired = ({value} > thresholds[i].to(h.device)).to(torch.float64)",
                  "    out_active.append(g_here.T @ torch.einsum('bt,bti->bi', w_here, fired))"]
    if moments:
        lines += [
            f"    r = {layers}[i].output.to(torch.float64)",
            "    out_resid.append(g_here.T @ torch.einsum('bt,bth->bh', w_here.to(r.device), r))",
        ]
    parts = (["h_sum", "h_sqsum", "act_sum", "resid_sum"] if moments else []) + (["active"] if active else [])
    lists = {"h_sum": "out_h", "h_sqsum": "out_hsq", "act_sum": "out_act", "resid_sum": "out_resid",
             "active": "out_active"}
    body = "\n".join(" " * 8 + line for line in lines)
    inner = "\n".join(" " * 16 + line for line in lines)
    saved = "\n".join(f"        {name} = torch.stack({lists[name]}).cpu().save()" for name in parts)
    stacked = ", ".join(f"{name!r}: torch.stack({lists[name]})" for name in parts)
    session_saved = "\n".join(f"        {name} = sums[{name!r}].cpu().save()" for name in parts)
    result = "{" + ", ".join(f"{name!r}: {name}" for name in parts) + "}"
    return f'''# Generated statistics trace: per-language sums over non-pad tokens, float64.
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def stats_trace(model, inputs, onehot, token_mask, thresholds, trace_kwargs):
    with model.trace(inputs, **trace_kwargs):
{body}
{saved}
    return {result}


def stats_session(model, batches, thresholds, session_kwargs):
    # Many batches in one request: the running sums stay on the server, only they come back.
    with model.session(**session_kwargs):
        sums = None
        for inputs, onehot, token_mask in batches:
            with model.trace(inputs, logits_to_keep=1):
{inner}
                part = {{{stacked}}}
            sums = part if sums is None else {{key: sums[key] + part[key] for key in sums}}
{session_saved}
    return {result}
'''


def emit_stats(architecture: Architecture, num_layers: int, *, moments: bool = True, active: str | None = None) -> StatsTrace:
    source = emit_stats_source(architecture, num_layers, moments=moments, active=active)
    namespace = _compile(source, "stats")
    return StatsTrace(source, namespace["__file__"], namespace["stats_trace"], namespace["stats_session"])
