"""LAPE language-specific neurons (Tang et al. 2024): from activation counts to the stored `lape.*` tensors."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..spec.base import StrictModel

# torch and the rules load where a selection is computed, so spec models load without torch: `clas-graph
# validate` and `--help` start fast.

NOTE = ("Tang et al.'s identify.py: p = P(act_fn output > 0); p normalised over languages; entropy; neurons "
        "with no language above the filter quantile of all p get entropy inf; the top_rate fraction of all "
        "(layer, neuron) pairs with the lowest entropy (ties: lower index first; torch.topk in the original); "
        "each kept neuron belongs to every language with p above the activation-bar quantile of all p.")


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

    NAME: ClassVar[str] = "lape"
    """Its name in `stats.selections`, `{from_stats: ...}` and the artifact's tensor names."""
    MASK_TENSOR: ClassVar[str] = "lape.mask"
    """The artifact tensor [languages, layers, neurons] bool a `{from_stats: lape}` mask reads."""
    TENSORS: ClassVar[dict[str, str]] = {
        "lape.prob": "P(act_fn output > 0) [languages, layers, neurons]",
        "lape.entropy": "entropy over languages [layers, neurons] (inf: filtered out)",
        "lape.mask": "neuron belongs to language [languages, layers, neurons]",
    }
    """The tensors it stores, with what stats.json says of them."""
    LANGUAGE_AXIS: ClassVar[tuple[str, ...]] = ("lape.prob", "lape.mask")
    """Its tensors whose first axis is the language."""

    def reusable(self, old_tensors: dict, old_meta: dict) -> bool:
        """Whether an artifact of the same corpus already holds the probabilities (only the rule's parameters
        may have changed: the rule is cheap to apply again)."""
        return "lape.prob" in old_tensors

    def stored(self, positive, tokens, languages: list[str], *, reused: dict | None = None) -> tuple[dict, dict]:
        """(tensors, meta entries) from the positive counts [L, G, I] and counted tokens [G], or from the
        `reused` artifact tensors."""
        import torch

        from . import rules

        meta = {}
        if reused is not None:
            prob, meta["lape_probabilities"] = reused["lape.prob"], "reused from the artifact (same corpus)"
        else:
            prob = (positive / tokens.clamp(min=1)[None, :, None]).transpose(0, 1).to(torch.float32)  # [G, L, I]
        entropy, mask, info = rules.lape(prob, **self.model_dump())
        info["neurons_per_language"] = dict(zip(languages, info["neurons_per_language"]))
        meta["lape"] = {**info, "rule": NOTE, "site": "mlp.act_fn.output", "tensors": dict(self.TENSORS)}
        return {"lape.prob": prob, "lape.entropy": entropy, "lape.mask": mask}, meta
