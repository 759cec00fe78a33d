"""Independent plain-PyTorch reference implementation of CLAS (ground truth for tests).

CLAS (Cross-Lingual Activation Steering) acts on the input of ``down_proj`` in a
gated MLP, ``h = act_fn(gate_proj(x)) * up_proj(x)``.  For every selected
(non-anchor-language) batch row, every position, and every chosen layer ``L``::

    h1      = h  * (1 + beta  * M_shared[L])
    h2      = h1 * (1 - gamma * M_spec[L])
    h_final = (1 - alpha) * h + alpha * h2

Other rows are untouched.  This is implemented literally, with forward pre-hooks
on ``model.model.layers[L].mlp.down_proj`` -- deliberately NOT folded into one
scale vector, and deliberately independent of ``clas_graph`` (nothing imported
from it).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class ClasRef:
    layers: dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer -> (M_shared, M_spec), 0/1 float [intermediate]
    beta: float
    gamma: float
    alpha: float


def clas_formula(h: torch.Tensor, m_shared: torch.Tensor, m_spec: torch.Tensor, beta: float, gamma: float,
                 alpha: float) -> torch.Tensor:
    """The literal three-step CLAS update of a down_proj input ``h`` [..., intermediate]."""
    m_shared = m_shared.to(device=h.device, dtype=h.dtype)
    m_spec = m_spec.to(device=h.device, dtype=h.dtype)
    h1 = h * (1 + beta * m_shared)
    h2 = h1 * (1 - gamma * m_spec)
    return (1 - alpha) * h + alpha * h2


def encode(tokenizer, texts, max_length: int = 512) -> dict:
    """Left-padded batch with ``input_ids``, ``attention_mask`` and pad-aware ``position_ids``."""
    if tokenizer.padding_side != "left":
        raise ValueError("reference.encode expects a left-padding tokenizer")
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    out["position_ids"] = (out["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return out


def _down_proj(model, layer: int) -> torch.nn.Module:
    return model.model.layers[layer].mlp.down_proj


@contextmanager
def clas_hooks(model, clas: ClasRef | None, row_mask: torch.Tensor):
    """Install CLAS pre-hooks on the chosen layers' ``down_proj`` for rows where ``row_mask`` is True.

    ``row_mask`` is bool [batch]; it must have the batch size of every forward call
    made inside the context (true for greedy ``generate``: the batch never shrinks).
    """
    handles = []
    if clas is not None:
        row_mask = torch.as_tensor(row_mask, dtype=torch.bool)
        n_layers = len(model.model.layers)
        for layer, (m_shared, m_spec) in sorted(clas.layers.items()):
            if not 0 <= layer < n_layers:
                raise IndexError(f"layer {layer} out of range (model has {n_layers})")

            def hook(module, args, _ms=m_shared, _mp=m_spec):
                h = args[0]
                if h.shape[0] != row_mask.shape[0]:
                    raise RuntimeError(f"row_mask has {row_mask.shape[0]} rows, batch has {h.shape[0]}")
                h_final = clas_formula(h, _ms, _mp, clas.beta, clas.gamma, clas.alpha)
                sel = row_mask.to(h.device).view(-1, *([1] * (h.dim() - 1)))
                return (torch.where(sel, h_final, h),) + tuple(args[1:])

            handles.append(_down_proj(model, layer).register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for hd in handles:
            hd.remove()


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def ref_last_logits(model, tokenizer, texts, apply_rows: list[bool], clas: ClasRef | None) -> torch.Tensor:
    """Next-token logits [len(texts), vocab] at each text's last real token (left padding)."""
    texts = list(texts)
    if len(apply_rows) != len(texts):
        raise ValueError("apply_rows must have one entry per text")
    dev = _device(model)
    enc = {k: v.to(dev) for k, v in encode(tokenizer, texts).items()}
    with clas_hooks(model, clas, torch.tensor(list(apply_rows), dtype=torch.bool)):
        out = model(**enc, use_cache=False)
    return out.logits[:, -1, :].float()


@torch.no_grad()
def ref_last_logits_one_by_one(model, tokenizer, texts, apply_rows: list[bool],
                               clas: ClasRef | None) -> torch.Tensor:
    """Same as :func:`ref_last_logits` but each text runs alone (batch of 1, no padding)."""
    texts = list(texts)
    if len(apply_rows) != len(texts):
        raise ValueError("apply_rows must have one entry per text")
    rows = [ref_last_logits(model, tokenizer, [t], [a], clas) for t, a in zip(texts, apply_rows)]
    return torch.cat(rows, dim=0)


@torch.no_grad()
def ref_greedy(model, tokenizer, texts, apply_rows: list[bool], clas: ClasRef | None,
               max_new_tokens: int) -> list[list[int]]:
    """Greedy generation with the hooks active at every step; per row the NEW ids, cut before the first eos."""
    texts = list(texts)
    if len(apply_rows) != len(texts):
        raise ValueError("apply_rows must have one entry per text")
    dev = _device(model)
    enc = encode(tokenizer, texts)
    enc.pop("position_ids")  # generate derives positions from the attention mask itself
    enc = {k: v.to(dev) for k, v in enc.items()}
    eos_id = tokenizer.eos_token_id
    with clas_hooks(model, clas, torch.tensor(list(apply_rows), dtype=torch.bool)):
        out = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_id,
        )
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    result = []
    for row in new:
        result.append(row[: row.index(eos_id)] if eos_id in row else row)
    return result
