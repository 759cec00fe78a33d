"""Next-token probe: how far each condition moves the next-token distribution, per language.

Each parallel text is cut at about `cut` of its length (at a space where the
script has spaces); the model predicts the next token. Per language and
condition we report top-1 agreement with base, KL(base || condition) and the
log-probability of the true next token (when it is well defined: the prompt's
tokens must be a prefix of the full text's tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..backends import forward
from ..compile import Plan
from ..spec import NextTokenTask


@dataclass(frozen=True)
class ProbeRow:
    sample_id: str
    language: str
    prompt: str
    gold_token: int | None


def cut_text(text: str, fraction: float) -> str:
    """The first `fraction` of a text, ending at a word boundary when there is one nearby."""
    target = max(1, int(len(text) * fraction))
    space = text.rfind(" ", 0, target + 1)
    return text[:space] if space > target // 2 else text[:target]


def build_rows(task: NextTokenTask, languages: list[str], tokenizer, base_dir=None) -> list[ProbeRow]:
    from .stats import load_corpus

    samples = load_corpus(task.corpus, languages, base_dir)
    rows = []
    for sample in samples:
        for language in languages:
            text = sample.texts[language]
            prompt = cut_text(text, task.cut)
            full_ids = tokenizer(text)["input_ids"]
            prompt_ids = tokenizer(prompt)["input_ids"]
            aligned = len(full_ids) > len(prompt_ids) and full_ids[: len(prompt_ids)] == prompt_ids
            rows.append(ProbeRow(sample.id, language, prompt, full_ids[len(prompt_ids)] if aligned else None))
    return rows


def run_probe(model, plans: dict[str, Plan], task: NextTokenTask, languages: list[str], *,
              batch_size: int, max_length: int, base_dir=None) -> dict:
    """Metrics per condition and language, plus per-row samples; `plans` must include 'base'."""
    rows = build_rows(task, languages, model.tokenizer, base_dir)
    texts = [row.prompt for row in rows]
    row_langs = [row.language for row in rows]
    logprobs = {
        name: torch.log_softmax(forward(model, plan, texts, row_langs, batch_size=batch_size, max_length=max_length), -1)
        for name, plan in plans.items()
    }
    base = logprobs["base"]
    metrics: dict = {}
    samples: dict = {}
    for name, lp in logprobs.items():
        kl = (base.exp() * (base - lp)).sum(-1)  # KL(base || condition) per row
        top = lp.argmax(-1)
        agree = (top == base.argmax(-1)).float()
        for language in languages:
            idx = [i for i, row in enumerate(rows) if row.language == language]
            gold = [i for i in idx if rows[i].gold_token is not None]
            gold_lp = [lp[i, rows[i].gold_token].item() for i in gold]
            metrics.setdefault(name, {})[language] = {
                "n": len(idx),
                "n_gold": len(gold),
                "gold_logprob": sum(gold_lp) / len(gold_lp) if gold_lp else math.nan,
                "top1_agreement": agree[idx].mean().item(),
                "kl_from_base": kl[idx].mean().item(),
            }
            samples.setdefault(name, {})[language] = [
                {
                    "id": rows[i].sample_id,
                    "prompt": rows[i].prompt,
                    "gold_token": rows[i].gold_token,
                    "top1_token": int(top[i]),
                    "top1_text": model.tokenizer.decode([int(top[i])]),
                    "gold_logprob": lp[i, rows[i].gold_token].item() if rows[i].gold_token is not None else None,
                    "kl_from_base": kl[i].item(),
                }
                for i in idx
            ]
    return {"metrics": metrics, "samples": samples}
