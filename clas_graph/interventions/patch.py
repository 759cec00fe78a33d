"""Activation patching: a row's values at a site replaced by (or mixed with) the values of a source.

x[t] <- (1 - c) * x[t] + c * mean_k source_k[s]

Sources: the same item's parallel text in another language (cross-lingual patching, e.g. English-to-X at the
last token), the mean over several languages' parallel texts (Dumas et al.'s language-agnostic mean), or the same
text under another condition (restoration patching / causal tracing: `{condition: base}` restores the clean
values into a corrupted run). Source rows run in the same batch as the patched rows (see compile/plan.py), so one
trace computes both and the patch needs no second trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field

from ..compile.plan import PatchSource, PatchValues
from ..spec.base import BASE_CONDITION, FieldError, FiniteFloat, Identifier, LanguageCode, StrictModel, distinct
from .base import CompileContext, Layers, Targeted
from .positions import PositionRule, label, position_select

if TYPE_CHECKING:
    from ..spec.run_spec import RunSpec


class LanguageSource(StrictModel):
    """The same item's text in `language` (the task's parallel data)."""

    language: LanguageCode


class LanguagesSource(StrictModel):
    """The same item's texts in several languages, reduced to one value per position."""

    languages: Annotated[list[LanguageCode], Field(min_length=1), distinct("language")]
    reduce: Literal["mean"] = "mean"
    """How the languages' values combine: their mean (Dumas et al.)."""


class ConditionSource(StrictModel):
    """The same text under another condition (`base`: the unmodified model)."""

    condition: Identifier


PatchSourceRule = Union[LanguageSource, LanguagesSource, ConditionSource]

