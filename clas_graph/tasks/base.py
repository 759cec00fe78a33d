"""What every task kind shares: the spec model's behaviour, the runner that evaluates one (task, language) for
several conditions, and the split names.

A kind's spec model (a pydantic model with a `kind` literal) says what the task needs from data and languages
(checked at validation and before any model work); its runner, made by `TaskSpec.runner`, evaluates units.
Scores are in percent (accuracy, F1, exact match, top-1) as in the paper's tables; lm_loss in nats per token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import Field

from ..compile.plan import Plan
from ..data.templates import render
from ..errors import DataError
from ..eval.langid import detect, primary
from ..execution.requests import Answers, Request, source_languages
from ..spec.base import LanguageCode, StrictModel
from ..spec.rows import DetectedAnchor, FixedAnchor

if TYPE_CHECKING:
    from ..records.results import TaskResult
    from ..spec.run_spec import RunSpec

TEST = "test"
"""The task's items as its spec gives them."""
DEV = "dev"
"""Items a sweep tunes on, never overlapping the test items."""
SPLITS = (TEST, DEV)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@dataclass(frozen=True)
class Unit:
    """One (task, language) unit as its requests see it: the conditions' plans, the tokenizer and the model's
    config (no weights)."""

    language: str
    plans: dict[str, Plan]
    tokenizer: Any
    config: Any


class TaskSpec(StrictModel):
    """Base of every task kind's spec model. Subclasses set `metrics`, `primary` and the methods below."""

    metrics: ClassVar[dict[str, bool]] = {}
    """Metric name -> whether higher is better, for every metric a unit reports."""
    primary: ClassVar[str] = ""
    """The metric tables, deltas, the t-test and a sweep's default selection use."""
    parallel: ClassVar[bool] = False
    """Whether one item id names the same item in every language (then one language's ids stand for all)."""
    translated_ids: ClassVar[bool] = False
    """Whether items with the same id are translations of each other in the task's data (XNLI, XQuAD), so a patch
    may read a row's parallel text; local files need not keep that, so each unit compares the ids first."""

    @property
    def patchable(self) -> bool:
        """Whether a patch may take a row's values from the same item in another language."""
        return self.parallel or self.translated_ids

    runner_class: ClassVar[type["TaskRunner"]]
    """The runner that evaluates this kind's units."""

    def runner(self, spec: "RunSpec", key: str, base_dir: Path | None, split: str = TEST) -> "TaskRunner":
        return self.runner_class(task=self, spec=spec, key=key, base_dir=base_dir, split=split)

    def own_languages(self) -> list[str] | None:
        """The task's own `languages:` (None: the spec's)."""
        return getattr(self, "languages", None)

    def check_languages(self, spec: "RunSpec", index: int, languages: list[str], field: tuple) -> None:
        """At validation: raise FieldError for a language the task's data cannot provide."""

    def check_references(self, spec: "RunSpec", index: int) -> None:
        """At validation: raise FieldError for a language or condition the task names that the spec lacks."""

    def check_dev(self, index: int) -> None:
        """At validation: raise FieldError when the dev items named in the spec overlap the test items."""

    def item_ids(self, languages: list[str], language: str, split: str, base_dir: Path | None) -> list[str]:
        """Ids of the items the task evaluates in `language` for `split` (no model needed)."""
        raise NotImplementedError

    def describe(self, split: str) -> str:
        """Where a split's items come from, in words (for metrics.json and summary.md)."""
        raise NotImplementedError

    def data_loads(self, languages: list[str], base_dir: Path | None) -> list[tuple[str | None, Callable]]:
        """What reading the test items takes, to run before any model work: (language, load) per language, or
        (None, load) for data read for every language at once. Each `load()` raises DataError."""
        return [(language, functools.partial(self.item_ids, languages, language, TEST, base_dir))
                for language in languages]

    def report(self, key: str, task: "TaskResult", run_dir: Path) -> None:
        """Task-specific figures from the task's part of metrics.json, typed (default: none)."""

    def metric_directions(self, base_dir: Path | None = None, languages: list[str] = ()) -> dict[str, bool]:
        """Metric name -> whether higher is better, for every metric a unit reports (default: `metrics`; a kind
        whose metrics depend on its configuration overrides it; `base_dir`: the spec's folder, `languages`: the
        task's)."""
        return self.metrics

    def primary_metric(self, base_dir: Path | None = None, languages: list[str] = ()) -> str:
        """The metric tables, deltas, the t-test and a sweep's default selection use (default: `primary`)."""
        return self.primary

    def higher_is_better(self, metric: str, base_dir: Path | None = None, languages: list[str] = ()) -> bool | None:
        """The metric's direction (None: a metric this kind does not know)."""
        return self.metric_directions(base_dir, languages).get(metric)


class LanguagesField(StrictModel):
    """The `languages:` field of the tasks that evaluate a list of languages."""

    languages: list[LanguageCode] | None = Field(None, min_length=1)
    """Languages this task evaluates; default: the spec's `languages`. They may differ from the statistics'
    (e.g. XNLI's 15 vs XQuAD's 12): CLAS's masks are language-independent and act on any row language; a
    per-language intervention (int_mu, per-language DiffMean) needs statistics in every language it touches."""


