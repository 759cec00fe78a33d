"""Spec + model config -> Plan. All checks against the model's sizes happen here, before any forward."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CompileError
from ..sites import architecture_for, dims_of
from ..spec.interventions import AblateIntervention, AddVectorIntervention, AutoLayers, ClasIntervention, DiffMeanIntervention, IntMuIntervention, ScaleIntervention, SetIntervention
from ..spec.rows import FixedAnchor, LanguageRows
from ..spec.run_spec import RunSpec
from ..spec.base import BASE_CONDITION
from .languages import cover_languages
from .masks import resolve_mask
from .plan import SITE_ACT, SITE_H, SITE_ORDER, AddVector, AddVectorKeepNorm, Plan, RowSelect, ScaleNeurons, SetNeurons
from .vectors import resolve_vector


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
        ops.extend((op, order) for op in _compile_intervention(spec, index, dims, stats, architecture))
    # nnsight needs module values in execution order: layer, then site, then spec order.
    ops.sort(key=lambda pair: (pair[0].layer, SITE_ORDER[pair[0].site], pair[1]))
    _check_conflicts(spec, [op for op, _ in ops])
    languages = spec.all_languages  # the statistics' languages first: per-language tables index them
    return Plan(
        condition=condition,
        model_type=dims.model_type,
        architecture=architecture,
        dims=dims,
        languages=languages,
        ops=tuple(cover_languages(spec, [op for op, _ in ops], languages)),
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


class _Context:
    """What compiling one intervention needs: the spec field it came from, model sizes, statistics."""

    def __init__(self, spec: RunSpec, index: int, dims, stats, architecture):
        self.spec, self.index, self.dims, self.stats, self.architecture = spec, index, dims, stats, architecture
        self.intervention = spec.interventions[index]
        self.base_dir = Path(spec.source).parent if spec.source else Path.cwd()
        self.rows = _rows(spec, self.intervention.rows)

    def where(self, field: str) -> str:
        return _where(self.spec, f"interventions[{self.index}].{field}")

    def layers(self) -> list[int]:
        iv = self.intervention
        if isinstance(iv.layers, AutoLayers) and iv.layers.auto == "all":
            return list(range(self.dims.num_layers))
        layers = list(self.stats.bridge_layers) if isinstance(iv.layers, AutoLayers) else list(iv.layers)
        _check_layers(self.spec, self.index, layers, self.dims)
        return layers

    def mask(self, field: str, layers: list[int], per_row_ok: bool = False) -> dict[int, torch.Tensor]:
        masks = resolve_mask(getattr(self.intervention, field), layers=layers, dims=self.dims, where=self.where(field),
                             base_dir=self.base_dir, stats=self.stats)
        if not per_row_ok and any(m.dim() == 2 for m in masks.values()):
            raise CompileError(f"a per-row (per-language) mask cannot be used by `{self.intervention.kind}`",
                               where=self.where(f"{field}.per_row"), fix="use it with `ablate` or `set`, or drop per_row")
        return masks

    def check_site(self, site: str) -> None:
        if site not in self.architecture.sites:
            raise CompileError(
                f"site '{site}' does not exist on {self.architecture.family} models "
                f"(they have: {', '.join(sorted(self.architecture.sites))})",
                where=self.where("site"), fix="choose one of the sites listed",
            )

    def op_fields(self, layer: int, site: str, params: dict) -> dict:
        iv = self.intervention
        return dict(intervention=iv.id, kind=iv.kind, layer=layer, site=site, rows=self.rows, steps=iv.steps,
                    params=params)


def _compile_intervention(spec: RunSpec, index: int, dims, stats, architecture) -> list:
    context = _Context(spec, index, dims, stats, architecture)
    return _COMPILERS[type(context.intervention)](context)


def _compile_clas(ctx: _Context) -> list:
    iv, layers = ctx.intervention, ctx.layers()
    ctx.check_site(SITE_H)
    shared, specific = ctx.mask("shared", layers), ctx.mask("specific", layers)
    ops = []
    for layer in layers:
        overlap = (shared[layer] & specific[layer]).nonzero().flatten().tolist()
        if overlap and iv.require_disjoint:
            raise CompileError(
                f"layer {layer}: {len(overlap)} neuron(s) are in both `shared` and `specific` "
                f"(e.g. {overlap[:5]}); the paper's categories are exclusive",
                where=ctx.where("specific"), fix="remove them from one mask, or set `require_disjoint: false`",
            )
        scale = clas_scale(shared[layer], specific[layer], beta=iv.beta, gamma=iv.gamma, alpha=iv.alpha)
        params = {"beta": iv.beta, "gamma": iv.gamma, "alpha": iv.alpha,
                  "shared_neurons": int(shared[layer].sum()), "specific_neurons": int(specific[layer].sum())}
        ops.append(ScaleNeurons(**ctx.op_fields(layer, SITE_H, params), scale=scale))
    return ops


def _compile_scale(ctx: _Context) -> list:
    iv, layers = ctx.intervention, ctx.layers()
    ctx.check_site(iv.site)
    masks = ctx.mask("neurons", layers)
    return [ScaleNeurons(**ctx.op_fields(layer, iv.site, {"factor": iv.factor, "neurons": int(masks[layer].sum())}),
                         scale=torch.where(masks[layer], torch.tensor(float(iv.factor)), torch.tensor(1.0)))
            for layer in layers]


def _compile_ablate(ctx: _Context) -> list:
    iv, layers = ctx.intervention, ctx.layers()
    ctx.check_site(iv.site)
    masks = ctx.mask("neurons", layers, per_row_ok=True)
    return [SetNeurons(**ctx.op_fields(layer, iv.site, _neuron_counts(masks[layer], ctx.spec.languages)),
                       mask=masks[layer], values=torch.zeros(masks[layer].shape))
            for layer in layers]


def _neuron_counts(mask: torch.Tensor, languages) -> dict:
    if mask.dim() == 2:  # per-language table: each row's own language's neurons
        return {"neurons_per_language": dict(zip(languages, mask.sum(1).tolist()))}
    return {"neurons": int(mask.sum())}


def _compile_int_mu(ctx: _Context) -> list:
    iv, layers, stats = ctx.intervention, ctx.layers(), ctx.stats
    ctx.check_site(iv.site)
    means = stats.tensors["act_mean" if iv.site == SITE_ACT else "mean"].to(torch.float32)  # [G, L, I]
    owner = stats.tensors["specific_language"].to(torch.long)  # [L, I], -1 = not language-specific
    languages = torch.arange(len(stats.languages))[:, None]
    ops = []
    for layer in layers:
        mask = owner[layer][None, :] == languages  # [G, I]: neuron n is specific to language g
        params = {"specific_neurons_per_language": dict(zip(stats.languages, mask.sum(1).tolist())),
                  "values": "dataset mean of the row language at this site"}
        ops.append(SetNeurons(**ctx.op_fields(layer, iv.site, params), mask=mask,
                              values=torch.where(mask, means[:, layer], torch.zeros(()))))
    return ops


def _compile_add_vector(ctx: _Context) -> list:
    iv, layers = ctx.intervention, ctx.layers()
    ctx.check_site(iv.site)
    anchor = ctx.spec.anchor.language if isinstance(ctx.spec.anchor, FixedAnchor) else None
    vectors = resolve_vector(iv.vector, layers=layers, dims=ctx.dims, where=ctx.where("vector"),
                             base_dir=ctx.base_dir, stats=ctx.stats, languages=tuple(ctx.spec.languages),
                             anchor=anchor)
    ops = []
    for layer in layers:
        vector = (iv.coefficient * vectors[layer].to(torch.float32)).contiguous()
        params = {"coefficient": iv.coefficient, "source": iv.vector.kind,
                  "norm": round(float(vectors[layer].norm(dim=-1).mean()), 6)}
        ops.append(AddVector(**ctx.op_fields(layer, iv.site, params), vector=vector))
    return ops


def _statistic(ctx: _Context, layer: int) -> torch.Tensor:
    """[languages, I] values of the `set` intervention's statistic at its site and `layer`."""
    iv, stats = ctx.intervention, ctx.stats
    if iv.value == "mean":
        return stats.tensors["act_mean" if iv.site == SITE_ACT else "mean"][:, layer].to(torch.float32)
    name = {"median": "experts.p50", "p90": "experts.p90"}[iv.value]
    if name not in stats.tensors or stats.meta.get("selections", {}).get("experts", {}).get("site") != iv.site:
        raise CompileError(f"the statistics artifact has no expert statistics at {iv.site}", where=ctx.where("value"),
                           fix=f"add `selections: {{experts: {{site: {iv.site}}}}}` to `stats:` and recompute")
    return stats.tensors[name][:, layer].to(torch.float32)


