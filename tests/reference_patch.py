"""Independent plain-PyTorch references for position selectors and activation patching (nothing from clas_graph).

Every text runs alone (a batch of one, no padding), so a token's position is its index in the text: the
library's left-padded, mixed-length batches must give the same numbers. Patching takes two separate forward
passes, as the papers do: one records the source text's values at the site (forward hooks), one writes them into
the target text's run.

Sites: `act` = output of mlp.act_fn (forward hook), `h` = input of mlp.down_proj (pre-hook), `resid` = output
of the decoder layer (forward hook).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

SITES = {"mlp.act_fn.output": "act", "mlp.down_proj.input": "h", "resid_post": "resid"}


@contextmanager
def site_hooks(model, edits: list[tuple[int, str, Callable[[torch.Tensor], torch.Tensor]]]):
    """Install `fn(x [1, T, D]) -> new x` at (layer, site) for every edit, in list order."""
    handles = []
    for layer, site, fn in edits:
        block = model.model.layers[layer]
        site = SITES.get(site, site)
        if site == "act":
            handles.append(block.mlp.act_fn.register_forward_hook(lambda m, a, out, fn=fn: fn(out)))
        elif site == "h":
            handles.append(block.mlp.down_proj.register_forward_pre_hook(lambda m, a, fn=fn: (fn(a[0]),)))
        else:
            def post(m, a, out, fn=fn):
                if isinstance(out, tuple):
                    return (fn(out[0]), *out[1:])
                return fn(out)
            handles.append(block.register_forward_hook(post))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


@torch.no_grad()
def record(model, tokenizer, text: str, layer: int, site: str, edits=()) -> torch.Tensor:
    """[T, D] values of `text` at (layer, site), with `edits` active (the source condition's own ops)."""
    seen = {}

    def keep(x):
        seen["x"] = x[0].clone()
        return x

    with site_hooks(model, [*edits, (layer, site, keep)]):
        model(ids(tokenizer, text), use_cache=False)
    return seen["x"]


def prompt_only(fn):
    """Restrict an edit to the prompt forward (more than one position), as in generation with a KV cache."""
    return lambda x: fn(x) if x.shape[1] > 1 else x


def patch_edit(layer: int, site: str, values: torch.Tensor, target_positions: list[int], coefficient: float = 1.0):
    """Write `values` [P, D] at `target_positions` of the run: x[t] <- (1-c)*x[t] + c*value."""
    def fn(x):
        new = x.clone()
        new[0, target_positions] = (1 - coefficient) * x[0, target_positions] + coefficient * values.to(x.dtype)
        return new
    return layer, site, prompt_only(fn)


def positions_of(rule, length: int) -> list[int]:
    """The token positions a selector names in a text of `length` tokens."""
    if rule == "last":
        return [length - 1]
    if isinstance(rule, dict) and "first" in rule:
        return list(range(rule["first"]))
    if isinstance(rule, dict) and "last" in rule:
        return list(range(length - rule["last"], length))
    if isinstance(rule, list):
        return [i % length for i in rule]
    return list(range(length))


@torch.no_grad()
def last_logits(model, tokenizer, text: str, edits=()) -> torch.Tensor:
    with site_hooks(model, list(edits)):
        return model(ids(tokenizer, text), use_cache=False).logits[0, -1].float()


@torch.no_grad()
def greedy(model, tokenizer, text: str, edits, max_new_tokens: int) -> list[int]:
    prompt = ids(tokenizer, text)
    with site_hooks(model, list(edits)):
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    new = out[0, prompt.shape[1]:].tolist()
    return new[:new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
