"""Spec + model config -> Plan. All checks against the model's sizes happen here, before any forward."""

from __future__ import annotations

from dataclasses import replace

from ..errors import CompileError
from ..interventions.base import CompileContext, spec_where
from ..sites import architecture_for, dims_of
from ..spec.base import BASE_CONDITION
from ..spec.run_spec import RunSpec
from .languages import cover_languages
from .plan import SITE_ORDER, Plan, SetNeurons, SourceRows


def compile_plan(spec: RunSpec, model, condition: str | None = None, stats=None) -> Plan:
    """Compile one condition of `spec` against `model` (nnsight model, HF model or HF config).

    `condition=None` picks the spec's only condition; `"base"` gives an empty plan. `stats` (a
    `StatsArtifact`) is needed by `{from_stats: ...}` masks and `{auto: bridge}` layers.
    Raises `clas_graph.CompileError` naming the spec field and the model's sizes.
    """
    conditions = spec.resolved_conditions
    if condition is None:
        if len(conditions) != 1:
            names = ", ".join(conditions) or "none"
            raise CompileError(
                f"the spec defines {len(conditions)} conditions ({names})",
                where=spec_where(spec, "conditions"), fix="pass condition=NAME (or use compile_plans for all)",
            )
        condition = next(iter(conditions))
    if condition != BASE_CONDITION and condition not in conditions:
        raise CompileError(f"unknown condition '{condition}'; the spec defines: {', '.join(conditions)}",
                           where=spec_where(spec, "conditions"), fix=f"use one of them, or `{BASE_CONDITION}`")
    config = _config_of(model)
    architecture = architecture_for(config)
    dims = dims_of(config)
    ids = [] if condition == BASE_CONDITION else conditions[condition]
    _check_stats(spec, stats, dims, ids)
    ops = []
    for order, ident in enumerate(ids):
        index = next(i for i, iv in enumerate(spec.interventions) if iv.id == ident)
        ops.extend((op, order) for op in _compile_intervention(spec, index, dims, stats, architecture))
    # nnsight needs module values in execution order: layer, then site, then spec order.
    ops.sort(key=lambda pair: (pair[0].layer, SITE_ORDER[pair[0].site], pair[1]))
    _check_conflicts(spec, [op for op, _ in ops])
    languages = spec.all_languages  # the statistics' languages first: per-language tables index them
    ops = cover_languages(spec, [op for op, _ in ops], languages)
    return Plan(
        condition=condition,
        model_type=dims.model_type,
        architecture=architecture,
        dims=dims,
        languages=languages,
        ops=tuple(_with_source_conditions(spec, model, condition, stats, ops)),
    )


def _with_source_conditions(spec: RunSpec, model, condition: str, stats, ops: list) -> list:
    """A source `{condition: C}` runs C's ops on its source rows: they join the plan restricted to those rows,
    ahead of the condition's own ops at each layer and site (a patch reads the source's values after C's ops
    at that site). Base has no ops."""
    extra = []
    for key, source in {k: s for op in ops for k, s in op.sources().items()}.items():
        if source.condition is None or source.condition == BASE_CONDITION:
            continue
        if source.condition == condition:
            raise CompileError(f"condition '{condition}' takes patch values from itself",
                               where=spec_where(spec, "conditions"), fix="patch from base or another condition")
        extra += [replace(op, intervention=f"{key}/{op.intervention}", rows=SourceRows(key, op.rows))
                  for op in compile_plan(spec, model, source.condition, stats).ops]
    if not extra:
        return ops
    order = [(op, -1) for op in extra] + [(op, 0) for op in ops]  # sort is stable: each keeps its own order
    order.sort(key=lambda pair: (pair[0].layer, SITE_ORDER[pair[0].site], pair[1]))
    return [op for op, _ in order]


def compile_plans(spec: RunSpec, model, stats=None) -> dict[str, Plan]:
    """Every condition of the spec, `base` first."""
    names = [BASE_CONDITION, *spec.resolved_conditions]
    return {name: compile_plan(spec, model, name, stats) for name in names}


def _check_stats(spec: RunSpec, stats, dims, ids: list[str]) -> None:
    """Statistics are there when the condition's interventions (`ids`) need them, and fit the model."""
    if stats is None:
        if any(spec.intervention(ident).stats_fields() for ident in ids):
            raise CompileError(
                "the spec takes masks or layers from neuron statistics, but none were given",
                where=spec_where(spec, "stats"),
                fix="run `clas-graph stats SPEC` (or `clas-graph run SPEC`, which computes them when needed)",
            )
        return
    expected = (dims.num_layers, dims.intermediate_size)
    if tuple(stats.category.shape) != expected:
        raise CompileError(
            f"the statistics artifact has [layers, neurons] = {list(stats.category.shape)}, "
            f"but the model has {list(expected)}",
            where=spec_where(spec, "stats"), fix="recompute statistics for this model",
        )


def _config_of(model):
    for candidate in (model, getattr(model, "_module", None)):
        config = getattr(candidate, "config", None)
        if config is not None:
            return config
    if hasattr(model, "model_type"):
        return model
    raise CompileError(f"cannot find a model config on {type(model).__name__}", where="model")


def _compile_intervention(spec: RunSpec, index: int, dims, stats, architecture) -> list:
    return spec.interventions[index].compile(CompileContext(spec, index, dims, stats, architecture))


def _check_conflicts(spec: RunSpec, ops: list) -> None:
    """Two overwrites of the same neurons at the same place cannot both hold."""
    sets = [op for op in ops if isinstance(op, SetNeurons)]
    for i, first in enumerate(sets):
        for second in sets[i + 1:]:
            if (first.layer, first.site) != (second.layer, second.site) or first.intervention == second.intervention:
                continue
            both = first.mask & second.mask  # [I] and [languages, I] tables broadcast: same row language
            if bool(both.any()):
                raise CompileError(
                    f"'{first.intervention}' ({first.kind}) and '{second.intervention}' ({second.kind}) both overwrite "
                    f"{int(both.sum())} of the same neurons at layer {first.layer}, {first.site}; only the later one "
                    "would hold",
                    where=spec_where(spec, "conditions"),
                    fix="drop one of them from the condition, or use disjoint neurons",
                )
