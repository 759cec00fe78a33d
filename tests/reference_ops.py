"""Independent hook implementations of every intervention kind, for composition tests.

Nothing here imports clas_graph. Each op is a plain function of (x, row_languages) applied by a
PyTorch hook at its site; hooks on the same module run in registration order, each seeing the
previous one's output, which is the composition rule the compiler promises.
  act   forward hook on mlp.act_fn (its output a)
  h     forward pre-hook on mlp.down_proj (its input h)
  resid forward hook on the decoder layer (its output)
`phase` restricts an op to the prompt forward (seq len > 1) or to generated tokens (seq len == 1).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class HookOp:
    layer: int
    site: str  # "act" | "h" | "resid"
    fn: Callable[[torch.Tensor, list[str]], torch.Tensor]  # (x [B, T, D], row languages) -> new x
    phase: str = "all"  # "all" | "prompt" | "generated"


def _applies(op: HookOp, x: torch.Tensor) -> bool:
    if op.phase == "prompt":
        return x.shape[1] > 1
    if op.phase == "generated":
        return x.shape[1] == 1
    return True


@contextmanager
def op_hooks(model, ops: list[HookOp], row_languages: list[str]):
    handles = []
    for op in ops:
        layer = model.model.layers[op.layer]
        if op.site == "act":
            def hook(module, args, out, op=op):
                return op.fn(out, row_languages) if _applies(op, out) else out
            handles.append(layer.mlp.act_fn.register_forward_hook(hook))
        elif op.site == "h":
            def pre(module, args, op=op):
                return (op.fn(args[0], row_languages),) if _applies(op, args[0]) else None
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(pre))
        elif op.site == "resid":
            def post(module, args, out, op=op):
                hidden = out[0] if isinstance(out, tuple) else out
                if not _applies(op, hidden):
                    return None
                new = op.fn(hidden, row_languages)
                return (new, *out[1:]) if isinstance(out, tuple) else new
            handles.append(layer.register_forward_hook(post))
        else:
            raise ValueError(op.site)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def rows_where(row_languages, touched: Callable[[str], bool], x: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    keep = torch.tensor([touched(lang) for lang in row_languages], device=x.device).view(-1, 1, 1)
    return torch.where(keep, new, x)


@torch.no_grad()
def last_logits(model, tokenizer, texts, row_languages, ops) -> torch.Tensor:
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    enc["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with op_hooks(model, ops, list(row_languages)):
        return model(**enc, use_cache=False).logits[:, -1, :].float()


@torch.no_grad()
def greedy(model, tokenizer, texts, row_languages, ops, max_new_tokens: int) -> list[list[int]]:
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    with op_hooks(model, ops, list(row_languages)):
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    result = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        result.append(row[:cut])
    return result
