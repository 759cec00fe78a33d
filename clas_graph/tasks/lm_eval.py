"""lm-evaluation-harness tasks as a task kind: one lm-eval task per language, under base and every condition.

lm-eval builds the requests (its prompt templates, few-shot sampling with its seed, filters), clas_graph's
executor scores them for all conditions (`PlansLM`: loglikelihood batches share their common prefix across
conditions), and lm-eval's `process_results` and aggregation make every metric, stderr included. Metrics keep
lm-eval's names and scale (acc in 0-1), so they compare with published lm-eval tables; a metric of a filter other
than `none` is named `metric,filter` as lm-eval names it.

lm-eval is an optional extra: this module imports it only when a task is checked or run.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import json
import string
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from ..data.files import local_file, read_columns
from ..data.languages import FLORES_CODES, check_dataset
from ..errors import DataError, SpecError
from ..spec.base import FieldError, LanguageCode, NewField, StrictModel
from .base import DEV, TEST, TaskRunner, TaskSpec, check_split
from .lm_eval_code import sandbox_templates, tasks_code, unsafe_template
from .lm_eval_columns import missing_columns

SCORABLE = ("loglikelihood", "multiple_choice", "loglikelihood_rolling", "generate_until")
"""lm-eval output types whose requests clas_graph scores (greedy generation only)."""
PLACEHOLDERS = ("lang", "flores")
"""What a task-name pattern may contain: `{lang}` (the spec's code) and `{flores}` (its FLORES-200 code)."""
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
"""Local file extension -> the `datasets` builder lm-eval reads it with."""
EXTRA = "pip install 'clas-graph[lm-eval]'"
SPLIT_FIELDS = ("training_split", "validation_split", "test_split", "fewshot_split")

DataFiles = dict[LanguageCode, str | dict[str, str]]


def lm_eval_installed() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


@functools.lru_cache(maxsize=4)
def task_manager_for(include_path: str | Path | None = None):
    """lm-eval's task index (indexing its ~15k task files takes seconds: one per include path and process), with
    its templates rendered in Jinja's sandbox from then on."""
    from lm_eval.tasks import TaskManager

    sandbox_templates()
    return TaskManager(include_path=str(include_path) if include_path else None)


def chat_options(apply_chat_template: bool, system_instruction: str | None, fewshot_as_multiturn: bool | None) -> dict:
    """simple_evaluate's chat arguments as lm-eval's CLI derives them (multi-turn few-shot follows the template);
    none when off, so plain prompts are built exactly as before."""
    out: dict = {"system_instruction": system_instruction} if system_instruction is not None else {}
    if apply_chat_template:
        multiturn = True if fewshot_as_multiturn is None else fewshot_as_multiturn
        out |= {"apply_chat_template": True, "fewshot_as_multiturn": multiturn}
    return out


def check_chat_template(tokenizer, *, where: str) -> None:
    """A chat template is asked for: the tokenizer must have one."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the tokenizer has no chat template", where=where,
                        fix="drop `apply_chat_template`, or use a model whose tokenizer has one")


def check_task_names(names, task_manager, *, where: str) -> None:
    """Every name is an lm-eval task or group the task manager knows; one line with a 'did you mean' otherwise."""
    known = task_manager.all_tasks
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError(f"lm-eval has no task '{name}'{hint}", where=where,
                            fix="list tasks with `lm_eval ls tasks`, or add yours with `include_path: DIR`")


def metric_key(metric: str, filter_name: str) -> str:
    """The name a unit reports a metric under: lm-eval's `metric,filter`, without the default filter `none`."""
    return metric if filter_name == "none" else f"{metric},{filter_name}"


def config_hash(config: dict) -> str:
    """SHA-256 of a task's resolved lm-eval config (its canonical JSON), as recorded in each unit."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


class LmEvalDev(StrictModel):
    """lm-eval items a sweep tunes on. Default (ours): the task's `validation_split` when the task evaluates a
    separate `test_split`, else the documents of the evaluated split after the test subset (`limit` of them)."""

    split: str | None = None
    """Split to draw from; default as above."""
    data_files: DataFiles | None = None
    """Local files of the dev split per language (a path, or {split: path}); default: the task's own files."""
    limit: PositiveInt = 200
    """Documents per language (the paper tunes on 200 samples per language)."""


class LmEvalRunner(TaskRunner):
    def needs_model_check(self) -> bool:
        return bool(self.task.apply_chat_template)

    def check_model(self, config, tokenizer) -> None:
        check_chat_template(tokenizer, where="apply_chat_template")

    def evaluate(self, lm, language: str, bootstrap_iters: int | None = None) -> dict:
        """lm-eval's evaluation of the unit's task with `lm` as the model (its results dict)."""
        from lm_eval.evaluator import simple_evaluate

        task = self.task
        return simple_evaluate(
            model=lm, tasks=[task.config_for(language, self.split, self.base_dir)],
            task_manager=task_manager_for(task.include_dir(self.base_dir)), num_fewshot=task.num_fewshot,
            bootstrap_iters=task.bootstrap_iters if bootstrap_iters is None else bootstrap_iters,
            fewshot_random_seed=task.fewshot_seed, log_samples=True, verbosity="ERROR", **task.chat_options(),
            **task.selection(language, self.split, self.base_dir))

    def request_languages(self, language: str):
        from .lm_eval_scoring import request_text

        def row_languages(requests):
            return self.row_languages([request_text(request) for request in requests], language)
        return row_languages

    def requests(self, unit):
        """lm-eval's requests of the unit, built and encoded by lm-eval itself (no model; the placeholder answers'
        metrics are dropped, and no bootstrap runs on them)."""
        from .lm_eval_scoring import RequestsOf

        lm = RequestsOf(unit.tokenizer, unit.config, unit.plans or {"": None},
                        self.request_languages(unit.language), batch_size=self.spec.batch_size,
                        max_length=self.task.max_length)
        self.evaluate(lm, unit.language, bootstrap_iters=0)
        return lm.recorded

    def sources(self, unit):
        return {}  # token rows carry no parallel texts: the requests' check refuses a patch from a language

    def run_many(self, model, plans, language):
        """lm-eval drives the unit: it asks `PlansLM` for its requests' answers, and scores them itself."""
        from lm_eval import __version__ as lm_eval_version

        from .lm_eval_scoring import PlansLM

        task = self.task
        name = task.task_name(language)
        lm = PlansLM(model, plans, self.request_languages(language), batch_size=self.spec.batch_size,
                     max_length=task.max_length)
        split = task.evaluated_split(language, self.split, self.base_dir)
        out = {}
        for condition in plans:
            lm.condition = condition  # the first condition scores loglikelihood requests for all of them
            results = self.evaluate(lm, language)
            metrics = unit_metrics(results, name)
            metrics["lm_eval"] = {"version": lm_eval_version, "task": name,
                                  "task_version": results["versions"].get(name),
                                  "config_hash": config_hash(results["configs"][name]),
                                  "n_shot": results["n-shot"].get(name), "split": split}
            rows = [sample_row(sample, split) for sample in results["samples"][name]]
            out[condition] = self.annotate(rows, [row["text"] for row in rows], language), metrics
        return out


def unit_metrics(results: dict, name: str) -> dict:
    """One lm-eval task's results as a unit's metrics: `metric` (or `metric,filter`) and `metric_stderr`, with
    lm-eval's values; stderr lm-eval could not compute ('N/A') is null."""
    out: dict[str, Any] = {}
    for key, value in results["results"][name].items():
        if key == "alias" or "," not in key:
            continue
        metric, filter_name = key.split(",", 1)
        out[metric_key(metric, filter_name)] = value if isinstance(value, (int, float)) else None
    out["n"] = results["n-samples"][name]["effective"]
    return out


def sample_row(sample: dict, split: str) -> dict:
    """lm-eval's logged sample as a JSON row: the document, its requests, the responses and per-sample metrics."""
    arguments = sample.get("arguments") or [("",)]
    row = {"id": f"{split}:{sample['doc_id']}", "doc_id": sample["doc_id"],
           "text": next((part for part in arguments[0] if isinstance(part, str) and part), ""),
           **{k: v for k, v in sample.items() if k != "doc_id"}}
    return json.loads(json.dumps(row, ensure_ascii=False, default=str))


class LmEvalTask(TaskSpec):
    """lm-evaluation-harness tasks, one per language (`xnli_de`, `belebele_deu_Latn`, ...): lm-eval's requests,
    clas_graph's conditions, lm-eval's metrics. Needs the extra `clas-graph[lm-eval]`."""

    runner_class = LmEvalRunner

    kind: Literal["lm_eval"]
    tasks: dict[LanguageCode, str] | str
    """lm-eval task per language (`{de: xnli_de, fr: xnli_fr}`), or a pattern with `{lang}` (the spec's code,
    `xnli_{lang}`) or `{flores}` (its FLORES-200 code, `belebele_{flores}`)."""
    languages: list[LanguageCode] | None = Field(None, min_length=1)
    """Languages to evaluate; default: the keys of `tasks` when it is a map, else the spec's `languages`."""
    limit: PositiveInt | None = 200
    """Documents per language: lm-eval's `--limit` (its first N documents); null takes the whole split."""
    num_fewshot: NonNegativeInt | None = None
    """lm-eval's `--num_fewshot`; null: the task's own default (0 when it has none), as lm-eval does."""
    fewshot_seed: int = 1234
    """Seed of lm-eval's few-shot sampler (lm-eval's default)."""
    bootstrap_iters: NonNegativeInt = 100000
    """lm-eval's bootstrap iterations for the stderr of non-mean aggregations (its default; 0 skips them)."""
    metric: str | None = None
    """The metric tables, deltas and the paired t-test use (lm-eval's name, `metric,filter` for a filter other than
    `none`); default: the first metric of the task's `metric_list` (ours)."""
    data_files: DataFiles | None = None
    """Local files per language in the hub dataset's columns, instead of the hub: a path (the split the task
    evaluates) or {split: path} (add the few-shot split when `num_fewshot` > 0). .json/.jsonl/.csv/.parquet."""
    config: dict[str, Any] = {}
    """lm-eval task-config fields to override in every language's task (e.g. `{doc_to_text: ...}`)."""
    include_path: str | None = None
    """A folder of your own lm-eval task YAML files (relative to the spec's folder), as lm-eval's --include_path."""
    max_length: PositiveInt | None = None
    """lm-eval's context window; default: as lm-eval's `hf` model derives it from the model config (not the
    spec's `max_length`, which is for clas_graph's own tasks)."""
    dev: LmEvalDev | None = None
    """Dev items for a sweep's selection (see LmEvalDev for the default)."""
    apply_chat_template: Annotated[bool, NewField()] = False
    """lm-eval's `--apply_chat_template`: wrap each prompt in the tokenizer's chat template. Off by default, as in
    lm-eval and its published numbers; independent of the spec's `model.chat_template`, which is for
    clas_graph's own tasks."""
    system_instruction: Annotated[str | None, NewField()] = None
    """lm-eval's `--system_instruction`: a system message before each prompt."""
    fewshot_as_multiturn: Annotated[bool | None, NewField()] = None
    """lm-eval's `--fewshot_as_multiturn`: few-shot examples as alternating chat turns; null: on exactly when
    `apply_chat_template` is (lm-eval's CLI rule)."""
    trust_remote_code: Annotated[bool, NewField()] = False
    """Allow the task's files from `include_path` to run their Python (`!function module.name` imports
    `module.py` next to the file), as lm-eval's `trust_remote_code`. Off: such a task is refused before any work.
    lm-eval's own tasks (installed with it) need no opt-in."""

    @model_validator(mode="after")
    def _check(self) -> "LmEvalTask":
        if not lm_eval_installed():
            raise ValueError(f"the lm_eval task kind needs lm-evaluation-harness: {EXTRA}")
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise FieldError(("fewshot_as_multiturn",), "few-shot examples as chat turns need a chat template; set "
                             "`apply_chat_template: true`, or drop `fewshot_as_multiturn`")
        if isinstance(self.tasks, str):
            fields = {field for _, field, _, _ in string.Formatter().parse(self.tasks) if field is not None}
            unknown = sorted(fields - set(PLACEHOLDERS))
            if unknown or not fields:
                raise FieldError(("tasks",), f"task pattern {self.tasks!r} " + (
                    f"has unknown placeholder(s) {{{'}, {'.join(unknown)}}}" if unknown else "has no placeholder")
                    + "; use {lang} (e.g. xnli_{lang}) or {flores} (e.g. belebele_{flores}), or a map {LANG: TASK}")
        return self

    # --- the spec side ------------------------------------------------------------------------------------

    def chat_options(self) -> dict:
        """simple_evaluate's chat arguments (none when off: lm-eval's defaults, so plain prompts stay as before)."""
        return chat_options(self.apply_chat_template, self.system_instruction, self.fewshot_as_multiturn)

    def own_languages(self) -> list[str] | None:
        if self.languages is not None:
            return self.languages
        return list(self.tasks) if isinstance(self.tasks, dict) else None

    def task_name(self, language: str) -> str:
        if isinstance(self.tasks, dict):
            return self.tasks[language]
        return self.tasks.format(lang=language, flores=FLORES_CODES.get(language, ""))

    def check_languages(self, spec, index, languages, field):
        for language in languages:
            if isinstance(self.tasks, dict) and language not in self.tasks:
                raise FieldError(("tasks", index, "tasks"), f"no lm-eval task for language '{language}' (has: "
                                 f"{', '.join(self.tasks)}); add `{language}: TASK`, or drop '{language}' from "
                                 f"{'.'.join(str(p) for p in field)}")
            if isinstance(self.tasks, str) and "{flores}" in self.tasks and language not in FLORES_CODES:
                raise FieldError(("tasks", index, "tasks"), f"no FLORES-200 code known for language '{language}'; "
                                 "give the task names as a map {LANG: TASK}")
        # local files cover every language (which languages the hub has is lm-eval's to say, at preflight)
        check_dataset(self.data_files, None, "", (), languages, ("tasks", index), field)
        if self.dev is not None:
            check_dataset(self.dev.data_files, None, "", (), languages, ("tasks", index, "dev"), field)

    def include_dir(self, base_dir) -> str | None:
        if self.include_path is None:
            return None
        folder = Path(self.include_path).expanduser()
        return str(folder if folder.is_absolute() or base_dir is None else Path(base_dir) / folder)

    # --- lm-eval's configs --------------------------------------------------------------------------------

    def raw_config(self, language: str, base_dir) -> dict:
        """The task's lm-eval config with `config` applied, from lm-eval's index (no data read); raises SpecError
        for an unknown task, a group, or requests clas_graph cannot score."""
        name = self.task_name(language)
        manager = task_manager_for(self.include_dir(base_dir))
        where = f"tasks (language '{language}')"
        check_task_names([name], manager, where=where)
        entry = manager.task_index[name]
        if entry.kind.name != "TASK":
            raise SpecError(f"lm-eval's '{name}' is a {entry.kind.name.lower()}, not one task", where=where,
                            fix="name one lm-eval task per language (e.g. xnli_de, not xnli)")
        config = {**(entry.cfg or {}), **self.config}
        if not self.trust_remote_code:
            check_no_code([name], manager, where="trust_remote_code",
                          fix="set `trust_remote_code: true` on this task if you trust that code")
        unsafe = unsafe_template(config)  # templates render in Jinja's sandbox, trusted or not
        if unsafe is not None:
            raise SpecError(f"lm-eval task '{name}': the template of {unsafe[0]} reads a private attribute "
                            f"(`_...` or the `attr` filter), which templates may not: {unsafe[1][:80]!r}",
                            where="config", fix="read document fields only, e.g. {{premise}}")
        check_scorable(name, config, where)
        return config

    def evaluated_split(self, language: str, split: str, base_dir=None) -> str:
        config = self.raw_config(language, base_dir)
        own = config.get("test_split") or config.get("validation_split")
        if split == TEST:
            return own
        dev = self.dev or LmEvalDev()
        if dev.split is not None:
            return dev.split
        validation = config.get("validation_split")
        return validation if config.get("test_split") and validation and validation != own else own

    def _dev_in_test_split(self, language: str, base_dir) -> bool:
        """Whether dev items come from the evaluated split itself (then: the documents after the test subset)."""
        dev = self.dev or LmEvalDev()
        same_split = self.evaluated_split(language, DEV, base_dir) == self.evaluated_split(language, TEST, base_dir)
        return same_split and dev.data_files is None

    def config_for(self, language: str, split: str, base_dir) -> str:
        """What lm-eval's TaskManager loads for one language and split: the task's name, or with `config`, local
        files or dev items a YAML file that `include`s the task's own file and overrides those fields (lm-eval's
        own way to derive a task: its templates and `!function`s resolve as in the original)."""
        check_split(split)
        name = self.task_name(language)
        overrides = dict(self.config)
        evaluated = self.evaluated_split(language, split, base_dir)
        dev = self.dev or LmEvalDev()
        files = (dev.data_files or {}).get(language) if split == DEV and dev.data_files else None
        files = files or (self.data_files or {}).get(language)
        if files is not None:
            overrides.update(local_dataset(files, evaluated, base_dir, f"data_files.{language}"))
            provided = overrides["dataset_kwargs"]["data_files"]
            config = self.raw_config(language, base_dir)
            # a split the files do not give is not read (lm-eval's few-shot sampler falls back to the others)
            overrides.update({key: None for key in SPLIT_FIELDS if config.get(key) and config[key] not in provided
                              and key not in overrides})
        if split == DEV:
            overrides["test_split"] = evaluated
        if not overrides:
            return name
        source = task_manager_for(self.include_dir(base_dir)).task_index[name].yaml_path
        if source is None:
            raise SpecError(f"lm-eval task '{name}' is defined in Python, so its config cannot be overridden",
                            where="config", fix="drop `config`, `data_files` and `dev` for this task")
        return derived_task_file({"include": str(source), "task": name, **overrides})

    def selection(self, language: str, split: str, base_dir) -> dict:
        """simple_evaluate's document selection: the first `limit` documents, or for dev items from the test's
        own split the documents after the test subset."""
        if split == TEST:
            return {"limit": self.limit}
        dev = self.dev or LmEvalDev()
        if not self._dev_in_test_split(language, base_dir):
            return {"limit": dev.limit}
        start = self.limit or 0
        total = self.document_count(language, DEV, base_dir)
        return {"samples": {self.task_name(language): list(range(start, min(start + dev.limit, total)))}}

    def document_count(self, language: str, split: str, base_dir) -> int:
        return _document_count(self.config_for(language, split, base_dir), self.include_dir(base_dir),
                               self.task_name(language))

    # --- what the runners ask -----------------------------------------------------------------------------

    def item_ids(self, languages, language, split, base_dir):
        check_split(split)
        total = self.document_count(language, split, base_dir)
        selection = self.selection(language, split, base_dir)
        if "samples" in selection:
            indices = next(iter(selection["samples"].values()))
            if self.limit is None or not indices:
                raise DataError(f"lm-eval task {self.task_name(language)!r} has no documents left for dev items "
                                f"after the test subset ({total} in its split)",
                                where=f"dev (language '{language}')",
                                fix="set `limit` below the split's size, or give dev.split / dev.data_files")
        else:
            limit = selection["limit"]
            indices = range(total if limit is None else min(limit, total))
        return [f"{self.evaluated_split(language, split, base_dir)}:{index}" for index in indices]

    def data_loads(self, languages, base_dir):
        def load(language):
            self.raw_config(language, base_dir)  # known name, one task, scorable: before reading any data
            directions = self.metric_directions(base_dir, [language])
            metric = self.primary_metric(base_dir, [language])
            if metric not in directions:
                raise SpecError(f"lm-eval task {self.task_name(language)!r} reports no metric '{metric}'",
                                where="metric", fix=f"use one of {', '.join(directions)}")
            self.check_columns(language, base_dir)
            return self.item_ids(languages, language, TEST, base_dir)

        return [(language, functools.partial(load, language)) for language in languages]

    def check_columns(self, language: str, base_dir) -> None:
        """Local files (the task's and the dev items') hold every column the task's config reads (a missing one
        would silently become literal text, e.g. the target "label"): DataError naming the file, the config field
        and the column."""
        dev = (self.dev.data_files or {}).get(language) if self.dev is not None else None
        sources = [(files, split, field) for files, split, field in (
            ((self.data_files or {}).get(language), TEST, f"data_files.{language}"),
            (dev, DEV, f"dev.data_files.{language}")) if files is not None]
        if not sources:
            return
        config = self.raw_config(language, base_dir)
        for files, split, where in sources:
            paths = local_dataset(files, self.evaluated_split(language, split, base_dir), base_dir,
                                  where)["dataset_kwargs"]["data_files"]
            for name, path in paths.items():
                columns = read_columns(Path(path), typed=True, name=f"{where} ({name})")
                missing = missing_columns(config, columns)
                if missing:
                    field, column = missing[0]
                    raise DataError(f"lm-eval task {self.task_name(language)!r} reads column '{column}' ({field}), "
                                    f"which {path} lacks (its columns: {', '.join(map(str, columns)) or 'none'})",
                                    where=where, fix=f"add the column '{column}' to the file, or point {field} at "
                                                     f"one of its columns with `config: {{{field}: COLUMN}}`")

    def metric_directions(self, base_dir=None, languages=()) -> dict[str, bool]:
        """From the first language's task `metric_list`: each metric under each filter, with its
        `higher_is_better` or lm-eval's registered direction."""
        first = (list(languages) or self.own_languages() or [None])[0]
        if first is None:
            raise SpecError("an lm_eval task with a name pattern needs its languages to know its metrics",
                            where="languages", fix="list the languages it evaluates")
        return _directions(json.dumps(self.raw_config(first, base_dir), sort_keys=True, default=str))

    def primary_metric(self, base_dir=None, languages=()) -> str:
        return self.metric or next(iter(self.metric_directions(base_dir, languages)))

    def describe(self, split: str) -> str:
        check_split(split)
        pattern = self.tasks if isinstance(self.tasks, str) else ", ".join(self.tasks.values())
        if split == TEST:
            return f"lm-eval {pattern}: the first {self.limit or 'all'} documents of the evaluated split"
        dev = self.dev or LmEvalDev()
        source = f"split `{dev.split}`" if dev.split else "the validation split (or the test split's documents " \
                                                          "after the test subset)"
        return f"lm-eval {pattern}: {dev.limit} documents per language from {source}"


def check_no_code(names, task_manager, *, where: str, fix: str) -> None:
    """Refuse tasks whose files (outside the installed lm-eval) would run Python (`!function`) when loaded."""
    found = tasks_code(task_manager, names)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SpecError(f"lm-eval task '{names[0]}' would run Python from your files: {found[0].describe()}{more}",
                        where=where, fix=fix)


def check_scorable(name: str, config: dict, where: str) -> None:
    """Refuse, before any data or model work, requests clas_graph cannot score: another output type, sampling,
    repeated samples."""
    output_type = config.get("output_type", "generate_until" if "class" not in config else None)
    if output_type is not None and output_type not in SCORABLE:
        raise SpecError(f"lm-eval task '{name}' has output type '{output_type}', which clas_graph cannot score",
                        where=where, fix=f"choose a task whose output_type is one of {', '.join(SCORABLE)}")
    if (config.get("generation_kwargs") or {}).get("do_sample"):
        raise SpecError(f"lm-eval task '{name}' samples its generations (do_sample: true); clas_graph decodes "
                        "greedily", where=where, fix="override it: `config: {generation_kwargs: {do_sample: false}}`")
    if int(config.get("repeats", 1) or 1) != 1:
        raise SpecError(f"lm-eval task '{name}' repeats each request {config['repeats']} times (sampled answers); "
                        "clas_graph's greedy responses would be identical", where=where,
                        fix="choose a task without `repeats`, or override it: `config: {repeats: 1}`")


def local_dataset(files: str | dict[str, str], evaluated: str, base_dir, where: str) -> dict:
    """lm-eval config fields that read local files in the hub's columns: one path is the evaluated split."""
    by_split = {evaluated: files} if isinstance(files, str) else dict(files)
    paths = {split: str(local_file(path, base_dir, tuple(BUILDERS), name=f"{where} ({split})"))
             for split, path in by_split.items()}
    builders = {BUILDERS[Path(path).suffix.lower()] for path in paths.values()}
    if len(builders) != 1:
        raise DataError(f"the files of one task mix formats ({', '.join(sorted(builders))})", where=where,
                        fix="give every split of a language in one format")
    return {"dataset_path": builders.pop(), "dataset_name": None, "dataset_kwargs": {"data_files": paths}}


@functools.lru_cache(maxsize=1)
def _derived_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="clas_graph_lm_eval_"))