def _compile_set(ctx: _Context) -> list:
    """Per-language tables where either the neurons (per_row) or the values (no fixed `language`) depend on the row."""
    iv, layers = ctx.intervention, ctx.layers()
    ctx.check_site(iv.site)
    masks = ctx.mask("neurons", layers, per_row_ok=True)
    languages = list(ctx.spec.languages)
    ops = []
    for layer in layers:
        mask = masks[layer]
        if not bool(mask.any()):
            continue  # nothing to set in this layer
        if isinstance(iv.value, str):
            table = _statistic(ctx, layer)  # [G, I]
            values = table[languages.index(iv.language)] if iv.language is not None else table
        else:
            values = torch.full((ctx.dims.intermediate_size,), float(iv.value))
        if mask.dim() == 2 or values.dim() == 2:
            mask, values = mask.expand(len(languages), -1), values.expand(len(languages), -1)
        values = (iv.factor * values).contiguous()
        if bool(torch.isnan(values[mask]).any()):
            raise CompileError(f"layer {layer}: the statistic is undefined (NaN) for some chosen neurons",
                               where=ctx.where("value"), fix="search these layers for experts, or choose other neurons")
        params = {**_neuron_counts(mask, languages),
                  "value": iv.value, "of": iv.language or "row language", "mode": iv.mode, "factor": iv.factor}
        if iv.language is not None:
            params["target"] = iv.language
        mask = mask.contiguous()
        if iv.mode == "replace":
            ops.append(SetNeurons(**ctx.op_fields(layer, iv.site, params), mask=mask, values=values))
        else:
            vector = torch.where(mask, values, torch.zeros(()))
            ops.append(AddVector(**ctx.op_fields(layer, iv.site, params), vector=vector.contiguous()))
    return ops


