"""The analysis of a sweep: which conditions it compares with base.

Those evaluated on the test items: the unswept baselines and each task's chosen grid point (each distinct point
once). The choice is read from metrics.json's `sweep` section, written when the test phase finishes; it came
from dev scores, and the analysis uses nothing else of the dev items. A task's relation (changes vs gains) uses
its own chosen point and the baselines, since those are the conditions its test metrics have.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..records import MetricsDocument, read_record
from ..spec.analysis import config_of
from ..spec.run_spec import RunSpec
from ..spec.sweep import SelectRule, expand

_FIX = "run `clas-graph run SPEC` first: it finishes the sweep (dev phase, choice, test phase), then runs the analysis"


def _wanted(spec: RunSpec) -> list[str]:
    """The spec's condition names the analysis asks for; a swept one stands for its chosen point(s)."""
    return list(config_of(spec).conditions or spec.resolved_conditions)


def candidate_conditions(spec: RunSpec) -> list[str]:
    """Before the choice is known: every condition the analysis could compare (to check layers early)."""
    expansion = expand(spec)
    wanted = set(_wanted(spec))
    return [*(name for name in expansion.baselines if name in wanted),
            *(point.condition for point in expansion.points if point.family in wanted)]


def recorded_choice(spec: RunSpec, metrics: dict | None, where: str) -> dict[str, dict[str, str]]:
    """{task: {family: chosen grid point}} from metrics.json; refuses a missing choice, or one made on another
    grid or rule (a rerun with the spec's grid has not finished, so that choice is not this spec's)."""
    sweep = (metrics or {}).get("sweep")
    if sweep is None:
        raise DataError("the analysis of a sweep compares each task's chosen grid point, but no choice is recorded "
                        "yet (the sweep's test phase has not finished)", where=where, fix=_FIX)
    rule = (spec.select or SelectRule()).model_dump(mode="json")
    if [p["condition"] for p in sweep["points"]] != [p.condition for p in expand(spec).points] or sweep["rule"] != rule:
        raise DataError("the recorded choice was made on another sweep grid or `select:` rule than the spec's",
                        where=where, fix=_FIX)
    return {key: dict(task["chosen"]) for key, task in sweep["tasks"].items()}


def chosen_conditions(spec: RunSpec, choice: dict[str, dict[str, str]]) -> tuple[list[str], dict[str, list[str]]]:
    """The analysed conditions (the baselines, then each distinct chosen point in task order) and, per task,
    those its relation uses (the baselines and its own chosen points)."""
    wanted = _wanted(spec)
    baselines = [name for name in expand(spec).baselines if name in wanted]
    per_task = {key: [*baselines, *(point for family, point in chosen.items() if family in wanted)]
                for key, chosen in choice.items()}
    conditions = list(dict.fromkeys([*baselines, *(name for names in per_task.values() for name in names)]))
    return conditions, per_task


def sweep_record(spec: RunSpec, choice: dict[str, dict[str, str]]) -> dict:
    """analysis.json's `sweep`: which point was analysed for which task ({task: {family: point}}), and the
    baselines analysed with them."""
    wanted = _wanted(spec)
    return {"chosen": {key: {family: point for family, point in chosen.items() if family in wanted}
                       for key, chosen in choice.items()},
            "baselines": [name for name in expand(spec).baselines if name in wanted]}


def check_recorded(spec: RunSpec, runs_root: Path, run_path: Path | None) -> None:
    """`clas-graph analyze` on a sweep: the run directory it will use has the choice (before any model work)."""
    path = run_path / "metrics.json" if run_path is not None else None
    metrics = read_metrics(path) if path is not None and path.is_file() else None
    recorded_choice(spec, metrics, str(path or runs_root))


def read_metrics(path: Path) -> dict:
    """A run's metrics.json, refused in one line when it is damaged (the evaluation rewrites it from its units)."""
    return read_record(MetricsDocument, path).model_dump(mode="json", exclude_unset=True)
