"""Spec + model config -> Plan. All checks against the model's sizes happen here, before any forward."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CompileError
from ..sites import architecture_for, dims_of
from ..spec import AutoLayers, ClasIntervention, FixedAnchor, LanguageRows, RunSpec
from ..spec.run_spec import BASE_CONDITION
from .masks import resolve_mask
from .plan import SITE_H, SITE_ORDER, Plan, RowSelect, ScaleNeurons


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
                where=_where(spec, "conditions"), fix="pass condition=NAME (or use compile_plans for all)",
            )
        condition = next(iter(conditions))
    if condition != BASE_CONDITION and condition not in conditions:
        raise CompileError(f"unknown condition '{condition}'; the spec defines: {', '.join(conditions)}",
                           where=_where(spec, "conditions"))
    config = _config_of(model)
    architecture = architecture_for(config)
    dims = dims_of(config)
    _check_stats(spec, stats, dims)
    ids = [] if condition == BASE_CONDITION else conditions[condition]
    ops = []
    for order, ident in enumerate(ids):
        index = next(i for i, iv in enumerate(spec.interventions) if iv.id == ident)
        ops.extend((op, order) for op in _compile_intervention(spec, index, dims, stats))
    # nnsight needs module values in execution order: layer, then site, then spec order.
    ops.sort(key=lambda pair: (pair[0].layer, SITE_ORDER[pair[0].site], pair[1]))
    return Plan(
        condition=condition,
        model_type=dims.model_type,
        architecture=architecture,
        dims=dims,
        languages=tuple(spec.languages),
        ops=tuple(op for op, _ in ops),
    )


def compile_plans(spec: RunSpec, model, stats=None) -> dict[str, Plan]:
    """Every condition of the spec, `base` first."""
    names = [BASE_CONDITION, *spec.resolved_conditions]
    return {name: compile_plan(spec, model, name, stats) for name in names}


def _check_stats(spec: RunSpec, stats, dims) -> None:
    if stats is None:
        if spec.needs_stats:
            raise CompileError(
                "the spec takes masks or layers from neuron statistics, but none were given",
                where=_where(spec, "stats"),
                fix="run `clas-graph stats SPEC` (or `clas-graph run SPEC`, which computes them when needed)",
            )
        return
    expected = (dims.num_layers, dims.intermediate_size)
    if tuple(stats.category.shape) != expected:
        raise CompileError(
            f"the statistics artifact has [layers, neurons] = {list(stats.category.shape)}, but the model has {list(expected)}",
            where=_where(spec, "stats"), fix="recompute statistics for this model",
        )


def _config_of(model):
    for candidate in (model, getattr(model, "_module", None)):
        config = getattr(candidate, "config", None)
        if config is not None:
            return config
    if hasattr(model, "model_type"):
        return model
    raise CompileError(f"cannot find a model config on {type(model).__name__}", where="model")


def _where(spec: RunSpec, field: str) -> str:
    return f"{spec.source or '<spec>'}: {field}"


def _rows(spec: RunSpec, rule) -> RowSelect:
    if rule == "all":
        return RowSelect("all")
    if isinstance(rule, LanguageRows):
        return RowSelect("only", tuple(rule.languages))
    if isinstance(spec.anchor, FixedAnchor):
        return RowSelect("except", (spec.anchor.language,))
    return RowSelect("all")  # non_anchor with no anchor rule: every row


def _check_layers(spec: RunSpec, index: int, layers: list[int], dims) -> None:
    for position, layer in enumerate(layers):
        where = _where(spec, f"interventions[{index}].layers[{position}]")
        if layer >= dims.num_layers:
            raise CompileError(
                f"layer {layer} is out of range: the model ({dims.model_type}) has {dims.num_layers} layers "
                f"(0-{dims.num_layers - 1})",
                where=where, fix=f"use layers between 0 and {dims.num_layers - 1}",
            )
        if layer in layers[:position]:
            raise CompileError(f"layer {layer} is listed twice", where=where, fix="list each layer once")


def _compile_intervention(spec: RunSpec, index: int, dims, stats) -> list[ScaleNeurons]:
    intervention = spec.interventions[index]
    if isinstance(intervention, ClasIntervention):
        return _compile_clas(spec, index, intervention, dims, stats)
    raise CompileError(f"intervention kind '{intervention.kind}' cannot be compiled yet",
                       where=_where(spec, f"interventions[{index}].kind"))


def _layers(iv, stats) -> list[int]:
    if isinstance(iv.layers, AutoLayers):
        return list(stats.bridge_layers)
    return list(iv.layers)


def _compile_clas(spec: RunSpec, index: int, iv: ClasIntervention, dims, stats) -> list[ScaleNeurons]:
    layers = _layers(iv, stats)
    _check_layers(spec, index, layers, dims)
    base_dir = Path(spec.source).parent if spec.source else Path.cwd()
    field = f"interventions[{index}]"
    common = dict(layers=layers, dims=dims, base_dir=base_dir, stats=stats)
    shared = resolve_mask(iv.shared, where=_where(spec, f"{field}.shared"), **common)
    specific = resolve_mask(iv.specific, where=_where(spec, f"{field}.specific"), **common)
    rows = _rows(spec, iv.rows)
    ops = []
    for layer in layers:
        overlap = (shared[layer] & specific[layer]).nonzero().flatten().tolist()
        if overlap and iv.require_disjoint:
            raise CompileError(
                f"layer {layer}: {len(overlap)} neuron(s) are in both `shared` and `specific` "
                f"(e.g. {overlap[:5]}); the paper's categories are exclusive",
                where=_where(spec, f"{field}.specific"),
                fix="remove them from one mask, or set `require_disjoint: false`",
            )
        ops.append(ScaleNeurons(
            intervention=iv.id, kind="clas", layer=layer, site=SITE_H, rows=rows,
            scale=clas_scale(shared[layer], specific[layer], beta=iv.beta, gamma=iv.gamma, alpha=iv.alpha),
            params={"beta": iv.beta, "gamma": iv.gamma, "alpha": iv.alpha,
                    "shared_neurons": int(shared[layer].sum()), "specific_neurons": int(specific[layer].sum())},
        ))
    return ops


def clas_scale(shared: torch.Tensor, specific: torch.Tensor, *, beta: float, gamma: float, alpha: float) -> torch.Tensor:
    """Per-neuron factor s with h_final = h * s, equal to (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec).

    Computed in float64 so the float32 result is the correctly rounded factor;
    untouched neurons get exactly 1.0 (so alpha=0 or empty masks change nothing).
    """
    ms = shared.to(torch.float64)
    mspec = specific.to(torch.float64)
    scale = (1.0 - alpha) + alpha * (1.0 + beta * ms) * (1.0 - gamma * mspec)
    return scale.to(torch.float32)
