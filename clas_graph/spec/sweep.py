"""Sweeps and selection rules: a grid over fields of named interventions, expanded into ordinary conditions.

A sweep is spec-level: `expand(spec)` returns a copy of the spec whose `interventions` hold one variant
per grid point (id `clas[alpha=-1]`) and whose `conditions` replace every condition that uses a swept
intervention by one condition per grid point (`clas[alpha=-1,beta=0.4]`). The compiler and the traces
never see a sweep. Conditions that use no swept intervention are kept unchanged: they are the baselines.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Tag, ValidationError

from .base import FieldError, StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from .run_spec import RunSpec

SweepGrid = dict[str, list[Any]]
"""`INTERVENTION_ID.FIELD -> [values]`; the grid is the product of the lists, in the order written."""

Sweep = Annotated[
    Annotated[SweepGrid, Tag("grid")] | Annotated[list[SweepGrid], Tag("grids")],
    Discriminator(lambda value: "grids" if isinstance(value, list) else "grid" if isinstance(value, dict) else None,
                  custom_error_type="sweep",
                  custom_error_message="a sweep is a mapping KEY: [values] or a list of them"),
]
"""One grid, or a list of grids whose points are joined (e.g. beta-only and gamma-only curves, as the paper's
Fig. 6)."""

_KEY = re.compile(r"^(?P<id>[A-Za-z_][A-Za-z0-9_\-]*)\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)$")
_NOT_SWEEPABLE = {"kind", "id"}
# Characters a generated condition id may hold: it is used in unit and sample file names.
_SAFE = re.compile(r"^[A-Za-z0-9_.+\-]+$")


class SelectRule(StrictModel):
    """How a sweep's grid point is chosen, per task, from dev-split scores only (never the test items).

    Rule: the grid point with the best mean of `metric` over `languages` on the task's dev items; ties go to
    the earlier grid point. The paper tunes alpha per model and task on 200 samples per language; its
    aggregate is not stated, the mean over non-anchor languages (its tables' Avg.) is our default.
    """

    metric: str | None = None
    """Metric to optimise; default: the task's primary metric (accuracy, f1, top1, loss, gold_logprob)."""
    languages: Literal["non_anchor", "all"] = "non_anchor"
    """Languages averaged: the non-anchor ones (default, as the paper's Avg.) or all."""
    goal: Literal["auto", "max", "min"] = "auto"
    """`auto`: the task's direction for its primary metric; min for loss, perplexity and kl_from_base."""


@dataclass(frozen=True)
class SweepPoint:
    """One expanded condition: the family (original condition) it comes from and its swept values."""

    condition: str
    family: str
    values: dict[str, Any]
    """`INTERVENTION_ID.FIELD -> value` for the keys this condition's interventions have."""


@dataclass
class Expansion:
    spec: "RunSpec"
    """The spec with variants and expanded conditions (what compile and the runners see)."""
    points: list[SweepPoint] = field(default_factory=list)
    """Every grid-point condition, in grid order."""
    baselines: list[str] = field(default_factory=list)
    """Conditions that use no swept intervention (evaluated on the test items only)."""

    @property
    def families(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for point in self.points:
            out.setdefault(point.family, []).append(point.condition)
        return out

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(key for point in self.points for key in point.values))


def grids(sweep) -> list[dict[str, list]]:
    """A sweep as a list of grids (a single mapping is one grid)."""
    if sweep is None:
        return []
    return [sweep] if isinstance(sweep, dict) else list(sweep)


def _where(sweep, index: int, key: str, *rest) -> tuple:
    return ("sweep", key, *rest) if isinstance(sweep, dict) else ("sweep", index, key, *rest)


def format_value(value: Any) -> str:
    """A value as it appears in a condition id: 1.0 -> '1', -0.5 -> '-0.5', [13, 14] -> '13+14'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    return str(value)


def check_dev_slices(spec: "RunSpec") -> None:
    """No task's dev items, as the spec names them, may overlap its test items."""
    for index, task in enumerate(spec.tasks):
        task.check_dev(index)


def check_sweep(spec: "RunSpec") -> None:
    """Validate `sweep:` and `select:` against the spec's interventions; raises FieldError naming the key."""
    check_dev_slices(spec)
    if spec.select is not None and spec.sweep is None:
        raise FieldError(("select",), "a selection rule needs a `sweep:` to choose from; add one or drop `select`")
    by_id = {iv.id: iv for iv in spec.interventions}
    used = {ident for ids in spec.resolved_conditions.values() for ident in ids}
    if spec.sweep is not None and not grids(spec.sweep):
        raise FieldError(("sweep",), "the sweep lists no grid; give at least one `KEY: [values]` mapping")
    for index, grid in enumerate(grids(spec.sweep)):
        if not grid:
            raise FieldError(("sweep",) if isinstance(spec.sweep, dict) else ("sweep", index),
                             "empty sweep grid; give at least one `INTERVENTION_ID.FIELD: [values]`, e.g. "
                             "`clas.alpha: [-1, 0.5, 1]`")
        for key, values in grid.items():
            match = _KEY.match(key)
            if match is None:
                raise FieldError(_where(spec.sweep, index, key),
                                 f"sweep key '{key}' must be INTERVENTION_ID.FIELD, e.g. 'clas.alpha'")
            ident, name = match["id"], match["field"]
            intervention = by_id.get(ident)
            if intervention is None:
                guess = difflib.get_close_matches(ident, list(by_id), n=1)
                hint = f"; did you mean '{guess[0]}'?" if guess else ""
                raise FieldError(_where(spec.sweep, index, key),
                                 f"sweep key '{key}': unknown intervention id '{ident}'{hint} "
                                 f"(defined ids: {', '.join(by_id) or 'none'})")
            fields = [f for f in type(intervention).model_fields if f not in _NOT_SWEEPABLE]
            if name not in fields:
                guess = difflib.get_close_matches(name, fields, n=1)
                hint = f"did you mean '{guess[0]}'? " if guess else ""
                raise FieldError(_where(spec.sweep, index, key),
                                 f"sweep key '{key}': intervention '{ident}' ({intervention.kind}) has no field "
                                 f"'{name}'; {hint}its fields: {', '.join(fields)}")
            if ident not in used:
                raise FieldError(_where(spec.sweep, index, key),
                                 f"sweep key '{key}': intervention '{ident}' is in no condition, so sweeping it "
                                 "changes nothing; add it to `conditions:`")
            if not values:
                raise FieldError(_where(spec.sweep, index, key),
                                 f"sweep key '{key}' has an empty list of values; give at least one value")
            for position, value in enumerate(values):
                _check_value(spec.sweep, index, key, position, value, intervention, name)


def _check_value(sweep, index, key, position, value, intervention, name) -> None:
    loc = _where(sweep, index, key, position)
    scalars = (bool, int, float, str)
    if not (isinstance(value, scalars) or isinstance(value, list) and all(isinstance(v, scalars) for v in value)):
        raise FieldError(loc, f"sweep key '{key}': value {value!r} is not a number, string, boolean or list of them; "
                              "to compare structured settings (e.g. `{auto: bridge}`), define two interventions")
    try:
        variant = type(intervention).model_validate({**dict(intervention), name: value})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise FieldError(loc, f"sweep key '{key}': value {value!r} is not valid for {intervention.kind} "
                              f"field '{name}': {message}") from None
    text = format_value(getattr(variant, name))
    if not _SAFE.match(text):
        raise FieldError(loc, f"sweep key '{key}': value {value!r} cannot be part of a condition id (it is used in "
                              "file names); use letters, digits, '.', '_', '-' or '+'")


def _label(family: str, values: dict[str, Any], ids: set[str]) -> str:
    """`clas[alpha=-1,beta=0.4]` when one intervention is swept; `both[clas.alpha=1,steer.coefficient=2]` else."""
    if not values:
        return family
    short = len(ids) == 1
    parts = [f"{key.split('.', 1)[1] if short else key}={format_value(v)}" for key, v in values.items()]
    return f"{family}[{','.join(parts)}]"


def expand(spec: "RunSpec") -> Expansion:
    """The spec with one condition per grid point in place of each condition that uses a swept intervention."""
    if spec.sweep is None:
        return Expansion(spec, [], list(spec.resolved_conditions))
    points_by_grid = []
    for grid in grids(spec.sweep):
        keys = list(grid)
        points_by_grid += [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]
    by_id = {iv.id: iv for iv in spec.interventions}
    variants: dict[str, Any] = {}
    conditions: dict[str, list[str]] = {}
    points: list[SweepPoint] = []
    baselines: list[str] = []
    for family, ids in spec.resolved_conditions.items():
        swept_ids = {key.split(".", 1)[0] for point in points_by_grid for key in point} & set(ids)
        if not swept_ids:
            conditions[family] = list(ids)
            baselines.append(family)
            continue
        seen: set[str] = set()
        for raw in points_by_grid:
            # Normalised values (validated by the intervention model), so 1 and 1.0 give one id.
            values = {}
            for key, value in raw.items():
                ident, name = key.split(".", 1)
                if ident in ids:
                    values[key] = getattr(type(by_id[ident]).model_validate({**dict(by_id[ident]), name: value}), name)
            label = _label(family, values, swept_ids)
            if label in seen:
                continue
            seen.add(label)
            members = []
            for ident in ids:
                own = {key.split(".", 1)[1]: v for key, v in values.items() if key.split(".", 1)[0] == ident}
                if not own:
                    members.append(ident)
                    continue
                variant_id = _label(ident, {f"{ident}.{k}": v for k, v in own.items()}, {ident})
                if variant_id not in variants:
                    variants[variant_id] = type(by_id[ident]).model_validate(
                        {**dict(by_id[ident]), **own, "id": ident}).model_copy(update={"id": variant_id})
                members.append(variant_id)
            conditions[label] = members
            points.append(SweepPoint(label, family, values))
    expanded = spec.model_copy(update={"interventions": [*spec.interventions, *variants.values()],
                                       "conditions": conditions})
    return Expansion(expanded, points, baselines)


def effective(spec: "RunSpec", point: SweepPoint, name: str) -> Any:
    """The value of an intervention field at a grid point (swept or the intervention's own), or None."""
    for key, value in point.values.items():
        if key.split(".", 1)[1] == name:
            return value
    for ident in spec.resolved_conditions.get(point.family, []):
        intervention = next((iv for iv in spec.interventions if iv.id == ident), None)
        if intervention is not None and hasattr(intervention, name):
            return getattr(intervention, name)
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
