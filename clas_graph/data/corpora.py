"""Parallel corpora besides the Bible: XQuAD and local tables, behind one registry.

Every loader returns :class:`~clas_graph.data.bible.ParallelSample` objects
(the same content in several languages) and selects them the same way: the
corpus's canonical order, or a ``random.Random(seed)`` shuffle of it, then the
slice ``[offset, offset + limit)``. Calls with the same arguments agree and
consecutive offsets are disjoint (statistics vs held-out evaluation).

Typical use::

    load_parallel("xquad", ["en", "de"], limit=100)                  # from the hub
    load_parallel("xquad", ["en", "de"], limit=100,
                  data_files={"en": "xquad.en.json", "de": "xquad.de.json"})
    load_parallel("file", ["en", "de"], path="pairs.csv", id_column="id", limit=50)
"""

from __future__ import annotations

import difflib
import inspect
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .bible import ParallelSample, load_bible
from .files import CORPUS_EXTENSIONS, local_file, read_columns, require_columns
from .languages import XQUAD_HUB, XQUAD_LANGUAGES
from .xquad import read_xquad

Columns = dict[str, list]


# --- shared helpers ---------------------------------------------------------


def _languages(languages: Sequence[str]) -> list[str]:
    langs = [languages] if isinstance(languages, str) else list(languages)
    if not langs:
        raise DataError("languages is empty", fix="name at least one language code")
    if len(set(langs)) != len(langs):
        raise DataError(f"languages has duplicates: {langs}")
    return langs


def _text(value: Any) -> str:
    """Cell value -> stripped text; null (None, NaN) -> ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _select(
    samples: list[ParallelSample], *, limit: int, offset: int, seed: int | None, what: str
) -> list[ParallelSample]:
    """Slice ``[offset, offset + limit)`` of the canonical or seeded order."""
    if limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    if offset < 0:
        raise DataError(f"offset must be >= 0, got {offset}")
    order = list(samples)
    if seed is not None:
        random.Random(seed).shuffle(order)
    if offset + limit > len(order):
        raise DataError(
            f"only {len(order)} {what} exist; asked for offset + limit = "
            f"{offset} + {limit} = {offset + limit}",
            fix=f"keep offset + limit <= {len(order)}",
        )
    return order[offset : offset + limit]


# --- XQuAD -------------------------------------------------------------------


def _align_xquad(tables: dict[str, tuple[str, Columns]], field: str) -> list[ParallelSample]:
    """Samples aligned across languages by question id, in the first language's order."""
    langs = list(tables)
    by_id: dict[str, dict[str, str]] = {}  # lang -> question id -> text
    for lang, (where, columns) in tables.items():
        texts: dict[str, str] = {}
        for number, (raw_id, value) in enumerate(zip(columns["id"], columns[field])):
            qid = _text(raw_id)
            if not qid:
                raise DataError(f"row {number} ({lang!r}) has no question id", where=where)
            if qid in texts:
                raise DataError(f"question id {qid!r} appears twice in {lang!r}", where=where)
            texts[qid] = _text(value)
        by_id[lang] = texts

    first = langs[0]
    order = list(by_id[first])
    for lang in langs[1:]:
        missing = [qid for qid in order if qid not in by_id[lang]]
        extra = [qid for qid in by_id[lang] if qid not in by_id[first]]
        if missing or extra:
            qid, has, lacks = (missing[0], first, lang) if missing else (extra[0], lang, first)
            raise DataError(
                f"XQuAD is misaligned: question id {qid!r} is in {has!r} but not in {lacks!r} "
                f"({len(missing) + len(extra)} ids differ between {first!r} and {lang!r})",
                where=tables[lacks][0],
                fix="use files of the same XQuAD version and split for every language",
            )

    # A paragraph is the tuple of its texts in all languages: questions sharing
    # it collapse into one sample named by its first question id.
    samples: dict[Any, ParallelSample] = {}
    for qid in order:
        texts = {lang: by_id[lang][qid] for lang in langs}
        key = tuple(texts.values()) if field == "context" else qid
        samples.setdefault(key, ParallelSample(id=qid, texts=texts))
    for sample in samples.values():
        for lang, text in sample.texts.items():
            if not text:
                what = f"sample {sample.id!r} has an empty {field} in {lang!r}"
                raise DataError(what, where=tables[lang][0])
    return list(samples.values())