def item_ids(task: TaskSpec, languages: list[str], language: str, split: str, base_dir=None) -> list[str]:
    """Ids of the items `task` evaluates in `language` for `split`."""
    check_split(split)
    return task.item_ids(languages, language, split, base_dir)


def check_disjoint(task: TaskSpec, languages: list[str], base_dir=None) -> None:
    """Raise DataError if any dev item id of the task is also a test item id (in any language)."""
    for language in languages[:1] if task.parallel else languages:
        test = set(item_ids(task, languages, language, TEST, base_dir))
        shared = [i for i in item_ids(task, languages, language, DEV, base_dir) if i in test]
        if shared:
            raise DataError(f"{len(shared)} dev item(s) of {task.kind} in {language!r} are also test items "
                            f"(e.g. {shared[0]!r})", where=f"tasks ({task.kind}).dev",
                            fix="choose dev items from another split or slice")


@dataclass
class TaskRunner:
    """One task of a spec, evaluated unit by unit: per language, every condition's rows and metrics.
    State (loaded data, pooled vectors, detected languages) is kept across units."""

    task: TaskSpec
    spec: "RunSpec"
    key: str
    base_dir: Path | None
    _cache: dict = field(default_factory=dict)
    split: str = TEST
    """`test`: the task's items; `dev`: the disjoint items a sweep tunes on."""

    @property
    def primary(self) -> str:
        return self.task.primary_metric(self.base_dir, self.languages())

    @property
    def higher_is_better(self) -> bool:
        return self.task.higher_is_better(self.primary, self.base_dir, self.languages()) is not False

    @property
    def anchor(self) -> str | None:
        return self.spec.anchor.language if isinstance(self.spec.anchor, FixedAnchor) else None

    def languages(self) -> list[str]:
        """The languages this task reports: its own `languages:`, or the spec's."""
        return self.spec.task_languages(self.task)

    def data_languages(self) -> list[str]:
        """The languages whose data the task reads (what preflight loads)."""
        return self.languages()

    def options(self) -> dict:
        return {"batch_size": self.spec.batch_size, "max_length": self.spec.max_length}

    def needs_model_check(self) -> bool:
        """Whether preflight should read the model's config and tokenizer (no weights) for `check_model(config,
        tokenizer)`, which a runner defines when its input can only be checked against them."""
        return callable(getattr(self, "check_model", None))

    def check_needs_tokenizer(self) -> bool:
        """Whether `check_model` reads the tokenizer (loading a large one takes seconds); if not it gets None."""
        return True

    def cached(self, key, make: Callable[[], Any]) -> Any:
        """`make()` once per runner for `key` (loaded items, built rows), kept across its units."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def templated(self, tokenizer, text: str) -> str:
        """Apply the tokenizer's chat template when the spec asks for it and the tokenizer has one."""
        if self.spec.model.chat_template == "none" or not getattr(tokenizer, "chat_template", None):
            return text
        templated = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)
        bos = tokenizer.bos_token or ""
        return templated[len(bos):] if bos and templated.startswith(bos) else templated  # the tokenizer adds BOS

    # A unit, as requests: what it needs from the model (`requests`, then `more_requests` that depend on their
    # answers), and its rows and metrics from the answers (`score`). No model is needed to build requests.

    def requests(self, unit: Unit) -> list[Request]:
        """What the unit needs from the model, built from the task's data, the tokenizer and the config."""
        raise NotImplementedError

    def more_requests(self, unit: Unit, requests: dict[str, Request], answers: Answers) -> list[Request]:
        """Requests built from earlier answers (e.g. a score of the generated text); default: none."""
        return []

    def score(self, unit: Unit, requests: dict[str, Request], answers: Answers) -> dict[str, tuple[list[dict], dict]]:
        """{condition: (sample rows, metrics)} from every request (by name) and its answers."""
        raise NotImplementedError

    def new_request(self, name: str, ids, languages, **fields) -> Request:
        """A request with the spec's batch size and maximum length."""
        return Request(name, tuple(ids), tuple(languages), batch_size=self.spec.batch_size,
                       max_length=self.spec.max_length, **fields)

    def source_texts(self, language: str, tokenizer, config) -> dict[str, str]:
        """Each item's text in `language` as the task feeds it to the model (its prompt, cut or template
        included), by item id: what a patch from `language` reads. Default: the rows of the unit's first request."""
        first = self.requests(Unit(language, {}, tokenizer, config))[0]
        return dict(zip(first.ids, first.rows))

    def sources(self, unit: Unit) -> dict[str, dict[str, str]]:
        """The source texts of every language the unit's plans patch from (none without such patches); the
        task's items must be the same in both languages."""
        wanted = source_languages(unit.plans)
        if not wanted:
            return {}
        languages = self.data_languages()
        own = item_ids(self.task, languages, unit.language, self.split, self.base_dir)
        for code in wanted:
            if code != unit.language and item_ids(self.task, languages, code, self.split, self.base_dir) != own:
                raise DataError(f"{self.key}'s items in {unit.language} and {code} differ, so they are not parallel",
                                where=f"tasks ({self.key})", fix="patch from a language with the same items")
        return {code: self.source_texts(code, unit.tokenizer, unit.config) for code in wanted}

    def check(self, unit: Unit) -> None:
        """The unit's inputs against its plans, before any model work (see `check_requests`)."""
        from ..execution.answers import check_requests  # tasks load without torch; checking needs it

        check_requests(unit.tokenizer, unit.plans, self.requests(unit), self.sources(unit))

    def run_many(self, model, plans: dict[str, Plan], language: str) -> dict[str, tuple[list[dict], dict]]:
        """Every condition of `plans` on this language: {condition: (rows, metrics)}. The requests are answered
        for all conditions at once, so they share each batch's common prefix."""
        from ..execution.answers import answer_requests  # tasks load without torch; answering needs it

        unit = Unit(language, dict(plans), model.tokenizer, model._module.config)
        cache = self._cache.setdefault("answers", {})
        sources = self.sources(unit)
        requests = {request.name: request for request in self.requests(unit)}
        answers = answer_requests(model, unit.plans, list(requests.values()), sources, cache)
        more = {request.name: request for request in self.more_requests(unit, requests, answers)}
        if more:
            answers.update(answer_requests(model, unit.plans, list(more.values()), sources, cache))
        return self.score(unit, {**requests, **more}, answers)

    def run(self, model, plan: Plan, language: str) -> tuple[list[dict], dict]:
        """One condition's unit."""
        return self.run_many(model, {plan.condition: plan}, language)[plan.condition]

    # Row languages: the data's label, or detected from the text (`anchor: {kind: detected}`).

    def row_languages(self, texts, language: str) -> list[str]:
        """The language each row is run as: its label, or with a detected anchor what the identifier finds."""
        return row_languages_of(self.spec, texts, [language] * len(texts), self._cache.setdefault("detected", {}))

    def annotate(self, rows: list[dict], texts, language: str) -> list[dict]:
        """With a detected anchor, record each row's detected, labelled and used language in its sample."""
        if not isinstance(self.spec.anchor, DetectedAnchor):
            return rows
        cache = self._cache.setdefault("detected", {})
        for row, code in zip(rows, detected_languages(texts, cache)):
            row.update(detected_language=code, labelled_language=language,
                       row_language=used_language(self.spec, code, language))
        return rows


