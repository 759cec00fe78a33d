"""XQuAD (paper section 3.2): context and question, greedy decoding with the plan at every step, SQuAD-style
token F1 and exact match per language. XQuAD has one split, so dev items are a seeded sample of the question
ids the test subset does not use."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from ..data.languages import XQUAD_HUB, XQUAD_LANGUAGES, check_dataset
from ..data.xquad import XQUAD_PROMPT, load_xquad_qa
from ..eval import metrics as M
from ..execution.requests import decoded
from ..spec.base import LanguageCode, StrictModel
from .base import TEST, ItemsRunner, LanguagesField, TaskSpec, check_split


class XquadDev(StrictModel):
    """XQuAD items a sweep tunes on: XQuAD has one split, so they are a seeded sample of the questions that
    are not in the test subset (same ids in every language)."""

    limit: PositiveInt = 200
    """Questions per language (the paper tunes on 200 samples per language)."""
    seed: int = 0
    """Seed of the dev subset."""


class XquadRunner(ItemsRunner):
    def prompt_fields(self, example):
        return {"context": example.context, "question": example.question}

    def requests(self, unit):
        return [self.prompt_request(unit, max_new_tokens=self.task.max_new_tokens)]

    def score(self, unit, requests, answers):
        return {name: self.scored(unit.language, requests["prompts"].texts, decoded(unit.tokenizer, ids))
                for name, ids in answers["prompts"].items()}

    def scored(self, language, prompts, outputs):
        rows = []
        for example, prompt, output in zip(self.examples(language), prompts, outputs):
            prediction = output.strip().split("\n")[0].strip()
            rows.append({"id": example.id, "prompt": prompt, "output": output, "prediction": prediction,
                         "golds": list(example.answers),
                         "f1": 100 * M.best_over_golds(M.token_f1, prediction, example.answers, language),
                         "exact_match": 100 * M.best_over_golds(M.exact_match, prediction, example.answers, language)})
        n = max(len(rows), 1)
        return self.annotate(rows, prompts, language), {"f1": sum(r["f1"] for r in rows) / n,
                                                        "exact_match": sum(r["exact_match"] for r in rows) / n,
                                                        "n": len(rows)}


class XquadTask(LanguagesField, TaskSpec):
    """XQuAD (paper section 3.2): context and question, greedy decoding with the plan at every step,
    SQuAD-style token F1 and exact match per language."""

    metrics = {"f1": True, "exact_match": True}
    primary = "f1"
    runner_class = XquadRunner
    translated_ids = True

    kind: Literal["xquad"]
    split: str = "validation"
    limit: PositiveInt | None = 100
    """Questions per language (the same ids in every language); null takes all."""
    seed: int = 0
    data_files: dict[LanguageCode, str] | None = None
    """Local files per language (hub columns, or the original SQuAD-format JSON), instead of the hub."""
    hub_id: str = XQUAD_HUB
    prompt: str = XQUAD_PROMPT
    """Template with {context} and {question}."""
    max_new_tokens: PositiveInt = 32
    """Greedy decoding budget (the paper's 32)."""
    dev: XquadDev | None = None
    """Dev items for a sweep's selection (default: 200 questions per language not in the test subset)."""


    def check_languages(self, spec, index, languages, field):
        check_dataset(self.data_files, self.hub_id, XQUAD_HUB, XQUAD_LANGUAGES, languages, ("tasks", index), field)

    def items(self, language: str, split: str, base_dir=None):
        """XQuAD questions of one language for `split` (dev: ids the test subset does not use)."""
        check_split(split)
        options = dict(split=self.split, data_files=self.data_files, base_dir=base_dir, hub_id=self.hub_id)
        test = load_xquad_qa(language, limit=self.limit, seed=self.seed, **options)
        if split == TEST:
            return test
        dev = self.dev or XquadDev()
        return load_xquad_qa(language, limit=dev.limit, seed=dev.seed, exclude={e.id for e in test}, **options)

    def item_ids(self, languages, language, split, base_dir):
        return [e.id for e in self.items(language, split, base_dir)]

    def describe(self, split: str) -> str:
        check_split(split)
        if split == TEST:
            return f"XQuAD `{self.split}`, {self.limit or 'all'} questions per language (seed {self.seed})"
        dev = self.dev or XquadDev()
        return f"XQuAD questions outside the test subset, {dev.limit} per language (seed {dev.seed})"
