"""Before any model work: every task's data and the statistics corpus load for every language they use, and
every condition fits the model.

A language a dataset lacks, a missing local file or a bad column is then one error before the model is
loaded (minutes for an 8B model) and before a run directory is made. A task runner that needs the model's config
or tokenizer to check its input (the lens: a final norm the sites table knows, layers, a read position every prompt
has, answers that tokenize) defines `check_model(config, tokenizer)`; both are read here, without weights, only
when some runner has it. Every condition is compiled against the config (layers, sites, mask sizes), and when a
plan selects positions (patches), each task's requests are checked against them with the tokenizer and config.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..compile.plan import Plan
from ..data.corpora import load_corpus
from ..errors import ClasGraphError
from ..execution.patching import selects_positions
from ..interventions.base import CompileContext
from ..loading import load_config_for_spec, load_tokenizer_for_spec
from ..sites import architecture_for, dims_of
from ..spec.run_spec import RunSpec
from ..spec.sweep import expand
from ..tasks.base import task_runners
from .input_checks import check_unit_inputs
from .stats import existing_stats, find_cached
from .sweep import compile_condition


def check_task_data(spec: RunSpec, runs_root: Path | None = None, *, tasks: bool = True,
                    stats_corpus: bool = True) -> None:
    """Load what each task (`tasks`) and the statistics (`stats_corpus`, unless cached) will read, and with `tasks`
    check every condition against the model (`check_conditions_fit`); raise the user error naming the spec's
    file:line, the task and language."""
    base_dir = Path(spec.source).parent if spec.source else None
    if stats_corpus and spec.stats is not None and spec.stats.artifact is None and (
            runs_root is None or find_cached(spec, runs_root) is None):
        _named(lambda: load_corpus(spec.stats.corpus, spec.languages, base_dir),
               f"{spec.place('stats.corpus')}: stats.corpus")
    runners = task_runners(spec) if tasks else []
    for index, runner in enumerate(runners):
        where = f"tasks[{index}] ({runner.task.kind})"
        for language, load in runner.task.data_loads(runner.data_languages(), base_dir):
            _named(load, where if language is None else f"{where}, language '{language}'", spec, index)
    checked = [(index, runner) for index, runner in enumerate(runners) if runner.needs_model_check()]
    if checked:
        config = load_config_for_spec(spec)
        needs_tokenizer = any(runner.check_needs_tokenizer() for _, runner in checked)
        tokenizer = load_tokenizer_for_spec(spec) if needs_tokenizer else None
        for index, runner in checked:
            _named(functools.partial(runner.check_model, config, tokenizer),
                   f"tasks[{index}] ({runner.task.kind})", spec, index)
    if tasks and spec.tasks:
        check_conditions_fit(spec, runs_root)


def check_conditions_fit(spec: RunSpec, runs_root: Path | None = None) -> None:
    """Every condition (a sweep's grid points included) compiles against the model's config, and every position a
    plan selects exists in every task text, before the weights load. Conditions that need statistics not computed
    yet are compiled later; their explicit layers and sites are checked here."""
    config = load_config_for_spec(spec)
    expansion = expand(spec)
    stats = existing_stats(spec, runs_root) if spec.needs_stats and runs_root is not None else None
    conditions = expansion.spec.resolved_conditions
    if spec.needs_stats and stats is None:  # the conditions that need none are compiled and checked in full
        _check_layers_and_sites(expansion.spec, config)
        conditions = {name: ids for name, ids in conditions.items()
                      if not any(expansion.spec.intervention(ident).stats_fields() for ident in ids)}
    plans = {name: compile_condition(expansion, config, name, stats) for name in conditions}
    if selects_positions(list(plans.values())):
        _check_positions(expansion.spec, config, plans)


def _check_layers_and_sites(spec: RunSpec, config) -> None:
    architecture, dims = architecture_for(config), dims_of(config)
    used = {ident for ids in spec.resolved_conditions.values() for ident in ids}
    for index, intervention in enumerate(spec.interventions):
        if intervention.id not in used:
            continue
        context = CompileContext(spec, index, dims, None, architecture)
        if isinstance(getattr(intervention, "layers", None), list):
            context.layers()
        if isinstance(getattr(intervention, "site", None), str):
            context.check_site(intervention.site)


def _check_positions(spec: RunSpec, config, plans: dict[str, Plan]) -> None:
    """Each task's requests, built as the run builds them, against every plan's position selectors and sources:
    the tokenizer and the config are all they need."""
    tokenizer = load_tokenizer_for_spec(spec)
    check_unit_inputs(tokenizer, config, [(runner, language, plans) for runner in task_runners(spec)
                                          for language in runner.languages()])


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # a task's own field at the start of an error's `where`


def _named(load, field: str, spec: RunSpec | None = None, task: int | None = None) -> None:
    """Run `load`; a user error gets `field` (and, for a task's own field such as `position`, its file:line)."""
    try:
        load()
    except ClasGraphError as error:
        if spec is not None and task is not None:
            own = _FIELD.match(error.where or "")
            own = own.group() if own else ""
            place = spec.place(f"tasks[{task}].{own}" if own else f"tasks[{task}]")
            field = f"{place}: {field}"
        error.where = f"{field}: {error.where}" if error.where else field
        error.args = (error.message,)
        raise