def derived_task_file(config: dict) -> str:
    """A YAML task file holding `config` (one per content, in a folder of this process)."""
    text = yaml.safe_dump(config, sort_keys=True, allow_unicode=True)
    path = _derived_folder() / f"{config['task']}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file():
        path.write_text(text, encoding="utf-8")
    return str(path)


@functools.lru_cache(maxsize=256)
def _document_count(task: str, include_path: str | None, name: str) -> int:
    """Documents in the evaluated split of one lm-eval task (a name or a YAML file; reads its data: the hub or
    local files)."""
    try:
        loaded = task_manager_for(include_path).load([task])
        (task,) = loaded["tasks"].values()
        return len(task.eval_docs)
    except (SpecError, DataError):
        raise
    except Exception as error:  # the hub unreachable, a dataset or split that does not exist, bad columns
        raise DataError(f"lm-eval could not load task '{name}' or its data: {type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}", where="tasks",
                        fix="give local files in the hub dataset's columns with `data_files: {LANG: PATH}`, "
                            "or check the network and the task's dataset") from None


@functools.lru_cache(maxsize=64)
def _directions(config_json: str) -> dict[str, bool]:
    from lm_eval.api.registry import is_higher_better

    config = json.loads(config_json)
    filters = [item["name"] for item in config.get("filter_list") or []] or ["none"]
    out = {}
    for filter_name in filters:
        for item in config.get("metric_list") or []:
            metric = item["metric"]
            direction = item.get("higher_is_better")
            if direction is None:
                direction = is_higher_better(metric)
            out[metric_key(metric, filter_name)] = direction is not False
    if not out:
        raise SpecError(f"lm-eval task '{config.get('task')}' lists no metrics clas_graph can read",
                        where="tasks", fix="choose a task with a `metric_list`")
    return out
