"""Language steering (CLaS-Bench-style): prompts in a source language, greedy generation under a condition that
steers toward a target language; `forcing` = % of outputs the offline identifier (Lingua) labels as the target,
`fluency` = 100 * exp(-mean NLL per output token given the prompt, under the unsteered model) (our offline
stand-in for CLaS-Bench's LLM judge), `steering` = their harmonic mean."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from ..data.templates import render
from ..errors import DataError
from ..eval.langid import detect, primary
from ..execution.readouts import TokenNll
from ..execution.requests import decoded
from ..extras import LANGUAGE_IDENTIFIER, Need
from ..spec.base import FieldError, LanguageCode
from ..spec.corpora import BibleCorpus, Corpus
from .corpus import CorpusRunner, CorpusTask

# Spec models load without torch or matplotlib (`clas-graph validate` and `--help` start fast): the methods that
# score or draw import them.


def steering_score(a: float, b: float) -> float:
    """CLaS-Bench's H(a, b) = 2ab / (a + b), 0 when either is 0."""
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


class LanguageSteeringRunner(CorpusRunner):
    """Prompts in the unit's (source) language, greedy generation under the condition, language of each output."""

    def languages(self):
        return list(self.task.sources or self.spec.languages)

    def target(self, plan, source: str) -> str:
        """The condition's target language (the source itself for base, which steers nowhere)."""
        if self.task.targets and plan.condition in self.task.targets:
            return self.task.targets[plan.condition]
        found = sorted({op.params["target"] for op in plan.ops if "target" in op.params})
        if not plan.ops:
            return source
        if len(found) != 1:
            raise DataError(f"condition '{plan.condition}' steers toward {found or 'no language'}; language steering "
                            "needs exactly one target", where=f"tasks ({self.key})",
                            fix=f"set `targets: {{{plan.condition}: LANG}}` in the task")
        return found[0]

    def requests(self, unit):
        for plan in unit.plans.values():
            self.target(plan, unit.language)  # a condition without one target is refused before model work
        samples = self.samples()
        prompts = [self.templated(unit.tokenizer, render(self.task.prompt, text=s.texts[unit.language]))
                   for s in samples]
        ids, rows_of = [s.id for s in samples], self.row_languages(prompts, unit.language)
        # the unmodified model's NLL of the prompts: the same for every condition
        return [self.new_request("outputs", ids, rows_of, texts=tuple(prompts),
                                 max_new_tokens=self.task.max_new_tokens),
                self.new_request("prompt_nll", ids, rows_of, texts=tuple(prompts), readout=TokenNll(),
                                 unmodified=True)]

    def more_requests(self, unit, requests, answers):
        # fluency: NLL of each output given its prompt under the unmodified model (prompt+output minus prompt)
        prompts = requests["outputs"]
        return [self.new_request(f"continued:{name}", prompts.ids, prompts.languages, readout=TokenNll(),
                                 texts=tuple(p + o for p, o in zip(prompts.texts, decoded(unit.tokenizer, ids))),
                                 unmodified=True)
                for name, ids in answers["outputs"].items()]

    def score(self, unit, requests, answers):
        prompts = requests["outputs"].texts
        return {name: self.scored(plan, unit.language, prompts, decoded(unit.tokenizer, answers["outputs"][name]),
                                  answers[f"continued:{name}"][name], answers["prompt_nll"][name])
                for name, plan in unit.plans.items()}

    def scored(self, plan, language, prompts, outputs, continued, prompt_nll):
        import torch

        target = self.target(plan, language)
        detected = detect(outputs)
        (full, full_n), (alone, alone_n) = continued, prompt_nll
        rows, forced, fluent = [], [], []
        for s, prompt, output, code, a, an, b, bn in zip(self.samples(), prompts, outputs, detected, full, full_n,
                                                          alone, alone_n):
            tokens = float(an - bn)
            fluency = 100 * float(torch.exp(-(a - b) / tokens)) if tokens > 0 and output.strip() else 0.0
            hit = code == primary(target)
            forced.append(hit)
            fluent.append(fluency)
            rows.append({"id": s.id, "prompt": prompt, "output": output, "source": language, "target": target,
                         "detected": code, "forced": hit, "fluency": round(fluency, 4)})
        n = max(len(rows), 1)
        forcing, fluency = 100 * sum(forced) / n, sum(fluent) / n
        scores = {"steering": steering_score(forcing, fluency), "forcing": forcing, "fluency": fluency,
                  "source": language, "target": target, "n": len(rows)}
        return self.annotate(rows, prompts, language), scores


class LanguageSteeringTask(CorpusTask):
    """Language steering (CLaS-Bench-style): prompts in a source language, greedy generation under a condition that
    steers toward a target language; `forcing` = % of outputs an offline identifier (Lingua) labels as the target,
    `fluency` = 100 * exp(-mean NLL per output token given the prompt, under the unsteered model) (our offline
    stand-in for CLaS-Bench's LLM judge), `steering` = their harmonic mean. The base condition's target is the
    source language itself (does the unsteered model answer in the prompt's language)."""

    metrics = {"steering": True, "forcing": True, "fluency": True}
    primary = "steering"
    runner_class = LanguageSteeringRunner

    kind: Literal["language_steering"]
    corpus: Corpus = BibleCorpus(limit=10, offset=400)
    """Where prompts come from (any parallel corpus: the Bible offline, or a local `file`); each source language
    uses its own column."""
    prompt: str = "{text}"
    """Template with {text}, the corpus text in the source language (through the chat template when the spec asks)."""
    max_new_tokens: PositiveInt = 24
    """Greedy decoding budget (CLaS-Bench: 1024, far beyond 2 CPU cores)."""
    sources: list[LanguageCode] | None = None
    """Source languages (rows of the matrix); default: every spec language."""
    targets: dict[str, LanguageCode] | None = None
    """Condition -> target language; default: the `target` of the condition's `diffmean` intervention or the
    `language` of its `set` intervention (one target per condition)."""

    def needed_extras(self) -> tuple[Need, ...]:
        return (LANGUAGE_IDENTIFIER,)

    def check_references(self, spec, index):
        """Sources and targets are spec languages, targets name existing conditions, and every other condition
        steers toward exactly one language."""
        for j, code in enumerate(self.sources or []):
            if code not in spec.languages:
                raise FieldError(("tasks", index, "sources", j),
                                 f"language '{code}' is not in `languages` {spec.languages}")
        for name, code in (self.targets or {}).items():
            if name not in spec.resolved_conditions:
                raise FieldError(("tasks", index, "targets", name),
                                 f"unknown condition '{name}'; conditions: {sorted(spec.resolved_conditions)}")
            if code not in spec.languages:
                raise FieldError(("tasks", index, "targets", name),
                                 f"language '{code}' is not in `languages` {spec.languages}")
        for name, ids in spec.resolved_conditions.items():
            if name in (self.targets or {}):
                continue
            found = {spec.intervention(i).steering_target() for i in ids} - {None}
            if len(found) != 1:
                raise FieldError(("tasks", index),
                                 f"condition '{name}' steers toward {sorted(found) or 'no language'}; "
                                 f"language steering needs one target per condition: set `targets: {{{name}: LANG}}`")

    def report(self, key, task, run_dir):
        from ..report.steering import steering_matrix_figure

        steering_matrix_figure(key, task, run_dir / "figures" / f"{key}_matrix.png")