class ItemsRunner(TaskRunner):
    """A runner whose task reads its items per language and split (`task.items(...)`: XNLI, XQuAD) and asks about
    each through the task's prompt template (`prompt_fields` fills it)."""

    def examples(self, language: str) -> list:
        return self.cached(("examples", language), lambda: self.task.items(language, self.split, self.base_dir))

    def prompt_fields(self, example) -> dict[str, str]:
        raise NotImplementedError

    def prompt_request(self, unit: Unit, **fields) -> Request:
        """The request of every item's prompt (chat template applied when the spec asks), named `prompts`;
        `fields`: the readout or `max_new_tokens`."""
        examples = self.examples(unit.language)
        prompts = [self.templated(unit.tokenizer, render(self.task.prompt, **self.prompt_fields(example)))
                   for example in examples]
        return self.new_request("prompts", [example.id for example in examples],
                                self.row_languages(prompts, unit.language), texts=tuple(prompts), **fields)


def anchor_language(spec: "RunSpec") -> str:
    """The fixed anchor's language; with a detected anchor, the language unrecognised rows fall back to."""
    return spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else spec.languages[0]


def detected_languages(texts, cache: dict) -> list[str | None]:
    """The language identifier's answer per text (`cache`: text -> code, kept by the caller across calls)."""
    missing = [text for text in dict.fromkeys(texts) if text not in cache]
    cache.update(zip(missing, detect(missing)))
    return [cache[text] for text in texts]


def used_language(spec: "RunSpec", detected: str | None, label: str) -> str:
    """The language a row runs as under a detected anchor: the detected code when it is one of the spec's
    languages ('pt' finds a spec's 'pt-BR'), else the anchor or the row's label (`anchor.unknown`)."""
    by_primary = {primary(code): code for code in spec.languages}
    if detected in by_primary:
        return by_primary[detected]
    return spec.anchor.language if spec.anchor.unknown == "anchor" else label


def row_languages_of(spec: "RunSpec", texts, labels: list[str], cache: dict) -> list[str]:
    """Each row's language: its label, or with `anchor: {kind: detected}` the detected language (see
    `used_language`)."""
    if not isinstance(spec.anchor, DetectedAnchor):
        return list(labels)
    return [used_language(spec, code, label) for code, label in zip(detected_languages(texts, cache), labels)]


def task_runners(spec: "RunSpec", split: str = TEST) -> list[TaskRunner]:
    """One runner per task of the spec for `split`; keys are the task kind, numbered when a kind repeats."""
    base_dir = Path(spec.source).parent if spec.source else None
    kinds = [task.kind for task in spec.tasks]
    return [task.runner(spec, task.kind if kinds.count(task.kind) == 1 else f"{task.kind}{index}", base_dir, split)
            for index, task in enumerate(spec.tasks)]
