"""Evaluation runner: every (task, language, condition) unit, resumable, then the per-language report.

Each finished unit is written atomically (samples first, then the unit's metrics file, which marks it
done), so Ctrl-C or a crash loses at most the unit in progress and a rerun skips finished units.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..compile import Plan
from ..eval.metrics import paired_test
from ..records import atomic_write_json, atomic_write_text
from ..spec import BASE_CONDITION, FixedAnchor, RunSpec
from .tasks import TaskRunner, task_runners

METRICS_SCHEMA = 1


def unit_path(run_dir: Path, task_key: str, language: str, condition: str) -> Path:
    return run_dir / "units" / f"{task_key}_{language}_{condition}.json"


def samples_path(run_dir: Path, task_key: str, language: str, condition: str) -> Path:
    return run_dir / "samples" / f"{task_key}_{language}_{condition}.jsonl"


def run_unit(model, runner: TaskRunner, plan: Plan, language: str, run_dir: Path) -> dict:
    """Evaluate one unit (or load it when already finished); returns its metrics."""
    done = unit_path(run_dir, runner.key, language, plan.condition)
    if done.is_file():
        return json.loads(done.read_text())["metrics"]
    rows, metrics = runner.run(model, plan, language)
    atomic_write_text(samples_path(run_dir, runner.key, language, plan.condition),
                      "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    atomic_write_json(done, {"task": runner.key, "language": language, "condition": plan.condition,
                             "metrics": metrics})
    return metrics


def evaluate(spec: RunSpec, model, plans: dict[str, Plan], run_dir: Path, *, console: Console | None = None,
             split: str = "test", only: dict[str, list[str]] | None = None) -> dict:
    """Run all units (base first) and return the metrics document (also written to metrics.json).

    `split`: the task items to use (`dev` for a sweep's tuning items). `only`: task key -> the conditions to run
    on that task (default: every plan on every task; base is always run)."""
    console = console or Console(stderr=True)
    runners = task_runners(spec, split)
    units = [(runner, language, name) for runner in runners for language in runner.languages() for name in plans
             if only is None or name == BASE_CONDITION or name in only.get(runner.key, ())]
    results: dict = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("evaluation", total=len(units))
        for runner, language, name in units:
            progress.update(bar, description=escape(f"{runner.key} · {language} · {name}"))
            metrics = run_unit(model, runner, plans[name], language, run_dir)
            results.setdefault(runner.key, {}).setdefault(name, {})[language] = metrics
            progress.advance(bar)
    document = {"schema_version": METRICS_SCHEMA, "spec_name": spec.name,
                "anchor": spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None,
                "conditions": list(plans), "tasks": {}}
    for runner in runners:
        document["tasks"][runner.key] = summarize(runner, results[runner.key], document["anchor"])
    atomic_write_json(run_dir / "metrics.json", document)
    return document


def summarize(runner: TaskRunner, per_condition: dict, anchor: str | None) -> dict:
    """Per-language scores, deltas vs base, and mean/std/paired t-test over non-anchor languages."""
    primary = runner.primary
    base = {lang: m[primary] for lang, m in per_condition[BASE_CONDITION].items()}
    summary, deltas = {}, {}
    for name, by_language in per_condition.items():
        scores = {lang: m[primary] for lang, m in by_language.items()}
        deltas[name] = {lang: scores[lang] - base[lang] for lang in scores}
        summary[name] = _finite(paired_test(base, scores, anchor))
    return {"kind": runner.task.kind, "primary": primary, "higher_is_better": runner.higher_is_better,
            "languages": runner.languages(), "per_language": per_condition, "delta": deltas, "summary": summary}


def _finite(values: dict) -> dict:
    """JSON has no NaN: undefined statistics (fewer than two languages) become null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
