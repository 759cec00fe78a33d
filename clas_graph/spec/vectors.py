"""Where a steering vector comes from: inline values, a safetensors file, or the statistics artifact."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag

from .base import FiniteFloat, LanguageCode, SafetensorsRef, StrictModel


class InlineVector(StrictModel):
    """A vector written in the spec (length = the model's hidden size), added in every listed layer."""

    kind: Literal["inline"] = "inline"
    values: list[FiniteFloat] = Field(min_length=1)


class FileVector(SafetensorsRef):
    """A vector in a safetensors file: [hidden_size] (every listed layer) or [num_layers, hidden_size]."""

    kind: Literal["file"] = "file"


class StatsVector(StrictModel):
    """DiffMean from the statistics artifact: resid_mean(language) - resid_mean(anchor), per layer.

    With `language` set, every touched row gets that language's vector; without it, each row gets
    its own language's vector (a batch mixing de and fr rows adds de's to de rows, fr's to fr rows).
    """

    kind: Literal["stats"] = "stats"
    from_stats: Literal["diffmean"]
    language: LanguageCode | None = None
    """The target language; default: each row's own language."""


def _vector_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "kind" in value:
            return value["kind"]
        for key, tag in (("values", "inline"), ("file", "file"), ("from_stats", "stats")):
            if key in value:
                return tag
        return None
    return getattr(value, "kind", None)


VectorSource = Annotated[
    Union[Annotated[InlineVector, Tag("inline")], Annotated[FileVector, Tag("file")],
          Annotated[StatsVector, Tag("stats")]],
    Discriminator(
        _vector_tag,
        custom_error_type="vector_source",
        custom_error_message=(
            "a vector is `{values: [...]}`, `{file: PATH.safetensors, key: NAME, sha256: HEX}` "
            "or `{from_stats: diffmean, language: de}`"
        ),
    ),
]
