"""Before any model work: every task's data and the statistics corpus load for every language they use.

A language a dataset lacks, a missing local file or a bad column is then one error before the model is
loaded (minutes for an 8B model) and before a run directory is made. A task runner that needs the model's config
or tokenizer to check its input (the lens: a final norm the sites table knows, answers that tokenize) defines
`check_model(config, tokenizer)`; both are read here, without weights, only when some runner has it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..data.corpora import load_corpus
from ..errors import DataError
from ..loading import load_config_for_spec, load_tokenizer_for_spec
from ..spec.run_spec import RunSpec
from ..tasks.base import task_runners
from .stats import find_cached


def check_task_data(spec: RunSpec, runs_root: Path | None = None, *, tasks: bool = True,
                    stats_corpus: bool = True) -> None:
    """Load what each task (`tasks`) and the statistics (`stats_corpus`, unless cached) will read; raise
    DataError naming the task and language."""
    base_dir = Path(spec.source).parent if spec.source else None
    source = spec.source or "<spec>"
    if stats_corpus and spec.stats is not None and spec.stats.artifact is None and (
            runs_root is None or find_cached(spec, runs_root) is None):
        _named(lambda: load_corpus(spec.stats.corpus, spec.languages, base_dir), f"{source}: stats.corpus")
    runners = task_runners(spec) if tasks else []
    for index, runner in enumerate(runners):
        where = f"{source}: tasks[{index}] ({runner.task.kind})"
        for language, load in runner.task.data_loads(runner.data_languages(), base_dir):
            _named(load, where if language is None else f"{where}, language '{language}'")
    checked = [(index, runner) for index, runner in enumerate(runners) if runner.needs_model_check()]
    if checked:
        config, tokenizer = load_config_for_spec(spec), load_tokenizer_for_spec(spec)
        for index, runner in checked:
            _named(functools.partial(runner.check_model, config, tokenizer),
                   f"{source}: tasks[{index}] ({runner.task.kind})")


def _named(load, field: str) -> None:
    try:
        load()
    except DataError as error:
        error.where = f"{field}: {error.where}" if error.where else field
        error.args = (error.message,)
        raise
