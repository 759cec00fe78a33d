"""Expert neurons (Suau et al. 2022; Sundar et al. 2025): from pooled responses to the stored `experts.*` tensors."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import NonNegativeInt, PositiveInt

from ..errors import DataError
from ..spec.base import StrictModel

# The rules (torch) load where a selection is computed, so spec models load without torch: `clas-graph
# validate` and `--help` start fast.

NOTE = ("Suau et al.'s finding experts: per text, the neuron's response max-pooled over counted tokens; "
        "expertise = average precision (sklearn's definition, ties grouped) of that score for the language's "
        "texts against all other texts; top_k (layer, neuron) pairs per language over the searched layers "
        "(ties: lower index first); p50/p90 = median / 90th percentile (linear interpolation) of the pooled "
        "response over the language's texts (ml-selfcond's on_p50 / on_p90).")

POOLED_VALUES = {"median": "experts.p50", "p90": "experts.p90"}
"""`set`'s pooled-response values -> the artifact tensors [languages, layers, neurons] holding them."""


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

    NAME: ClassVar[str] = "experts"
    """Its name in `stats.selections`, `{from_stats: ...}` and the artifact's tensor names."""
    MASK_TENSOR: ClassVar[str] = "experts.mask"
    """The artifact tensor [languages, layers, neurons] bool a `{from_stats: experts}` mask reads."""
    TENSORS: ClassVar[dict[str, str]] = {
        "experts.ap": "average precision [languages, layers, neurons] (NaN: not searched)",
        "experts.mask": "top_k experts per language [languages, layers, neurons]",
        "experts.p50": "median max-pooled response on the language's texts",
        "experts.p90": "90th percentile of the same",
    }
    """The tensors it stores, with what stats.json says of them."""
    LANGUAGE_AXIS: ClassVar[tuple[str, ...]] = ("experts.ap", "experts.mask", "experts.p50", "experts.p90")
    """Its tensors whose first axis is the language."""

    def reusable(self, old_tensors: dict, old_meta: dict) -> bool:
        """Whether an artifact of the same corpus holds experts searched with these very parameters."""
        return old_meta.get("requested", {}).get(self.NAME) == self.model_dump(mode="json")

    def searched_layers(self, num_layers: int) -> list[int]:
        """The layers searched on a model of `num_layers` layers (refusing ones it lacks)."""
        layers = list(self.layers) if self.layers is not None else list(range(num_layers))
        bad = [layer for layer in layers if layer >= num_layers]
        if bad:
            raise DataError(f"expert layers {bad} are out of range: the model has {num_layers} layers",
                            where="stats.selections.experts.layers", fix=f"use layers 0-{num_layers - 1}")
        return layers

    def stored(self, pooled, row_language, languages: list[str], layers: list[int], num_layers: int, *,
               reused: tuple[dict, dict] | None = None) -> tuple[dict, dict]:
        """(tensors, meta entries) from the pooled responses [L_e, N, I] of the searched `layers` and each text's
        language index [N], or from the `reused` (tensors, selections meta) of an artifact."""
        from . import rules

        if reused is not None:
            old_tensors, old_meta = reused
            return ({k: v for k, v in old_tensors.items() if k.startswith(f"{self.NAME}.")},
                    {"experts": old_meta["experts"]})
        tensors = rules.experts(pooled, row_language, len(languages), layers, num_layers, top_k=self.top_k)
        meta = {"rule": NOTE, "site": self.site, "layers": layers, "texts": int(pooled.shape[1]),
                "tensors": dict(self.TENSORS)}
        return tensors, {"experts": meta}
