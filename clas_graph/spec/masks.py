"""Where a neuron mask comes from: inline indices, a safetensors file, or the statistics artifact.

Written in the short form users expect (`{neurons: ...}`, `{file: ...}`), or
with an explicit `kind`; either way it is a tagged union internally.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, NonNegativeInt, Tag

from ..selections.registry import SELECTION_NAMES
from .base import LanguageCode, SafetensorsRef, StrictModel


class InlineMask(StrictModel):
    """Neuron indices per layer, written in the spec. Layers not listed get an empty mask."""

    kind: Literal["inline"] = "inline"
    neurons: dict[NonNegativeInt, list[NonNegativeInt]]
    """Layer -> indices of intermediate (MLP) neurons in the mask, e.g. `{13: [5, 17, 230]}`."""


class FileMask(SafetensorsRef):
    """A mask stored in a safetensors file: a [num_layers, intermediate_size] 0/1 (or bool) tensor."""

    kind: Literal["file"] = "file"


class StatsMask(StrictModel):
    """Neurons from the statistics runner's artifact: a dataset-level category, or another method's selection
    (`lape`, `experts`; computed when `stats.selections` lists them)."""

    kind: Literal["stats"] = "stats"
    from_stats: Literal[("partial_shared", "language_specific", "all_shared", "dead", *SELECTION_NAMES)]
    """Category: `partial_shared` (CLAS's M_shared), `language_specific` (CLAS's M_spec), `all_shared`, `dead`;
    or selection: `lape` (Tang et al.'s language-specific neurons), `experts` (Suau et al. / Sundar et al.)."""
    languages: list[LanguageCode] | None = None
    """For `language_specific`, `lape`, `experts`: neurons of these languages (their union; default: any language)."""
    per_row: bool = False
    """For `lape` / `experts` with `ablate` or `set`: each row gets its own language's neurons
    (a per-language table)."""


def _mask_tag(value: Any) -> str | None:
    # An explicit `kind` wins; otherwise the one distinguishing key decides.
    if isinstance(value, dict):
        if "kind" in value:
            return value["kind"]
        if "neurons" in value:
            return "inline"
        if "file" in value:
            return "file"
        if "from_stats" in value:
            return "stats"
        return None
    return getattr(value, "kind", None)


MaskSource = Annotated[
    Union[Annotated[InlineMask, Tag("inline")], Annotated[FileMask, Tag("file")], Annotated[StatsMask, Tag("stats")]],
    Discriminator(
        _mask_tag,
        custom_error_type="mask_source",
        custom_error_message=(
            "a mask is `{neurons: {LAYER: [INDEX, ...]}}`, "
            "`{file: PATH.safetensors, key: NAME, sha256: HEX}` or `{from_stats: partial_shared}`"
        ),
    ),
]