class PatchIntervention(Targeted):
    """Activation patching at `site` in `layers`: x[t] <- (1-c)*x[t] + c*mean_k source_k[s] for the selected rows,
    position t of `positions` taking the matching position s of `source_positions` (the i-th of each side).

    Acts in the prompt forward only (during generation the source rows generate their own tokens, which need not
    match the patched rows')."""

    kind: Literal["patch"]
    id: Identifier = "patch"
    """Name of this intervention; conditions refer to it."""
    layers: Layers
    """Decoder layers to patch (one condition per layer for a layer sweep), or `{auto: bridge}`."""
    site: Literal["resid_post", "mlp.act_fn.output", "mlp.down_proj.input"] = "resid_post"
    """The residual stream after the layer (default), or an MLP activation."""
    source: PatchSourceRule
    """`{language: en}`, `{languages: [de, fr, es], reduce: mean}` or `{condition: base}`."""
    positions: PositionRule = "last"
    """Positions of each patched row: `last` (the papers' default), `{last: N}`, `{first: N}`, `[indices]`; `all`
    or `prompt` only with a `{condition: ...}` source (the same text, so the same tokens)."""
    source_positions: PositionRule | None = None
    """Positions of the source text they take their values from, matched in order; default: the same selector as
    `positions` (`last` <- `last`). Both sides must select the same number of positions."""
    coefficient: FiniteFloat = 1.0
    """c: 1 replaces the value (patching), 0 changes nothing, between them mixes."""

    def source_rule(self) -> PositionRule:
        return self.positions if self.source_positions is None else self.source_positions

    def check_references(self, spec: RunSpec, index: int) -> None:
        super().check_references(spec, index)
        here = ("interventions", index)
        if self.steps == "generated" or "generated" in (self.positions, self.source_rule()):
            field = "steps" if self.steps == "generated" else (
                "positions" if self.positions == "generated" else "source_positions")
            raise FieldError((*here, field), "a patch acts in the prompt forward only (during generation the source "
                                             "rows generate their own tokens); use prompt positions such as `last`")
        self._check_pairing(here)
        if isinstance(self.source, ConditionSource):
            self._check_condition(spec, here)
        else:
            self._check_languages(spec, here)

    def _check_pairing(self, here: tuple) -> None:
        target_rule, source_rule = self.positions, self.source_rule()
        field = "source_positions" if self.source_positions is not None else "positions"
        whole = [rule in ("all", "prompt") for rule in (target_rule, source_rule)]
        if any(whole) and not isinstance(self.source, ConditionSource):
            raise FieldError((*here, "positions" if whole[0] else "source_positions"),
                             f"`{label(target_rule if whole[0] else source_rule)}` pairs every token, but a parallel "
                             "text has other tokens and another length, so its tokens have no match; use `last` "
                             "(the papers' default), `{last: N}`, `{first: N}` or `[indices]`")
        target, source = position_select(target_rule).count, position_select(source_rule).count
        if whole[0] != whole[1] or target != source:
            raise FieldError((*here, field),
                             f"`positions: {label(target_rule)}` selects {_count(target)} per row but "
                             f"`source_positions: {label(source_rule)}` selects {_count(source)}: positions pair "
                             "one to one, in order; select as many on both sides")

    def _check_condition(self, spec: RunSpec, here: tuple) -> None:
        name = self.source.condition
        conditions = spec.resolved_conditions
        if name != BASE_CONDITION and name not in conditions:
            raise FieldError((*here, "source", "condition"),
                             f"unknown condition '{name}'; the spec's conditions: {sorted(conditions) or 'none'} "
                             f"(or `{BASE_CONDITION}`)")
        if name != BASE_CONDITION:
            for ident in conditions[name]:
                if isinstance(spec.intervention(ident), PatchIntervention):
                    raise FieldError((*here, "source", "condition"),
                                     f"condition '{name}' patches too ('{ident}'); a source condition cannot take "
                                     "values from another source: choose a condition without a patch, or base")

    def _check_languages(self, spec: RunSpec, here: tuple) -> None:
        codes = [self.source.language] if isinstance(self.source, LanguageSource) else self.source.languages
        field = (*here, "source", "language") if isinstance(self.source, LanguageSource) else (*here, "source")
        for j, code in enumerate(codes):
            where = field if isinstance(self.source, LanguageSource) else (*field, "languages", j)
            if code not in spec.all_languages:
                raise FieldError(where, f"language '{code}' is neither in `languages` {spec.languages} nor in any "
                                        f"task's languages; add '{code}' to `languages`, or use one of them")
        if not any(self.id in ids for ids in spec.resolved_conditions.values()):
            return
        for t, task in enumerate(spec.tasks):
            if not task.patchable:
                raise FieldError((*here, "source"),
                                 f"tasks[{t}] ({task.kind}) does not have parallel items (the same item in every "
                                 "language), so its rows have no parallel text to patch from; use `source: "
                                 "{condition: base}`, or a task with parallel items (retrieval, lm_loss, next_token, "
                                 "language_steering, xnli, xquad, lens)")
            task_languages = spec.task_languages(task)
            for j, code in enumerate(codes):
                if code not in task_languages:
                    where = field if isinstance(self.source, LanguageSource) else (*field, "languages", j)
                    raise FieldError(where, f"tasks[{t}] ({task.kind}) has no text in '{code}' (it evaluates "
                                            f"{task_languages}), so there is no parallel to patch from; add "
                                            f"'{code}' to that task's languages")

    def compile(self, ctx: CompileContext) -> list:
        iv, layers = self, ctx.layers()
        ctx.check_site(iv.site)
        if isinstance(iv.source, ConditionSource):
            source = PatchSource(f"condition:{iv.source.condition}", condition=iv.source.condition)
        elif isinstance(iv.source, LanguageSource):
            source = PatchSource(f"language:{iv.source.language}", (iv.source.language,))
        else:
            source = PatchSource(f"languages:{'+'.join(iv.source.languages)}", tuple(iv.source.languages))
        positions = position_select(iv.positions, ctx.where("positions"))
        source_positions = position_select(iv.source_rule(), ctx.where(
            "source_positions" if iv.source_positions is not None else "positions"))
        params = {"source": source.describe(), "positions": f"{positions.label} <- {source_positions.label}",
                  "coefficient": iv.coefficient}
        ops = []
        for layer in layers:
            fields = {**ctx.op_fields(layer, iv.site, params), "steps": "prompt", "positions": positions}
            ops.append(PatchValues(**fields, source=source, source_positions=source_positions,
                                   coefficient=float(iv.coefficient)))
        return ops


def _count(count: int | None) -> str:
    if count is None:
        return "every position"
    return f"{count} position{'s' if count != 1 else ''}"
