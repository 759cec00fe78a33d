"""Which languages each part of a spec uses, checked against the offline corpora and the hub datasets.

These checks run at validation (no model, no network), so a language a corpus or dataset does not have
is one error naming the field, not a failure after the model is loaded. Each task kind checks its own data
(`TaskSpec.check_languages`).
"""

from __future__ import annotations

from ..data.languages import check_corpus
from .base import FieldError


def task_languages(spec, task) -> list[str]:
    """The languages a task evaluates: its own `languages:`, or the spec's (language steering names its
    `sources` instead, which must be among the spec's)."""
    own = task.own_languages()
    return list(own) if own is not None else list(spec.languages)


def all_languages(spec) -> tuple[str, ...]:
    """The spec's languages, then every task language not among them (row languages a plan accepts)."""
    out = list(spec.languages)
    for task in spec.tasks:
        out.extend(code for code in task_languages(spec, task) if code not in out)
    return tuple(out)


def check_languages(spec) -> None:
    """Raise FieldError for a task or corpus language the data cannot provide."""
    if spec.stats is not None:
        check_corpus(spec.stats.corpus, list(spec.languages), ("stats", "corpus"), ("languages",))
    for index, task in enumerate(spec.tasks):
        langs = task_languages(spec, task)
        field = ("tasks", index, "languages") if task.own_languages() is not None else ("languages",)
        if len(set(langs)) != len(langs):
            dup = next(code for code in langs if langs.count(code) > 1)
            raise FieldError(field, f"language '{dup}' is listed twice")
        task.check_languages(spec, index, langs, field)
