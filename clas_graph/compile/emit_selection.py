"""The selections trace (LAPE, expert neurons), as generated source (same reasons as emit.py: it must run remotely).

Per batch it returns, over counted tokens (`token_mask` [B, T]: 1 on real tokens, BOS left out when asked):
  positive  [L, G, I]   float64 count of tokens with act_fn output > 0, per language (LAPE's statistic)
  pooled    [L_e, B, I] float32 max over each row's counted tokens of the expert site's value, for the
                         searched layers (expert ranking needs every text's pooled response)
Rows with no counted token pool to -inf; the caller refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..sites import Architecture
from .emit import _compile


@dataclass(frozen=True)
class SelectionTrace:
    source: str
    filename: str
    run: Callable
    """run(model, inputs, onehot, token_mask, trace_kwargs) -> dict of saved tensors."""


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
    saved = []
    if lape:
        saved.append("        positive = torch.stack(out_positive).cpu().save()")
    if expert_layers:
        saved.append("        pooled = torch.stack(out_pooled).cpu().save()")
    names = (["positive"] if lape else []) + (["pooled"] if expert_layers else [])
    result = "{" + ", ".join(f"{name!r}: {name}" for name in names) + "}"
    body = "\n".join(" " * 8 + line for line in lines)
    return f'''# Generated selections trace (LAPE activation counts, max-pooled expert responses).
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def selection_trace(model, inputs, onehot, token_mask, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{chr(10).join(saved)}
        tracer.stop()  # layers above the last one read, and the LM head, are not needed
    return {result}
'''


def emit_selection(architecture: Architecture, num_layers: int, *, lape: bool, expert_layers=(),
                   expert_site: str = "mlp.act_fn.output") -> SelectionTrace:
    source = emit_selection_source(architecture, num_layers, lape=lape, expert_layers=tuple(expert_layers),
                                   expert_site=expert_site)
    namespace = _compile(source, "selection")
    return SelectionTrace(source, namespace["__file__"], namespace["selection_trace"])
