"""What the run evaluates, and the parallel text it reads."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from .base import StrictModel
from .corpora import BibleCorpus, Corpus


class NextTokenTask(StrictModel):
    """Next-token probe: each parallel text is cut at about 60% and the model predicts what follows.

    Reports per language and condition: top-1 agreement with the base model, KL(base || condition)
    and the log-probability of the true next token.
    """

    kind: Literal["next_token"]
    corpus: Corpus = BibleCorpus(limit=8)
    """Where the parallel prompts come from."""
    cut: float = Field(0.6, gt=0.0, lt=1.0)
    """Fraction of each text kept as the prompt (cut at a word boundary where the script has spaces)."""


Task = Annotated[Union[NextTokenTask], Field(discriminator="kind")]
