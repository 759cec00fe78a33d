"""Source rows: how a call whose plans patch from a source runs it inside the same traces.

Each batch holds the rows the caller asked for and, after them, their source rows: the same item's parallel
text in each source language, or a copy of the row's own text for a `{condition: ...}` source. Source rows are
labelled `SourceRow` (compile/plan.py): no op of the condition touches them (a condition source's ops touch only
them), so at every site they hold exactly the values a separate forward of the source text would, and a patch
reads them from the same tensor it writes. Why one batch and not a second invoke or trace: the forward is
row-independent (mask-derived positions), so one pass computes both; the existing trace shapes (prefix sharing,
remote sessions) stay as they are, and remotely nothing but the extra input rows travels. The cost is one extra
forward of the source rows per batch, which is the patching papers' source pass. The rows come back and are
dropped here; readouts see the caller's rows only.

Position checks run here, before any trace: a selector that does not fit a text (`{first: 5}` of a 3-token
text, index 7 of it) is a DataError naming the spec field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..compile.plan import Plan, SourceRow, label_language
from ..compile.positions import PositionSelect
from ..errors import DataError
from .batching import longest_first, token_lengths
from .readouts import Readout


def source_signature(plan: Plan | None) -> tuple[str, ...]:
    """The source keys a plan reads (empty: it needs no source rows); plans with one signature share batches."""
    return tuple(sorted(plan.sources())) if plan is not None else ()


@dataclass(frozen=True)
class Layout:
    """The caller's rows (0..n-1) and their source rows (n..), with each batch's row indices."""

    texts: list
    """Each row's input: a text, or token ids (`read_tokens_many`)."""
    labels: list
    """A language per caller row, a SourceRow per source row (the executors pass them to `row_inputs`)."""
    batches: list[list[int]]
    n: int
    target_of: dict[int, int]
    """Source row -> the caller row it serves."""


def parallel_for(plans: Sequence[Plan], texts: Sequence[str], languages: Sequence[str],
                 parallel: Mapping[str, Sequence[str | None]] | None) -> dict[str, Sequence[str | None]]:
    """The rows' parallel texts in every language the plans patch from, as given (one per row, None for a row
    with no parallel text)."""
    wanted = tuple(sorted({code for plan in plans for source in plan.sources().values() for code in source.languages}))
    if not wanted:
        return {}
    given = dict(parallel or {})
    missing = tuple(code for code in wanted if code not in given)
    if missing:
        raise DataError(f"a plan patches from {', '.join(missing)}, but no parallel texts in it were given",
                        where="patch source",
                        fix="pass parallel={language: [one text per row]} (the evaluation runner gives the task's "
                            "own parallel items)")
    for code in wanted:
        if len(given[code]) != len(texts):
            raise DataError(f"got {len(given[code])} parallel texts in {code} for {len(texts)} rows",
                            where="patch source", fix="give one parallel text per row")
    return given


