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
    saved = []
    if moments:
        saved += ["h_sum = torch.stack(out_h).cpu().save()", "h_sqsum = torch.stack(out_hsq).cpu().save()",
                  "act_sum = torch.stack(out_act).cpu().save()", "resid_sum = torch.stack(out_resid).cpu().save()"]
    if active is not None:
        saved += ["active = torch.stack(out_active).cpu().save()"]
    names = [line.split(" = ")[0] for line in saved]
    body = "\n".join(" " * 8 + line for line in lines + saved)
    result = "{" + ", ".join(f"{name!r}: {name}" for name in names) + "}"
    return f'''# Generated statistics trace: per-language sums over non-pad tokens, float64.
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def stats_trace(model, inputs, onehot, token_mask, thresholds, trace_kwargs):
    with model.trace(inputs, **trace_kwargs):
{body}
    return {result}
'''


def emit_stats(architecture: Architecture, num_layers: int, *, moments: bool = True, active: str | None = None) -> StatsTrace:
    source = emit_stats_source(architecture, num_layers, moments=moments, active=active)
    namespace = _compile(source, "stats")
    return StatsTrace(source, namespace["__file__"], namespace["stats_trace"])
