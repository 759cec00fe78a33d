"""Sweep runner: every grid point on each task's dev items, a choice per task from dev scores only, then base,
the chosen point and the baselines on the held-out test items.

Dev units live under `<run>/dev/` (units, samples, metrics.json), test units where a plain run puts them, so
resume works per (split, task, language, condition), and a widened grid reuses the finished points: the run
directory's identity leaves the grid out and each unit is named by a condition id that spells out its values.
The model is loaded once and statistics are computed once (by the caller); base runs once per split.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from ..compile.compiler import compile_plan
from ..compile.plan import Plan
from ..errors import CompileError, DataError
from ..records import MetricsDocument, atomic_write_json, validated
from ..spec.base import BASE_CONDITION
from ..spec.rows import FixedAnchor
from ..spec.run_spec import RunSpec
from ..spec.sweep import Expansion, SelectRule, effective, expand, grids
from ..tasks.base import DEV, TEST, check_disjoint, task_runners
from .evaluate import evaluate

DEV_DIR = "dev"


def compile_condition(expansion: Expansion, model, name: str, stats=None) -> Plan:
    """One condition of the expanded spec; a grid point that does not fit the model names itself and the sweep."""
    spec = expansion.spec
    try:
        return compile_plan(spec, model, name, stats)
    except CompileError as exc:
        if name not in {point.condition for point in expansion.points}:
            raise
        raise CompileError(f"sweep grid point '{name}' does not fit the model: {exc.what}",
                           where=f"{spec.place('sweep')}: sweep", fix=exc.fix) from None


def compile_sweep_plans(expansion: Expansion, model, stats=None) -> dict[str, Plan]:
    """Plans of base, every grid point and every baseline."""
    return {name: compile_condition(expansion, model, name, stats)
            for name in [BASE_CONDITION, *expansion.spec.resolved_conditions]}


def mean_score(per_language: dict, metric: str, languages: list[str]) -> float:
    values = [per_language[lang][metric] for lang in languages if lang in per_language]
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def choose(scores: dict[str, float], higher_is_better: bool) -> str:
    """Best finite score; ties and NaNs go to the earlier grid point (grid order is the dict's order)."""
    best, best_value = None, None
    for name, value in scores.items():
        if math.isnan(value):
            continue
        if best is None or (value > best_value if higher_is_better else value < best_value):
            best, best_value = name, value
    return best if best is not None else next(iter(scores))


def select(spec: RunSpec, expansion: Expansion, dev_document: dict, rule: SelectRule) -> dict:
    """Per task: mean dev score of base and every grid point, and the chosen point of each family."""
    anchor = spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None
    out = {}
    for runner in task_runners(spec, DEV):
        task = dev_document["tasks"][runner.key]
        metric = rule.metric or task["primary"]
        base = task["per_language"][BASE_CONDITION]
        example = next(iter(base.values()))
        if metric not in example:
            known = ", ".join(k for k, v in example.items() if isinstance(v, (int, float)))
            raise DataError(f"task {runner.key} has no metric '{metric}'",
                            where=f"{spec.place('select.metric')}: select.metric", fix=f"use one of {known}")
        direction = runner.task.higher_is_better(metric, runner.base_dir, runner.languages())
        higher = (task["higher_is_better"] if metric == task["primary"] else direction is not False) \
            if rule.goal == "auto" else rule.goal == "max"
        languages = [lang for lang in task["languages"] if rule.languages == "all" or lang != anchor]
        base_mean = mean_score(base, metric, languages)
        points = {}
        for point in expansion.points:
            score = mean_score(task["per_language"][point.condition], metric, languages)
            points[point.condition] = {"family": point.family, "values": point.values,
                                       "effective": {name: effective(spec, point, name)
                                                     for name in recorded_fields(spec, point)
                                                     if effective(spec, point, name) is not None},
                                       "mean": _finite(score), "delta": _finite(score - base_mean),
                                       "per_language": {lang: m.get(metric) for lang, m in
                                                        task["per_language"][point.condition].items()}}
        chosen = {family: choose({c: points[c]["mean"] if points[c]["mean"] is not None else float("nan")
                                  for c in members}, higher)
                  for family, members in expansion.families.items()}
        out[runner.key] = {"metric": metric, "higher_is_better": higher, "languages": languages,
                           "dev_items": runner.task.describe(DEV), "test_items": runner.task.describe(TEST),
                           "dev_n": {lang: m.get("n") for lang, m in base.items()},
                           "base": _finite(base_mean), "points": points, "chosen": chosen}
    return out


def recorded_fields(spec: RunSpec, point) -> tuple[str, ...]:
    """The fields the interventions of a grid point's condition record (`RECORDED_FIELDS`, e.g. CLAS's alpha, beta
    and gamma)."""
    by_id = {intervention.id: intervention for intervention in spec.interventions}
    return tuple(dict.fromkeys(name for ident in spec.resolved_conditions.get(point.family, [])
                               if ident in by_id for name in by_id[ident].RECORDED_FIELDS))


def _finite(value: float):
    return None if isinstance(value, float) and math.isnan(value) else value


def run_sweep(spec: RunSpec, model, stats, run_dir: Path, *, console: Console | None = None,
              save_plans: Callable[[dict], None] | None = None) -> dict:
    """Dev phase, selection, test phase; returns the test metrics document with a `sweep` section."""
    console = console or Console(stderr=True)
    expansion = expand(spec)
    rule = spec.select or SelectRule()
    base_dir = Path(spec.source).parent if spec.source else None
    for runner in task_runners(expansion.spec):  # before any model time: no dev item may be a test item
        known = list(runner.task.metric_directions(runner.base_dir, runner.languages()))
        if rule.metric is not None and rule.metric not in known:
            raise DataError(f"task {runner.key} has no metric '{rule.metric}'",
                            where=f"{spec.place('select.metric')}: select.metric",
                            fix=f"use one of {', '.join(known)}, or leave it out for each task's primary metric")
        check_disjoint(runner.task, list(spec.languages), base_dir)
    plans = compile_sweep_plans(expansion, model, stats)
    if save_plans is not None:
        save_plans(plans)
    points = [point.condition for point in expansion.points]
    console.print(f"sweep: {len(points)} grid point(s) on the dev items, then the chosen point per task, base and "
                  f"{len(expansion.baselines)} baseline(s) on the test items")

    start = time.perf_counter()
    dev_plans = {name: plans[name] for name in [BASE_CONDITION, *points]}
    dev_document = evaluate(expansion.spec, model, dev_plans, run_dir / DEV_DIR, console=console, split=DEV)
    dev_seconds = time.perf_counter() - start
    selection = select(spec, expansion, dev_document, rule)

    start = time.perf_counter()
    chosen = {key: list(dict.fromkeys(task["chosen"].values())) for key, task in selection.items()}
    test_names = [BASE_CONDITION, *expansion.baselines, *dict.fromkeys(c for cs in chosen.values() for c in cs)]
    test_plans = {name: plans[name] for name in test_names}
    only = {key: [*expansion.baselines, *names] for key, names in chosen.items()}
    document = evaluate(expansion.spec, model, test_plans, run_dir, console=console, split=TEST, only=only)
    test_seconds = time.perf_counter() - start

    document["sweep"] = {
        "grid": grids(spec.sweep), "rule": rule.model_dump(mode="json"),
        "points": [{"condition": p.condition, "family": p.family, "values": p.values} for p in expansion.points],
        "baselines": expansion.baselines, "dev_metrics": f"{DEV_DIR}/metrics.json", "tasks": selection,
        "timing_s": {"dev": round(dev_seconds, 3), "test": round(test_seconds, 3)},
    }
    atomic_write_json(run_dir / "metrics.json", validated(MetricsDocument, document))
    return document
