"""Next-token probe prompts: how far each condition moves the next-token distribution, per language.

Each parallel text is cut at about `cut` of its length (at a space where the
script has spaces); the model predicts the next token. Per language and
condition we report top-1 agreement with base, KL(base || condition) and the
log-probability of the true next token (when it is well defined: the prompt's
tokens must be a prefix of the full text's tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.tasks import NextTokenTask


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
