"""How the statistics runner turns parallel text into neuron categories, masks and bridge layers."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from ..selections.registry import SELECTION_NAMES, Selections
from .base import FiniteFloat, StrictModel
from .corpora import BibleCorpus, Corpus


class QuantileThreshold(StrictModel):
    """T_act per layer: the q-quantile of |mean h| over all (neuron, language) pairs of that layer.

    Sign-invariant (negating a row of up_proj and the matching column of down_proj leaves the
    model unchanged and the categories too) and gives usable masks; the default.
    """

    kind: Literal["quantile"] = "quantile"
    q: float = Field(0.8, gt=0.0, lt=1.0)
    """Quantile in (0, 1); 0.8 marks the top 20% of |mean h| as active."""
    of: Literal["abs_mean"] = "abs_mean"
    """The statistic thresholded: |mean h| per neuron and language."""


class AbsoluteThreshold(StrictModel):
    """T_act = value, compared with the signed mean: 'active' means mean h > value.

    `value: 0.0` is the paper's literal reading ("mean activation above T_act"); it is not
    sign-invariant and on small models leaves almost every neuron partial-shared.
    """

    kind: Literal["absolute"] = "absolute"
    value: FiniteFloat = 0.0


Threshold = Annotated[Union[QuantileThreshold, AbsoluteThreshold], Field(discriminator="kind")]


class BridgeRule(StrictModel):
    """Bridge layers: the `k` contiguous layers with the highest summed score
    score(layer) = share(partial-shared) - share(dead) - share(language-specific),
    among layers from `min_layer` up to (excluding) the last `exclude_last` layers."""

    k: PositiveInt = 3
    """How many contiguous layers to pick (paper: 6 on Llama 3.1 8B, 2 on Qwen 2.5 7B)."""
    exclude_last: NonNegativeInt = 2
    """Never pick the last layers (they specialise in producing the output language)."""
    min_layer: NonNegativeInt | None = None
    """Lowest candidate layer; default: the upper half (num_layers // 2), where the paper's bridges lie."""


class StatsConfig(StrictModel):
    """Neuron statistics over parallel text (paper section 2.3): categories, masks, bridge layers."""

    corpus: Corpus = BibleCorpus()
    """Parallel samples to measure (paper: 100 XQuAD samples in 12 languages)."""
    threshold: Threshold = QuantileThreshold()
    """T_act: when a neuron counts as active for a language."""
    bridge: BridgeRule = BridgeRule()
    """How bridge layers are chosen for `layers: {auto: bridge}`."""
    exclude_bos: bool = True
    """Leave the BOS token out of every mean. It is the same token in every language with no context, so it
    carries no language information, yet its huge ("massive") activations enter each language's mean with a
    weight 1/tokens that differs by language, which swamps DiffMean vectors. False counts every non-pad token."""
    batch_size: PositiveInt = 8
    """Rows per forward pass (results do not depend on it)."""
    max_length: PositiveInt = 512
    """Longest sample in tokens; longer ones are truncated."""
    artifact: str | None = None
    """Use this existing stats.safetensors instead of computing (its stats.json must sit beside it)."""
    selections: Selections | list[Literal[SELECTION_NAMES]] | None = None
    """Other methods' neuron selections over the same corpus: `[lape, experts]` (defaults) or
    `{lape: {top_rate: 0.05}, experts: {top_k: 100}}`.
    Specs use them as `{from_stats: lape}` / `{from_stats: experts}`."""

    def unused_fields(self) -> tuple[str, ...]:
        return ("corpus",) if self.artifact is not None else ()

    @field_validator("selections", mode="after")
    @classmethod
    def _selections_short_form(cls, value):
        # `[lape, experts]` (allowed by the JSON Schema too) means each with its defaults.
        return Selections.model_validate(value) if isinstance(value, list) else value
