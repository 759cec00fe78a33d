"""What every intervention kind shares: the rows and steps it touches, its layers and sites, and the context its
compile rule reads (spec field, model sizes, statistics).

A kind is a pydantic model deriving from `Targeted`; it declares which of its fields hold mask or vector sources
(`SOURCE_FIELDS`) and which name a spec language (`LANGUAGE_FIELDS`), and implements `compile`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Union

from pydantic import Field, NonNegativeInt

from ..compile.plan import SITE_ACT, RowSelect
from ..errors import CompileError
from ..spec.base import FieldError, NewField, StrictModel
from ..spec.masks import StatsMask
from ..spec.rows import FixedAnchor, LanguageRows, RowRule
from ..spec.vectors import StatsVector
from .positions import PositionRule, combined_steps, label, position_select

# torch and the mask resolver (compile.masks) load where a mask is resolved, so spec models load without torch:
# `clas-graph validate` and `--help` start fast.
if TYPE_CHECKING:
    import torch

    from ..sites import Architecture, ModelDims
    from ..spec.run_spec import RunSpec

MlpSite = Literal["mlp.act_fn.output", "mlp.down_proj.input"]
Steps = Literal["all", "prompt", "generated"]


class AutoLayers(StrictModel):
    """Layers chosen by the statistics runner, or every layer of the model."""

    auto: Literal["bridge", "all"]
    """`bridge`: the bridge layers picked by the rule in `stats.bridge`; `all`: every layer (for selections such as
    LAPE that span the whole model)."""


Layers = Union[Annotated[list[NonNegativeInt], Field(min_length=1)], AutoLayers]
"""Explicit 0-based layers, `{auto: bridge}` or `{auto: all}`."""


class Targeted(StrictModel):
    """What every kind shares: which rows it touches and, during generation, at which steps."""

    rows: RowRule = "non_anchor"
    """Rows to modify: `non_anchor` (default), `all`, or `{languages: [...]}`."""
    steps: Steps = "all"
    """During generation: `all` steps, only the `prompt` forward, or only `generated` tokens."""
    positions: Annotated[PositionRule, NewField()] = "all"
    """Token positions to modify: `all` (default), `last`, `prompt`, `generated`, `{first: N}`, `{last: N}` or
    `[indices]` (0-based, negative from the end), counted over each text's own tokens (BOS included, padding
    never). Token selectors name tokens of the input text, so during generation they act in the prompt forward
    only; `generated` is every generated token."""

    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields holding a mask or vector source (inline, file, or `{from_stats: ...}`)."""
    LANGUAGE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields naming one spec language (or None)."""
    RECORDED_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields a sweep records at every grid point, swept or not (its figures compare points by them)."""

    def compile(self, context: CompileContext) -> list:
        """The plan ops of this intervention (`context.intervention` is `self`)."""
        raise NotImplementedError(type(self).__name__)

    def statistics_by_kind(self) -> bool:
        """Whether the kind itself reads the statistics artifact (its values are statistics), whatever its
        sources and layers say."""
        return False

    def stats_fields(self) -> list[str]:
        """Fields that refer to the statistics artifact (`kind` when the kind itself does)."""
        fields = ["kind"] if self.statistics_by_kind() else []
        layers = getattr(self, "layers", None)
        if isinstance(layers, AutoLayers) and layers.auto == "bridge":
            fields.append("layers")
        fields += [name for name in self.SOURCE_FIELDS if isinstance(getattr(self, name), (StatsMask, StatsVector))]
        return fields

    def check_references(self, spec: RunSpec, index: int) -> None:
        """Languages this intervention names are spec languages; selections it uses are asked for; `positions`
        and `steps` leave something to act on."""
        if combined_steps(self.positions, self.steps) is None:
            acts = "generated tokens" if self.steps == "prompt" else "the prompt forward"
            raise FieldError(("interventions", index, "positions"),
                             f"`positions: {label(self.positions)}` acts at {acts} only, but `steps: {self.steps}` "
                             "excludes it, so nothing would change; drop one of them")
        for name in self.SOURCE_FIELDS:
            check_source_languages(spec, index, name, getattr(self, name))
        for name in self.LANGUAGE_FIELDS:
            code = getattr(self, name)
            if isinstance(code, str) and code not in spec.languages:
                raise FieldError(("interventions", index, name),
                                 f"language '{code}' is not in `languages` {spec.languages}")
        self.check_selections(spec, index)

    def check_selections(self, spec: RunSpec, index: int) -> None:
        """Selections (`stats.selections`) this intervention reads are asked for; none by default."""

    def steering_target(self) -> str | None:
        """The language this intervention steers every touched row toward, if it names one."""
        return None


