"""Tasks over a parallel corpus (retrieval, lm_loss, next_token, language steering): the same sample ids in
every language; the dev items are another slice `[offset, offset + limit)` of the same seeded corpus order, by
default the slice right after the test slice, with the same size."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import NonNegativeInt, PositiveInt

from ..data.corpora import load_corpus
from ..data.languages import check_corpus
from ..errors import DataError
from ..spec.base import FieldError, StrictModel
from .base import TEST, TaskRunner, TaskSpec, check_split

if TYPE_CHECKING:
    from ..spec.run_spec import RunSpec


class CorpusDev(StrictModel):
    """Parallel texts a sweep tunes on: another slice of the same seeded corpus order, disjoint from the test slice."""

    offset: NonNegativeInt | None = None
    """Start of the dev slice; default: right after the test slice (corpus offset + limit)."""
    limit: PositiveInt | None = None
    """Texts in the dev slice; default: the test slice's size (retrieval difficulty depends on it)."""


class CorpusTask(TaskSpec):
    """Behaviour of the corpus tasks; each subclass declares `corpus` (and `dev`) with its own defaults."""

    parallel = True

    def dev_slice(self) -> tuple[int, int]:
        """(offset, limit) of the dev slice: `dev:` as given, by default the slice after the test slice, as big."""
        corpus = self.corpus
        dev = getattr(self, "dev", None) or CorpusDev()
        offset = corpus.offset + corpus.limit if dev.offset is None else dev.offset
        return offset, corpus.limit if dev.limit is None else dev.limit

    def dev_overlaps_test(self) -> bool:
        offset, limit = self.dev_slice()
        return offset < self.corpus.offset + self.corpus.limit and self.corpus.offset < offset + limit

    def dev_corpus(self):
        """The corpus spec of the dev slice (same kind and seed, another offset/limit)."""
        corpus, (offset, limit) = self.corpus, self.dev_slice()
        if self.dev_overlaps_test():
            raise DataError(f"the dev slice [{offset}, {offset + limit}) overlaps the test slice "
                            f"[{corpus.offset}, {corpus.offset + corpus.limit})", where=f"tasks ({self.kind}).dev",
                            fix="move `dev.offset` past the test slice")
        return corpus.model_copy(update={"offset": offset, "limit": limit})

    def for_split(self, split: str) -> "CorpusTask":
        """The task whose corpus is the split's slice."""
        check_split(split)
        return self if split == TEST else self.model_copy(update={"corpus": self.dev_corpus()})

    def check_languages(self, spec: "RunSpec", index: int, languages: list[str], field: tuple) -> None:
        check_corpus(self.corpus, languages, ("tasks", index, "corpus"), field)

    def check_dev(self, index: int) -> None:
        corpus, (offset, limit) = self.corpus, self.dev_slice()
        if self.dev_overlaps_test():  # only a `dev.offset` given in the spec can overlap
            raise FieldError(("tasks", index, "dev", "offset"),
                             f"the dev slice [{offset}, {offset + limit}) overlaps the test slice "
                             f"[{corpus.offset}, {corpus.offset + corpus.limit}); tuning on test items would leak. "
                             f"Start it at {corpus.offset + corpus.limit} or later")

    def item_ids(self, languages, language, split, base_dir):
        return [s.id for s in load_corpus(self.for_split(split).corpus, languages, base_dir)]

    def describe(self, split: str) -> str:
        check_split(split)
        corpus = self.corpus if split == TEST else self.dev_corpus()
        return (f"{corpus.kind} texts [{corpus.offset}, {corpus.offset + corpus.limit}) of the order with seed "
                f"{corpus.seed}")

    def data_loads(self, languages: list[str], base_dir: Path | None):
        return [(None, functools.partial(load_corpus, self.corpus, languages, base_dir))]


class CorpusRunner(TaskRunner):
    """Tasks over a parallel corpus: the samples are loaded once for every language."""

    def data_languages(self) -> list[str]:
        return self.spec.task_languages(self.task)

    @property
    def split_task(self) -> CorpusTask:
        """The task with the corpus slice of this runner's split."""
        return self.task.for_split(self.split)

    def samples(self):
        return self.cached("samples", lambda: load_corpus(self.split_task.corpus, self.data_languages(), self.base_dir))