def load_xquad_parallel(
    languages: Sequence[str],
    *,
    split: str = "validation",
    field: str = "context",
    limit: int,
    offset: int = 0,
    seed: int | None = 0,
    data_files: Mapping[str, str | Path] | None = None,
    hub_id: str = XQUAD_HUB,
    base_dir: Path | None = None,
) -> list[ParallelSample]:
    """Return ``limit`` XQuAD samples (Artetxe et al.) aligned across ``languages``.

    XQuAD translates the same SQuAD questions into every language and keeps
    their ids, so question id X in English is parallel to question id X in
    German. ``field="context"`` gives one sample per distinct paragraph (the
    questions sharing it collapse; the sample id is its first question id),
    ``field="question"`` one sample per question id.

    Data comes from the hub (``datasets.load_dataset(hub_id, f"xquad.{lang}",
    split=split)``) or, with ``data_files`` (language -> path, relative to
    ``base_dir``), from local files in the hub's columns (``id``, ``context``,
    ``question``): .json/.jsonl records, the original SQuAD-nested XQuAD JSON,
    .csv or .parquet, read by :func:`~clas_graph.data.xquad.read_xquad` (the
    one XQuAD reader, which the QA task uses too). Canonical order is the
    first language's row order; with an int ``seed`` it is shuffled by
    ``random.Random(seed)``; the result is the slice ``[offset, offset + limit)``.

    Raises DataError for a language without a file or not on the hub, an
    unreachable hub (offline), a missing file or column, a question id present
    in one language but not another, an empty text, or too few samples.
    """
    langs = _languages(languages)
    if field not in ("context", "question"):
        raise DataError(f"field must be 'context' or 'question', got {field!r}")
    # Check every language before loading any: no hub wait ends in a typo error.
    for lang in langs:
        if data_files is not None and lang not in data_files:
            raise DataError(
                f"no XQuAD file for {lang!r} in data_files (has: {', '.join(data_files) or 'none'})",
                fix=f"add `{lang}: path` to data_files, or drop {lang!r}",
            )
        if data_files is None and hub_id == XQUAD_HUB and lang not in XQUAD_LANGUAGES:
            close = difflib.get_close_matches(lang, XQUAD_LANGUAGES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(
                f"XQuAD has no language {lang!r}{hint}",
                fix=f"pick from {', '.join(XQUAD_LANGUAGES)}, or give local files with `data_files`",
            )
    fix = ("pick another hub_id" if data_files is None
           else "XQuAD files need the hub's columns id, context, question (or SQuAD JSON)")
    tables: dict[str, tuple[str, Columns]] = {}
    for lang in langs:
        where, columns = read_xquad(lang, split=split, data_files=data_files, base_dir=base_dir, hub_id=hub_id,
                                    mode="corpus")
        require_columns(columns, ["id", field], where=where, fix=fix)
        tables[lang] = (where, {"id": columns["id"], field: columns[field]})
    samples = _align_xquad(tables, field)
    what = "XQuAD paragraphs" if field == "context" else "XQuAD questions"
    return _select(samples, limit=limit, offset=offset, seed=seed, what=what)


# --- local tables ---------------------------------------------------------------


def load_file_parallel(
    path: str | Path,
    languages: Sequence[str],
    *,
    id_column: str | None = None,
    limit: int,
    offset: int = 0,
    seed: int | None = 0,
    base_dir: Path | None = None,
) -> list[ParallelSample]:
    """Return ``limit`` samples of a local table with one column per language.

    ``path`` (relative to ``base_dir``) is a .jsonl/.json, .csv or .parquet
    table such as ``id,en,de,fr``; each row is one sample. The sample id is
    the ``id_column`` cell, or the 0-based row number. Selection works as in
    :func:`load_xquad_parallel` (row order, seeded shuffle, slice).

    Raises DataError for a missing file, an unsupported extension, a missing
    language or id column (listing the columns there are), an empty or null
    cell (naming the row and language), a duplicate id, or too few rows.
    """
    langs = _languages(languages)
    file = local_file(path, base_dir, CORPUS_EXTENSIONS)
    columns = read_columns(file, typed=False, squad="lenient")
    needed = [*langs, *([id_column] if id_column is not None else [])]
    require_columns(columns, needed, where=str(file), fix="name existing columns (one per language code)")

    samples: list[ParallelSample] = []
    seen: set[str] = set()
    for number in range(len(columns[langs[0]])):
        sample_id = _text(columns[id_column][number]) if id_column is not None else str(number)
        label = f"row {number}" if id_column is None else f"sample {sample_id!r} (row {number})"
        if not sample_id:
            raise DataError(f"row {number} has an empty {id_column!r}", where=str(file))
        if sample_id in seen:
            raise DataError(f"{label}: id {sample_id!r} appears twice in {id_column!r}", where=str(file))
        seen.add(sample_id)
        texts = {lang: _text(columns[lang][number]) for lang in langs}
        for lang, text in texts.items():
            if not text:
                raise DataError(f"{label} has an empty {lang!r} cell", where=str(file))
        samples.append(ParallelSample(id=sample_id, texts=texts))
    return _select(samples, limit=limit, offset=offset, seed=seed, what=f"rows in {file.name}")


# --- registry -------------------------------------------------------------------

#: Corpus kind -> loader ``loader(languages=..., **options)``.
CORPORA: dict[str, Callable[..., list[ParallelSample]]] = {
    "bible": load_bible,
    "xquad": load_xquad_parallel,
    "file": load_file_parallel,
}


def load_parallel(
    kind: str, languages: Sequence[str], *, base_dir: Path | None = None, **options: Any
) -> list[ParallelSample]:
    """Load parallel samples from corpus ``kind`` (a key of :data:`CORPORA`).

    ``options`` are the loader's keyword arguments (``limit``, ``offset``,
    ``seed``, ``path``, ``data_files``, ...). ``base_dir`` (the spec's folder)
    reaches only loaders that read files, so callers may always pass it.
    """
    loader = CORPORA.get(kind)
    if loader is None:
        close = difflib.get_close_matches(str(kind), CORPORA, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown corpus {kind!r}{hint}", fix=f"use one of {', '.join(CORPORA)}")
    params = inspect.signature(loader).parameters
    accepted = [name for name in params if name != "languages"]
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            what = f"corpus {kind!r} has no option {name!r}{hint}"
            raise DataError(what, fix=f"options: {', '.join(accepted)}")
    missing = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in options]
    if missing:
        raise DataError(f"corpus {kind!r} needs option {missing[0]!r}")
    if "base_dir" in params:
        options["base_dir"] = base_dir
    return loader(languages=languages, **options)


def load_corpus(corpus, languages: Sequence[str], base_dir: Path | None) -> list[ParallelSample]:
    """Parallel samples for a corpus spec (`spec.corpora`: bible, xquad or file)."""
    options = corpus.model_dump(exclude={"kind"})
    return load_parallel(corpus.kind, list(languages), base_dir=base_dir, **options)
