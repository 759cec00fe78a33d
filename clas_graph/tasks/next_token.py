"""Next-token probe: how far each condition moves the next-token distribution, per language.

Each parallel text is cut at about `cut` of its length (at a space where the script has spaces); the model
predicts the next token. Per language and condition: top-1 agreement with base, KL(base || condition) and the
log-probability of the true next token (when it is well defined: the prompt's tokens must be a prefix of the
full text's tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..data.corpora import load_corpus
from ..execution.readouts import NextToken, gold_ids
from ..spec.corpora import BibleCorpus, Corpus
from .base import LanguagesField
from .corpus import CorpusDev, CorpusRunner, CorpusTask


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


def build_rows(task: "NextTokenTask", languages: list[str], tokenizer, base_dir=None) -> list[ProbeRow]:
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


class NextTokenRunner(CorpusRunner):
    def rows(self, language: str, tokenizer) -> list[ProbeRow]:
        return self.cached(("rows", language), lambda: build_rows(self.split_task, [language], tokenizer,
                                                                  self.base_dir))

    def requests(self, unit):
        rows = self.rows(unit.language, unit.tokenizer)
        prompts = [r.prompt for r in rows]
        # the unmodified model runs in the same batches (the base trace of the shared prefix) and every
        # condition is compared with it inside the trace: four numbers per row come back, not the vocabulary
        return [self.new_request("prompts", [r.sample_id for r in rows], self.row_languages(prompts, unit.language),
                                 texts=tuple(prompts), readout=NextToken(gold_ids([r.gold_token for r in rows])))]

    def score(self, unit, requests, answers):
        rows = self.rows(unit.language, unit.tokenizer)
        return {name: self.scored(unit.tokenizer, rows, value, unit.language)
                for name, value in answers["prompts"].items()}

    def scored(self, tokenizer, rows, value, language):
        kl, top, gold_lp = value["kl"], value["top1"], value["gold_logprob"]
        out = [{"id": r.sample_id, "prompt": r.prompt, "gold_token": r.gold_token, "top1_token": int(top[i]),
                "top1_text": tokenizer.decode([int(top[i])]),
                "gold_logprob": gold_lp[i].item() if r.gold_token is not None else None,
                "kl_from_base": kl[i].item()} for i, r in enumerate(rows)]
        golds = [gold_lp[i].item() for i, r in enumerate(rows) if r.gold_token is not None]
        return self.annotate(out, [r.prompt for r in rows], language), {
            "gold_logprob": sum(golds) / len(golds) if golds else float("nan"),
            "top1_agreement": 100 * float((top == value["base_top1"]).double().mean()),
            "kl_from_base": float(kl.mean()), "n": len(rows), "n_gold": len(golds)}


class NextTokenTask(LanguagesField, CorpusTask):
    """Next-token probe: each parallel text is cut at about 60% and the model predicts what follows.

    Reports per language and condition: top-1 agreement with the base model, KL(base || condition)
    and the log-probability of the true next token.
    """

    metrics = {"gold_logprob": True, "top1_agreement": True, "kl_from_base": False}
    primary = "gold_logprob"
    runner_class = NextTokenRunner

    kind: Literal["next_token"]
    corpus: Corpus = BibleCorpus(limit=8)
    """Where the parallel prompts come from."""
    cut: float = Field(0.6, gt=0.0, lt=1.0)
    """Fraction of each text kept as the prompt (cut at a word boundary where the script has spaces)."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice)."""
