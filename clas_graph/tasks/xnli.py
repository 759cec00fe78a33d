"""XNLI (paper section 3.2): the prompt asks for one integer; the logits of the three label tokens at the last
position decide. Dev items come from another split (`validation`, disjoint by construction) or, from the
test's own source, a seeded sample of the rows the test subset does not use."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import PositiveInt

from ..data.languages import XNLI_HUB, XNLI_LANGUAGES, check_dataset
from ..data.xnli import XNLI_PROMPT, load_xnli
from ..errors import DataError
from ..eval import metrics as M
from ..execution.readouts import LabelLogits
from ..spec.base import LanguageCode, StrictModel
from .base import TEST, ItemsRunner, LanguagesField, TaskSpec, check_split

# Spec models load without torch or matplotlib (`clas-graph validate` and `--help` start fast): the methods that
# score or draw import them.


class XnliDev(StrictModel):
    """XNLI items a sweep tunes on. From another split they are disjoint by construction; from the test's own
    source (same split, or the task's local files) they are drawn from the rows not in the test subset."""

    split: str = "validation"
    """Split to draw from (XNLI has `validation` and `test`)."""
    data_files: dict[LanguageCode, str] | None = None
    """Local files of the dev split per language; default: the hub's `split`, or the task's own `data_files`
    (then dev rows are the rows the test subset does not use)."""
    limit: PositiveInt = 200
    """Pairs per language (the paper tunes on 200 samples per language)."""
    seed: int = 0
    """Seed of the dev subset."""


class XnliRunner(ItemsRunner):
    def label_ids(self, tokenizer) -> list[int]:
        ids = []
        for label in self.task.labels:
            tokens = tokenizer(label, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise DataError(f"label '{label}' is {len(tokens)} tokens for this tokenizer, not one",
                                where=f"tasks ({self.key}).labels",
                                fix="choose label strings that are single tokens (e.g. ' 0' with a leading space)")
            ids.append(tokens[0])
        return ids

    def prompt_fields(self, example):
        return {"premise": example.premise, "hypothesis": example.hypothesis}

    def requests(self, unit):
        # only the label tokens' logits are computed into the result (and travel back from a remote run)
        return [self.prompt_request(unit, readout=LabelLogits(tuple(self.label_ids(unit.tokenizer))))]

    def score(self, unit, requests, answers):
        examples, prompts = self.examples(unit.language), requests["prompts"].texts
        return {name: self.scored(examples, prompts, label_logits, unit.language)
                for name, label_logits in answers["prompts"].items()}

    def scored(self, examples, prompts, label_logits, language):
        import torch

        probs = torch.softmax(label_logits.double(), -1)
        preds = probs.argmax(-1).tolist()
        golds = [e.label for e in examples]
        scores = M.classification_scores(preds, golds)
        rows = [{"id": e.id, "prompt": p, "gold": e.label, "prediction": pred, "probs": [round(v, 6) for v in pr]}
                for e, p, pred, pr in zip(examples, prompts, preds, probs.tolist())]
        return self.annotate(rows, prompts, language), {"accuracy": 100 * scores["accuracy"],
                                                        "macro_f1": 100 * scores["macro_f1"], "n": len(rows)}


class XnliTask(LanguagesField, TaskSpec):
    """XNLI (paper section 3.2): the prompt asks for one integer; the logits of the three label tokens at the
    last position decide (0 entailment, 1 neutral, 2 contradiction). Accuracy and macro F1 per language."""

    metrics = {"accuracy": True, "macro_f1": True}
    primary = "accuracy"
    runner_class = XnliRunner
    translated_ids = True

    kind: Literal["xnli"]
    split: str = "test"
    limit: PositiveInt | None = 200
    """Pairs per language (the same items in every language); null takes the whole split."""
    seed: int = 0
    """Seed of the subset."""
    data_files: dict[LanguageCode, str] | None = None
    """Local files per language in the hub's columns (premise, hypothesis, label), instead of the hub."""
    hub_id: str = XNLI_HUB
    prompt: str = XNLI_PROMPT
    """Template with {premise} and {hypothesis}; it should end where the label token comes next."""
    labels: tuple[str, str, str] = ("0", "1", "2")
    """The label strings; each must be one token for the model's tokenizer (checked before running)."""
    dev: XnliDev | None = None
    """Dev items for a sweep's selection (default: 200 pairs per language from `validation`)."""


    def check_languages(self, spec, index, languages, field):
        check_dataset(self.data_files, self.hub_id, XNLI_HUB, XNLI_LANGUAGES, languages, ("tasks", index), field)

    def _dev_from_test_source(self, language: str, base_dir) -> bool:
        dev = self.dev or XnliDev()
        own = (dev.data_files or {}).get(language)
        task_file = (self.data_files or {}).get(language)
        return ((dev.data_files is None and (self.data_files is not None or dev.split == self.split))
                or _same_file(own, task_file, base_dir))

    def items(self, language: str, split: str, base_dir=None):
        """XNLI examples of one language for `split` (test: the task's subset; dev: disjoint from it)."""
        check_split(split)
        test = load_xnli(language, split=self.split, limit=self.limit, seed=self.seed, data_files=self.data_files,
                         base_dir=base_dir, hub_id=self.hub_id)
        if split == TEST:
            return test
        dev = self.dev or XnliDev()
        if self._dev_from_test_source(language, base_dir):  # the rows the test subset does not use
            return load_xnli(language, split=self.split, limit=dev.limit, seed=dev.seed, data_files=self.data_files,
                             base_dir=base_dir, hub_id=self.hub_id, exclude={e.id for e in test})
        return load_xnli(language, split=dev.split, limit=dev.limit, seed=dev.seed, data_files=dev.data_files,
                         base_dir=base_dir, hub_id=self.hub_id)

    def item_ids(self, languages, language, split, base_dir):
        return [e.id for e in self.items(language, split, base_dir)]

    def describe(self, split: str) -> str:
        check_split(split)
        if split == TEST:
            return f"XNLI `{self.split}`, {self.limit or 'all'} pairs per language (seed {self.seed})"
        dev = self.dev or XnliDev()
        source = "files in dev.data_files" if dev.data_files else f"`{dev.split}`"
        same = dev.data_files is None and (self.data_files is not None or dev.split == self.split)
        return (f"XNLI {source if not same else f'`{self.split}` rows outside the test subset'}, {dev.limit} pairs "
                f"per language (seed {dev.seed})")


def _same_file(a: str | None, b: str | None, base_dir) -> bool:
    if a is None or b is None:
        return False

    def resolve(path: str) -> Path:
        file = Path(path)
        if base_dir is not None and not file.is_absolute():
            file = Path(base_dir) / file
        return file.expanduser().resolve()

    return resolve(a) == resolve(b)