def layout(lengths: Sequence[int], plans: Sequence[Plan], texts: Sequence, languages: Sequence[str],
           parallel: Mapping[str, Sequence[str | None]], batch_size: int) -> Layout:
    """Batches of caller rows, longest first (`lengths`: each row's tokens), each followed by its rows' source
    rows; a batch holds about `batch_size` rows in all (at least one caller row). `texts` may be token id rows
    when every source is a condition (a copy of the row itself)."""
    sources = {key: source for plan in plans for key, source in plan.sources().items()}
    needs = [[key for key in sources
              if any(op.rows.applies(language) for plan in plans for op in plan.ops if key in op.sources())]
             for language in languages]
    members = max((sum(sources[key].members for key in keys) for keys in needs), default=0)
    all_texts, labels, target_of, batches = list(texts), list(languages), {}, []
    for index in longest_first(lengths, max(1, batch_size // (1 + members))):
        rows = list(index)
        for local, i in enumerate(index):
            for key in needs[i]:
                source = sources[key]
                for member in range(source.members):
                    if source.condition is not None:
                        text, language = texts[i], languages[i]
                    else:
                        language = source.languages[member]
                        text = parallel[language][i]
                        if text is None:
                            raise DataError(f"row {i} ({languages[i]}) has no parallel text in {language}",
                                            where="patch source",
                                            fix="give a parallel text for every row a patch touches")
                    target_of[len(all_texts)] = i
                    rows.append(len(all_texts))
                    all_texts.append(text)
                    labels.append(SourceRow(language, key, local, member))
        batches.append(rows)
    return Layout(all_texts, labels, batches, len(texts), target_of)


def _selects(op) -> bool:
    """Whether an op acts at chosen positions or reads a source (its selectors may not fit a text)."""
    return op.positions.mode != "all" or bool(op.sources())


def selects_positions(plans: Sequence[Plan | None]) -> bool:
    """Whether some op of the plans acts at chosen positions or reads a source."""
    return any(_selects(op) for plan in plans if plan is not None for op in plan.ops)


def check_positions(tokenizer, plans: Sequence[Plan], texts: Sequence[str], labels: Sequence, max_length: int,
                    sources_of: Mapping[int, list[int]] | None = None) -> None:
    """Every position selector fits every text it acts on (a patch's source selector: every source text), before
    any trace runs. `sources_of`: row -> its source rows."""
    if selects_positions(plans):
        check_positions_in(plans, token_lengths(tokenizer, texts, max_length), labels, sources_of)


def check_positions_in(plans: Sequence[Plan], lengths: Sequence[int], labels: Sequence,
                       sources_of: Mapping[int, list[int]] | None = None) -> None:
    """`check_positions` on rows of the given token counts."""
    selecting = [op for plan in plans if plan is not None for op in plan.ops if _selects(op)]
    for op in selecting:
        for row, label in enumerate(labels):
            if not op.rows.applies(label):
                continue
            _fits(op.positions, lengths[row], row, label)
            for source_row in (sources_of or {}).get(row, []):
                if labels[source_row].source in op.sources():
                    _fits(op.source_positions, lengths[source_row], source_row, labels[source_row])


def _fits(select: PositionSelect, length: int, row: int, label) -> None:
    try:
        select.token_indices(length)
    except ValueError as error:
        raise DataError(f"{error} (row {row}, {label_language(label)}: {length} tokens)",
                        where=select.where or "positions",
                        fix="choose positions every text has, e.g. `last` or a smaller N") from None


def sources_by_row(labels: Sequence, batches: list[list[int]]) -> dict[int, list[int]]:
    """Caller row -> its source rows (for position checks)."""
    out: dict[int, list[int]] = {}
    for index in batches:
        for row in index:
            label = labels[row]
            if isinstance(label, SourceRow):
                out.setdefault(index[label.target], []).append(row)
    return out


class SourceRowsReadout(Readout):
    """A readout over batches with source rows: the inner readout's trace and result, its per-row inputs of a
    source row taken from the row it serves (they are dropped from the result anyway)."""

    def __init__(self, inner: Readout, target_of: Mapping[int, int]):
        self.inner, self.target_of = inner, target_of
        for name in ("outputs", "stackable", "compares_with_base", "call_kwargs", "row_extras", "shares_prefix",
                     "label"):
            setattr(self, name, getattr(inner, name))

    @property
    def read_layer(self):
        return self.inner.read_layer

    def body(self, plan: Plan, indent: str) -> str:
        return self.inner.body(plan, indent)

    def source(self, base_logprobs: str) -> str:
        return self.inner.source(base_logprobs)

    def tail(self, *, save: bool = True, base_logprobs=None):
        return self.inner.tail(save=save) if base_logprobs is None else self.inner.tail(save=save,
                                                                                        base_logprobs=base_logprobs)

    def row_width(self, config) -> int:
        return self.inner.row_width(config)

    def per_row_extras(self):
        return self.inner.per_row_extras()

    def extra(self, tokenizer, inputs, index):
        return self.inner.extra(tokenizer, inputs, [self.target_of.get(i, i) for i in index])

    def assemble(self, rows, batches, config):
        return self.inner.assemble(rows, batches, config)


def caller_rows(batches: list, n: int) -> list:
    """Per batch (row indices, value): only the caller's rows (they come first in every batch)."""
    out = []
    for index, value in batches:
        keep = sum(1 for i in index if i < n)
        out.append((index[:keep], first_rows(value, keep)))
    return out


def first_rows(value, count: int):
    if isinstance(value, torch.Tensor):
        return value[:count]
    if isinstance(value, (tuple, list)):
        return type(value)(first_rows(item, count) for item in value)
    if isinstance(value, dict):
        return {key: first_rows(item, count) for key, item in value.items()}
    return value
