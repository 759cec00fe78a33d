"""Evaluation runner: every (task, language, condition) unit, resumable, then the per-language report.

The loop is per (task, language): all unfinished conditions run together (`TaskRunner.run_many`), so
each batch computes the layers the conditions share only once (see clas_graph.shared). Each finished
unit is written atomically (samples first, then the unit's metrics file, which marks it done), so
Ctrl-C or a crash loses at most the (task, language) in progress and a rerun skips finished units.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..compile.plan import Plan
from ..errors import DataError
from ..eval.metrics import paired_test
from ..records import (
    METRICS_SCHEMA,
    MetricsDocument,
    UnitRecord,
    atomic_write_bytes,
    atomic_write_json,
    file_sha256,
    jsonl_text,
    read_json,
    sha256_hex,
    strict_json,
    validated,
    warn_damaged,
)
from ..spec.base import BASE_CONDITION
from ..spec.rows import FixedAnchor
from ..spec.run_spec import RunSpec
from ..tasks.base import TaskRunner, task_runners
from .input_checks import check_unit_inputs


def unit_path(run_dir: Path, task_key: str, language: str, condition: str) -> Path:
    return run_dir / "units" / f"{task_key}_{language}_{condition}.json"


def samples_path(run_dir: Path, task_key: str, language: str, condition: str) -> Path:
    return run_dir / "samples" / f"{task_key}_{language}_{condition}.jsonl"


def run_units(model, runner: TaskRunner, plans: dict[str, Plan], language: str, run_dir: Path) -> dict[str, dict]:
    """Evaluate every condition's unit of one (task, language) together, loading finished ones; {condition: metrics}."""
    metrics: dict[str, dict] = {}
    todo: dict[str, Plan] = {}
    for name, plan in plans.items():
        finished = _finished_metrics(run_dir, runner, language, name)
        if finished is not None:
            metrics[name] = finished
        else:
            todo[name] = plan
    if todo:
        results = runner.run_many(model, todo, language)
        for name, (rows, unit_metrics) in results.items():
            check_finite(runner, language, name, unit_metrics)
            samples = jsonl_text(rows).encode("utf-8")
            atomic_write_bytes(samples_path(run_dir, runner.key, language, name), samples)
            # the unit file marks the unit done and records what its samples file must be
            atomic_write_json(unit_path(run_dir, runner.key, language, name), validated(UnitRecord, {
                "task": runner.key, "language": language, "condition": name, "metrics": unit_metrics,
                "samples": {"sha256": sha256_hex(samples), "rows": len(rows)}}))
            metrics[name] = unit_metrics
    return {name: metrics[name] for name in plans}


def check_finite(runner: TaskRunner, language: str, condition: str, metrics: dict) -> None:
    """A unit whose primary metric is NaN or infinite is not finished: the run stops, naming the unit."""
    value = metrics.get(runner.primary)
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(
            f"{runner.primary} is {value}: the model produced non-finite numbers (damaged weights, or a dtype that "
            "overflows, e.g. float16 activations)", where=f"unit (task {runner.key}, language {language}, "
                                                          f"condition {condition})",
            fix="check the weights (for the embedded model, delete its converted folder so it is converted again) "
                "or load the model in float32/bfloat16 (`model: {dtype: float32}`), then rerun; finished units "
                "are kept")


def _finished_metrics(run_dir: Path, runner: TaskRunner, language: str, condition: str, *,
                      report: bool = True) -> dict | None:
    """A finished unit's metrics, or None when the unit must be (re)computed: no unit file, or one that cannot be
    trusted (truncated, edited, a non-finite or missing primary metric, another unit's content, or a samples file
    that is not the one it records). Damage is said on stderr when `report`."""
    done = unit_path(run_dir, runner.key, language, condition)
    if not done.is_file():
        return None
    unit = read_json(done)
    problem = _unit_problem(unit, run_dir, runner, language, condition)
    if problem is None:
        return unit["metrics"]
    if report:
        warn_damaged(done, f"{problem}; recomputing the unit")
    return None


def _unit_problem(unit, run_dir: Path, runner: TaskRunner, language: str, condition: str) -> str | None:
    """Why a unit file cannot be trusted, or None."""
    try:
        record = UnitRecord.model_validate(unit)
    except ValidationError:
        return "not a unit record (truncated or edited)"
    if (record.task, record.language, record.condition) != (runner.key, language, condition):
        return "it records another unit"
    if runner.primary not in record.metrics:
        return f"its primary metric {runner.primary} is missing"
    value = record.metrics[runner.primary]  # null: undefined (e.g. no items), as written
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                              or not math.isfinite(value)):
        return f"its primary metric {runner.primary} is not a finite number"
    if record.samples is None:  # written before units recorded their samples: nothing more to check
        return None
    samples = samples_path(run_dir, runner.key, language, condition)
    if file_sha256(samples) != record.samples.sha256:
        return f"its samples file {samples.name} is missing or not the one it records (sha256 differs)"
    return None


def evaluate(spec: RunSpec, model, plans: dict[str, Plan], run_dir: Path, *, console: Console | None = None,
             split: str = "test", only: dict[str, list[str]] | None = None) -> dict:
    """Run all units (base first) and return the metrics document (also written to metrics.json).

    `split`: the task items to use (`dev` for a sweep's tuning items). `only`: task key -> the conditions to run
    on that task (default: every plan on every task; base is always run)."""
    console = console or Console(stderr=True)
    runners = task_runners(spec, split)

    def chosen(runner) -> dict[str, Plan]:
        return {name: plan for name, plan in plans.items()
                if only is None or name == BASE_CONDITION or name in only.get(runner.key, ())}

    groups = [(runner, language, chosen(runner)) for runner in runners for language in runner.languages()]
    check_unit_inputs(model.tokenizer, model._module.config, [(runner, language, {
        name: plan for name, plan in group.items()
        if _finished_metrics(run_dir, runner, language, name, report=False) is None})
        for runner, language, group in groups])
    results: dict = {runner.key: {} for runner in runners}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("evaluation", total=sum(len(group) for _, _, group in groups))
        for runner, language, group in groups:
            progress.update(bar, description=escape(f"{runner.key} · {language} · {len(group)} conditions"))
            for name, metrics in run_units(model, runner, group, language, run_dir).items():
                results[runner.key].setdefault(name, {})[language] = metrics
            progress.advance(bar, len(group))
    document = {"schema_version": METRICS_SCHEMA, "spec_name": spec.name,
                "anchor": spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None,
                "conditions": list(plans), "tasks": {}}
    for runner in runners:
        document["tasks"][runner.key] = summarize(runner, results[runner.key], document["anchor"])
    atomic_write_json(run_dir / "metrics.json", validated(MetricsDocument, document))
    return document


def summarize(runner: TaskRunner, per_condition: dict, anchor: str | None) -> dict:
    """Per-language scores, deltas vs base, and mean/std/paired t-test over non-anchor languages."""
    primary = runner.primary
    base = {lang: m[primary] for lang, m in per_condition[BASE_CONDITION].items()}
    summary, deltas = {}, {}
    for name, by_language in per_condition.items():
        scores = {lang: m[primary] for lang, m in by_language.items()}
        deltas[name] = {lang: scores[lang] - base[lang] for lang in scores}
        summary[name] = strict_json(paired_test(base, scores, anchor))  # undefined statistics: null
    return {"kind": runner.task.kind, "primary": primary, "higher_is_better": runner.higher_is_better,
            "languages": runner.languages(), "per_language": per_condition, "delta": deltas, "summary": summary}

