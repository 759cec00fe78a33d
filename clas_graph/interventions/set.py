"""Set chosen neurons to a statistic (or a constant), replacing or adding to their activation."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Union

from ..compile.plan import AddVector, SetNeurons
from ..errors import CompileError
from ..selections.experts import POOLED_VALUES
from ..spec.base import FieldError, FiniteFloat, Identifier, LanguageCode
from .base import CompileContext, mean_tensor
from .neurons import NeuronEdit, neuron_counts

# torch loads inside the methods that make tensors, so spec models load without torch: `clas-graph validate` and
# `--help` start fast.
if TYPE_CHECKING:
    import torch

    from ..spec.run_spec import RunSpec


class SetIntervention(NeuronEdit):
    """Set chosen neurons to a statistic (or a constant): x[n] <- factor * value[n] (`mode: replace`) or
    x[n] <- x[n] + factor * value[n] (`mode: add`, CLaS-Bench's 'additive' LAPE steering), for n in `neurons`.

    Activating a target language's experts (Suau et al.: their median pooled response) or LAPE neurons
    (CLaS-Bench: the target's mean act_fn output) toward that language; with `language` unset each row uses its
    own language's statistic (Int-mu-like).
    """

    kind: Literal["set"]
    id: Identifier = "set"
    """Name of this intervention; conditions refer to it."""
    site: Literal["mlp.act_fn.output", "mlp.down_proj.input"] = "mlp.act_fn.output"
    """The MLP activation to set (LAPE's and Mondal et al.'s site by default)."""
    value: Union[Literal["mean", "median", "p90"], FiniteFloat] = "mean"
    """`mean`: the language's mean activation at `site` over counted tokens (statistics artifact); `median` / `p90`:
    median / 90th percentile of the language's max-pooled responses (needs `selections: [experts]` at this site;
    Suau et al.'s on_p50 / on_p90); a number: that constant."""
    language: LanguageCode | None = None
    """Whose statistic: this language for every touched row (e.g. the steering target); default each row's own."""
    mode: Literal["replace", "add"] = "replace"
    """`replace` the activation, or `add` the value to it."""
    factor: FiniteFloat = 1.0
    """Multiplier of the value (CLaS-Bench's s)."""

    LANGUAGE_FIELDS: ClassVar[tuple[str, ...]] = ("language",)

    def statistics_by_kind(self) -> bool:
        return isinstance(self.value, str)  # activation statistics come from the artifact

    def steering_target(self) -> str | None:
        return self.language

    def check_selections(self, spec: RunSpec, index: int) -> None:
        super().check_selections(spec, index)
        chosen = getattr(spec.stats, "selections", None) if spec.stats is not None else None
        if self.value in POOLED_VALUES:
            if chosen is None or chosen.experts is None or chosen.experts.site != self.site:
                raise FieldError(("interventions", index, "value"),
                                 f"`{self.value}` is a pooled-response statistic of the expert search; add "
                                 f"`selections: {{experts: {{site: {self.site}}}}}` to `stats:`, or use `value: mean`")

    def compile(self, ctx: CompileContext) -> list:
        """Per-language tables where either the neurons (per_row) or the values (no fixed `language`) depend on
        the row."""
        import torch

        iv, layers = self, ctx.layers()
        ctx.check_site(iv.site)
        masks = ctx.mask("neurons", layers, per_row_ok=True)
        languages = list(ctx.spec.languages)
        ops = []
        for layer in layers:
            mask = masks[layer]
            if not bool(mask.any()):
                continue  # nothing to set in this layer
            if isinstance(iv.value, str):
                table = self._statistic(ctx, layer)  # [G, I]
                values = table[languages.index(iv.language)] if iv.language is not None else table
            else:
                values = torch.full((ctx.dims.intermediate_size,), float(iv.value))
            if mask.dim() == 2 or values.dim() == 2:
                mask, values = mask.expand(len(languages), -1), values.expand(len(languages), -1)
            values = (iv.factor * values).contiguous()
            if bool(torch.isnan(values[mask]).any()):
                raise CompileError(f"layer {layer}: the statistic is undefined (NaN) for some chosen neurons",
                                   where=ctx.where("value"),
                                   fix="search these layers for experts, or choose other neurons")
            params = {**neuron_counts(mask, languages),
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

    def _statistic(self, ctx: CompileContext, layer: int) -> torch.Tensor:
        """[languages, I] values of the statistic at this intervention's site and `layer`."""
        import torch

        stats = ctx.stats
        if self.value == "mean":
            return stats.tensors[mean_tensor(self.site)][:, layer].to(torch.float32)
        name = POOLED_VALUES[self.value]
        if name not in stats.tensors or stats.meta.get("selections", {}).get("experts", {}).get("site") != self.site:
            raise CompileError(f"the statistics artifact has no expert statistics at {self.site}",
                               where=ctx.where("value"),
                               fix=f"add `selections: {{experts: {{site: {self.site}}}}}` to `stats:` and recompute")
        return stats.tensors[name][:, layer].to(torch.float32)
