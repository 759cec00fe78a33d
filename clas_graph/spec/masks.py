"""Where a neuron mask comes from: inline indices or a safetensors file.

Written in the short form users expect (`{neurons: ...}`, `{file: ...}`), or
with an explicit `kind`; either way it is a tagged union internally.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, NonNegativeInt, Tag

from .base import StrictModel


class InlineMask(StrictModel):
    """Neuron indices per layer, written in the spec. Layers not listed get an empty mask."""

    kind: Literal["inline"] = "inline"
    neurons: dict[NonNegativeInt, list[NonNegativeInt]]
    """Layer -> indices of intermediate (MLP) neurons in the mask, e.g. `{13: [5, 17, 230]}`."""


class FileMask(StrictModel):
    """A mask stored in a safetensors file: a [num_layers, intermediate_size] 0/1 (or bool) tensor."""

    kind: Literal["file"] = "file"
    file: str
    """Path to a .safetensors file (relative paths are relative to the spec file). Never pickle."""
    key: str
    """Name of the tensor inside the file."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the file, so a run records exactly which mask it used (`sha256sum FILE`)."""


def _mask_tag(value: Any) -> str | None:
    # An explicit `kind` wins; otherwise the one distinguishing key decides.
    if isinstance(value, dict):
        if "kind" in value:
            return value["kind"]
        if "neurons" in value:
            return "inline"
        if "file" in value:
            return "file"
        return None
    return getattr(value, "kind", None)


MaskSource = Annotated[
    Union[Annotated[InlineMask, Tag("inline")], Annotated[FileMask, Tag("file")]],
    Discriminator(
        _mask_tag,
        custom_error_type="mask_source",
        custom_error_message=(
            "a mask is `{neurons: {LAYER: [INDEX, ...]}}` or "
            "`{file: PATH.safetensors, key: NAME, sha256: HEX}`"
        ),
    ),
]