def check_source_languages(spec: RunSpec, index: int, name: str, source) -> None:
    """The languages a mask or vector source names (`language`, `languages`) are spec languages."""
    langs = spec.languages
    language = getattr(source, "language", None)
    if language is not None and language not in langs:
        raise FieldError(("interventions", index, name, "language"),
                         f"language '{language}' is not in `languages` {langs}")
    for j, code in enumerate(getattr(source, "languages", None) or []):
        if code not in langs:
            raise FieldError(("interventions", index, name, "languages", j),
                             f"language '{code}' is not in `languages` {langs}")


def spec_where(spec: RunSpec, field: str) -> str:
    """`FILE:LINE: field` for compile errors (the line where the field, or its nearest parent, was written)."""
    return f"{spec.place(field)}: {field}"


def row_select(spec: RunSpec, rule) -> RowSelect:
    """The rows a row rule selects, with the spec's anchor."""
    if rule == "all":
        return RowSelect("all")
    if isinstance(rule, LanguageRows):
        return RowSelect("only", tuple(rule.languages))
    if isinstance(spec.anchor, FixedAnchor):
        return RowSelect("except", (spec.anchor.language,))
    return RowSelect("all")  # non_anchor with no anchor rule: every row


def mean_tensor(site: str) -> str:
    """The artifact's per-language mean activation [G, L, I] at an MLP site."""
    return "act_mean" if site == SITE_ACT else "mean"


def _check_layers(spec: RunSpec, index: int, layers: list[int], dims) -> None:
    for position, layer in enumerate(layers):
        where = spec_where(spec, f"interventions[{index}].layers[{position}]")
        if layer >= dims.num_layers:
            raise CompileError(
                f"layer {layer} is out of range: the model ({dims.model_type}) has {dims.num_layers} layers "
                f"(0-{dims.num_layers - 1})",
                where=where, fix=f"use layers between 0 and {dims.num_layers - 1}",
            )
        if layer in layers[:position]:
            raise CompileError(f"layer {layer} is listed twice", where=where, fix="list each layer once")


class CompileContext:
    """What compiling one intervention needs: the spec field it came from, model sizes, statistics."""

    def __init__(self, spec: RunSpec, index: int, dims: ModelDims, stats, architecture: Architecture):
        self.spec, self.index, self.dims, self.stats, self.architecture = spec, index, dims, stats, architecture
        self.intervention = spec.interventions[index]
        self.base_dir = Path(spec.source).parent if spec.source else Path.cwd()
        self.rows = row_select(spec, self.intervention.rows)

    def where(self, field: str) -> str:
        return spec_where(self.spec, f"interventions[{self.index}].{field}")

    def layers(self) -> list[int]:
        iv = self.intervention
        if isinstance(iv.layers, AutoLayers) and iv.layers.auto == "all":
            return list(range(self.dims.num_layers))
        layers = list(self.stats.bridge_layers) if isinstance(iv.layers, AutoLayers) else list(iv.layers)
        _check_layers(self.spec, self.index, layers, self.dims)
        return layers

    def mask(self, field: str, layers: list[int], per_row_ok: bool = False) -> dict[int, torch.Tensor]:
        from ..compile.masks import resolve_mask

        masks = resolve_mask(getattr(self.intervention, field), layers=layers, dims=self.dims, where=self.where(field),
                             base_dir=self.base_dir, stats=self.stats)
        if not per_row_ok and any(m.dim() == 2 for m in masks.values()):
            raise CompileError(f"a per-row (per-language) mask cannot be used by `{self.intervention.kind}`",
                               where=self.where(f"{field}.per_row"),
                               fix="use it with `ablate` or `set`, or drop per_row")
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
        fields = dict(intervention=iv.id, kind=iv.kind, layer=layer, site=site, rows=self.rows,
                      steps=combined_steps(iv.positions, iv.steps), params=params)
        if iv.positions != "all":
            fields["positions"] = position_select(iv.positions, self.where("positions"))
        return fields