def _compile_diffmean(ctx: _Context) -> list:
    iv, layers, stats = ctx.intervention, ctx.layers(), ctx.stats
    ctx.check_site(iv.site)
    languages = list(ctx.spec.languages)
    resid = stats.tensors["resid_mean"].to(torch.float64)  # [G, L, H], spec language order
    op_class = AddVectorKeepNorm if iv.preserve_norm else AddVector
    ops = []
    for layer in layers:
        target = resid[languages.index(iv.target), layer]
        source = resid[languages.index(iv.source), layer] if iv.source is not None else resid[:, layer]
        d = target - source  # [H], or [G, H]: one row per source language
        if iv.normalize:
            d = d / (d.norm(dim=-1, keepdim=True) + 1e-8)  # CLaS-Bench's epsilon
        params = {"target": iv.target, "source": iv.source or "row language", "alpha": iv.alpha,
                  "normalize": iv.normalize, "preserve_norm": iv.preserve_norm}
        ops.append(op_class(**ctx.op_fields(layer, iv.site, params), vector=(iv.alpha * d).to(torch.float32).contiguous()))
    return ops


_COMPILERS = {
    SetIntervention: _compile_set,
    DiffMeanIntervention: _compile_diffmean,
    ClasIntervention: _compile_clas,
    IntMuIntervention: _compile_int_mu,
    AddVectorIntervention: _compile_add_vector,
    ScaleIntervention: _compile_scale,
    AblateIntervention: _compile_ablate,
}


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
                    where=_where(spec, "conditions"), fix="drop one of them from the condition, or use disjoint neurons",
                )


def clas_scale(shared: torch.Tensor, specific: torch.Tensor, *, beta: float, gamma: float, alpha: float) -> torch.Tensor:
    """Per-neuron factor s with h_final = h * s, equal to (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec).

    Computed in float64 so the float32 result is the correctly rounded factor;
    untouched neurons get exactly 1.0 (so alpha=0 or empty masks change nothing).
    """
    ms = shared.to(torch.float64)
    mspec = specific.to(torch.float64)
    scale = (1.0 - alpha) + alpha * (1.0 + beta * ms) * (1.0 - gamma * mspec)
    return scale.to(torch.float32)
