"""Neuron selections of other methods, computed beside the CLAS statistics: LAPE and expert neurons.

`stats: {selections: [lape, experts]}` asks for both with their defaults; the long form sets parameters:
`selections: {lape: {top_rate: 0.05}, experts: {top_k: 100}}`. Each lands in the statistics artifact as
tensors (per language, layer, neuron) that specs use as `{from_stats: lape}` / `{from_stats: experts}`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from .base import StrictModel

SELECTION_NAMES = ("lape", "experts")


class LapeSelection(StrictModel):
    """LAPE (Tang et al. 2024, `identify.py`): p = P(act_fn(gate_proj(x)) > 0) per language over counted tokens;
    normalise p over languages, entropy H; neurons where no language's p passes the `filter_quantile` of all p get
    H = inf; keep the `top_rate` fraction of all (layer, neuron) pairs with the lowest H; a kept neuron belongs
    to every language whose p passes the `activation_bar_quantile` of all p (so possibly to several)."""

    top_rate: float = Field(0.01, gt=0.0, le=1.0)
    """Fraction of all (layer, neuron) pairs kept (Tang et al.: 0.01; CLaS-Bench's final LAPE used 0.05)."""
    filter_quantile: float = Field(0.95, gt=0.0, lt=1.0)
    """A neuron is a candidate only if some language's p exceeds this quantile of all p (Tang et al.: 0.95)."""
    activation_bar_quantile: float = Field(0.95, gt=0.0, lt=1.0)
    """A kept neuron belongs to each language whose p exceeds this quantile of all p (Tang et al.: 0.95)."""


class ExpertSelection(StrictModel):
    """Expert neurons (Suau et al. 2022 'finding experts', used by Sundar et al. 2025): each neuron's activation,
    max-pooled over a text's counted tokens, scores the text; its average precision (AP) at telling one language's
    texts from all others ranks the neuron for that language; the `top_k` (layer, neuron) pairs per language are
    its experts. The median (and 90th percentile) pooled activation on the language's texts are stored as values
    to set them to."""

    top_k: PositiveInt = 50
    """Experts per language, ranked over all searched layers together (ml-selfcond's README example: 50;
    Sundar et al. do not state theirs: our default)."""
    site: Literal["mlp.act_fn.output", "mlp.down_proj.input"] = "mlp.act_fn.output"
    """Which MLP activation is a neuron's response (Suau et al. read linear-layer outputs; our default is the
    gate activation, LAPE's site, so both selections describe the same units)."""
    layers: list[NonNegativeInt] | None = None
    """Layers searched; default all. Pooled responses are kept for every text (texts x layers x neurons floats),
    so large models may want fewer."""


class Selections(StrictModel):
    """Which selections to compute (each omitted one is skipped)."""

    lape: LapeSelection | None = None
    """LAPE language-specific neurons (Tang et al. 2024)."""
    experts: ExpertSelection | None = None
    """Expert neurons by average precision (Suau et al. 2022; Sundar et al. 2025)."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        # `[lape, experts]` means each with its defaults.
        if isinstance(value, (list, tuple)):
            unknown = [name for name in value if name not in SELECTION_NAMES]
            if unknown:
                raise ValueError(f"unknown selection(s) {unknown}; known: {list(SELECTION_NAMES)}")
            return {name: {} for name in value}
        return value

    def names(self) -> list[str]:
        return [name for name in SELECTION_NAMES if getattr(self, name) is not None]
