"""Parallel texts for patches during evaluation: a row's source is the same task item in the source language,
as the task itself would feed it to the model (its prompt, cut or template included).

Tasks mark whether their items are parallel (`TaskSpec.patchable`: one item id names the same item in every
language, by construction or as the data's translations; checked at validation). For a (task, language) unit
whose conditions patch from languages S, the texts the task's runner feeds the model for each S are captured
once, without running the model: the runner is run for S with the probe plan's ops left out, and its first model
call stops with its inputs (`execution.context.checking_inputs`, the stop the input checks before any unit use).
The task's item ids of both languages must agree; row k of the unit's texts is item k, and its source is item k's
text in S (rows are matched by their text; rows the task feeds that are not its own items, and identical texts
after the first, get no source, which is an error only where a patch touches them).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Iterator

from ..compile.plan import Plan
from ..errors import DataError
from ..execution.context import InputsChecked, checking_inputs, parallel_texts
from ..tasks.base import TaskRunner, item_ids

CAPTURE = "<parallel texts>"
"""The condition name of the capture run (no spec condition can have it, so no runner cache holds it)."""


def source_languages(plans: dict[str, Plan]) -> tuple[str, ...]:
    return tuple(sorted({code for plan in plans.values() for source in plan.sources().values()
                         for code in source.languages}))


@contextlib.contextmanager
def task_parallel_texts(model, runner: TaskRunner, plans: dict[str, Plan], language: str) -> Iterator[None]:
    """The unit's calls find their rows' parallel texts in the task's own items (a no-op without such patches)."""
    wanted = source_languages(plans)
    if not wanted:
        yield
        return
    probe = next(iter(plans.values()))  # any plan: the capture leaves its ops out
    languages = runner.data_languages()
    own = item_ids(runner.task, languages, language, runner.split, runner.base_dir)
    for code in wanted:
        if code != language and item_ids(runner.task, languages, code, runner.split, runner.base_dir) != own:
            raise DataError(f"{runner.key}'s items in {language} and {code} differ, so they are not parallel",
                            where=f"tasks ({runner.key})", fix="patch from a language with the same items")
    captured: dict[str, list[str]] = {}

    def texts_of(code: str) -> list[str]:
        if code not in captured:
            captured[code] = _capture(model, runner, probe, code)
        return captured[code]

    def provide(texts, row_languages, codes):
        places = []
        for text, row_language in zip(texts, row_languages):
            place = None
            for home in dict.fromkeys((language, row_language)):
                if home in languages and text in texts_of(home):
                    place = texts_of(home).index(text)
                    break
            places.append(place)
        return {code: [None if place is None else texts_of(code)[place] for place in places] for code in codes}

    with parallel_texts(provide):
        yield


def _capture(model, runner: TaskRunner, probe: Plan, code: str) -> list[str]:
    """The texts the runner feeds the model for language `code`, in its order: the runner runs with the probe's
    ops left out (so no source is needed) up to its first model call, which stops with its inputs."""
    with checking_inputs():
        try:
            runner.run_many(model, {CAPTURE: replace(probe, ops=())}, code)
        except InputsChecked as stopped:
            return stopped.rows
    raise DataError(f"{runner.key} fed the model no texts in {code}, so there is nothing to patch from",
                    where=f"tasks ({runner.key})", fix="patch from a language the task evaluates")
