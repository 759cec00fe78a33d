"""The statistics trace, as generated source (same reasons as emit.py: it must run remotely).

Per batch it returns only small per-language sums, never activations: for
every layer, over non-pad tokens (float32 within a batch, float64 across batches),
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
from .emit import compile_source


@dataclass(frozen=True)
class StatsTrace:
    source: str
    filename: str
    run: Callable
    """run(model, inputs, onehot, token_mask, thresholds, trace_kwargs) -> dict of saved tensors."""
    session: Callable
    """session(model, [(inputs, onehot, token_mask), ...], thresholds, session_kwargs) -> summed dict (one request)."""


def emit_stats_source(architecture: Architecture, num_layers: int, *, moments: bool, active: str | None) -> str:
    """`active`: None (skip), "signed" (h > T) or "abs" (|h| > T).

    Each sum is one matrix product of a [G, B*T] weight (row language x token mask) with the site's
    [B*T, width] values, in float32 within the batch (exact for counts; ~1e-7 relative for sums of at
    most B*T tokens), accumulated across batches in float64. This keeps the statistics a few
    percent of the forward's cost (the earlier per-row float64 einsums cost ~15%)."""
    layers = f"model.{architecture.layers_path}"
    lines = [
        "w = token_mask.to(torch.float32)",
        "g = onehot.to(torch.float32)",
        "weights = (g.T[:, :, None] * w[None]).reshape(g.shape[1], -1)  # [G, B*T]: row language x real token",
        "out_h, out_hsq, out_act, out_resid, out_active = [], [], [], [], []",
        f"for i in range({num_layers}):",
        f"    mlp = {layers}[i].{architecture.mlp}",
    ]
    if moments:
        lines += [
            f"    a = mlp.{architecture.act_fn}.output",
            "    weights_here = weights.to(a.device)",
            "    out_act.append(weights_here @ a.reshape(-1, a.shape[-1]).to(torch.float32))",
        ]
    lines += [f"    h = mlp.{architecture.down_proj}.input",
              "    h = h.reshape(-1, h.shape[-1]).to(torch.float32)"]
    if not moments:
        lines += ["    weights_here = weights.to(h.device)"]
    if moments:
        lines += [
            "    out_h.append(weights_here @ h)",
            "    out_hsq.append(weights_here @ (h * h))",
        ]
    if active is not None:
        value = "h.abs()" if active == "abs" else "h"
        lines += [f"    fired = ({value} > thresholds[i].to(h.device, torch.float32)).to(torch.float32)",
                  "    out_active.append(weights_here @ fired)"]
    if moments:
        lines += [
            f"    r = {layers}[i].output",
            "    out_resid.append(weights_here @ r.reshape(-1, r.shape[-1]).to(torch.float32))",
        ]
    parts = (["h_sum", "h_sqsum", "act_sum", "resid_sum"] if moments else []) + (["active"] if active else [])
    lists = {"h_sum": "out_h", "h_sqsum": "out_hsq", "act_sum": "out_act", "resid_sum": "out_resid",
             "active": "out_active"}
    body = "\n".join(" " * 8 + line for line in lines)
    inner = "\n".join(" " * 16 + line for line in lines)
    saved = "\n".join(f"        {name} = torch.stack({lists[name]}).to(torch.float64).cpu().save()" for name in parts)
    stacked = ", ".join(f"{name!r}: torch.stack({lists[name]}).to(torch.float64)" for name in parts)
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


def emit_stats(architecture: Architecture, num_layers: int, *, moments: bool = True,
               active: str | None = None) -> StatsTrace:
    source = emit_stats_source(architecture, num_layers, moments=moments, active=active)
    namespace = compile_source(source, "stats")
    return StatsTrace(source, namespace["__file__"], namespace["stats_trace"], namespace["stats_session"])
