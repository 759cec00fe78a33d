"""Which input rows an intervention touches, and the anchor rule that defines 'non-anchor'.

Every input row carries its language; the anchor language (English in the
paper) is the fixed reference that CLAS never modifies.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..extras import LANGUAGE_IDENTIFIER, Need
from .base import LanguageCode, StrictModel


class FixedAnchor(StrictModel):
    """Rows in `language` are the anchor: interventions with `rows: non_anchor` never modify them."""

    kind: Literal["fixed"] = "fixed"
    language: LanguageCode = "en"
    """The anchor language (the paper uses English)."""


class NoAnchor(StrictModel):
    """No anchor language: `rows: non_anchor` then means every row."""

    kind: Literal["none"] = "none"


class DetectedAnchor(FixedAnchor):
    """Like `fixed`, but each row's language is detected from its input text by the offline identifier (Lingua)
    before the trace runs, instead of taken from the data's label: for real inputs whose language is unknown.

    A row detected as a language outside the spec's `languages` (or as none) follows `unknown`. Samples record the
    detected, the labelled and the used language of every row.
    """

    kind: Literal["detected"] = "detected"  # type: ignore[assignment]
    unknown: Literal["anchor", "label"] = "anchor"
    """Rows whose detected language is not among the spec's languages: `anchor` treats them as the anchor (left
    untouched: never steer text we cannot place; our default), `label` uses the data's label instead."""

    def needed_extras(self) -> tuple[Need, ...]:
        return (LANGUAGE_IDENTIFIER,)


AnchorRule = Annotated[Union[FixedAnchor, DetectedAnchor, NoAnchor], Field(discriminator="kind")]


class LanguageRows(StrictModel):
    """Touch only rows whose language is listed."""

    languages: list[LanguageCode] = Field(min_length=1)
    """Languages whose rows are modified; all other rows are left untouched."""


RowRule = Union[Literal["non_anchor", "all"], LanguageRows]
"""`non_anchor` (default: every row not in the anchor language), `all`, or `{languages: [...]}`."""
