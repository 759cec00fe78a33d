"""XQuAD (extractive QA) rows, items and prompts.

:func:`read_xquad` is the one reader of XQuAD: it gives one language's rows as columns (``id``, ``context``,
``question``, ``answers``), from the Hugging Face hub (``datasets.load_dataset(hub_id, "xquad.<language>")``)
or from a local file per language given in ``data_files`` (relative paths resolve against ``base_dir``, e.g.
the spec file's folder). The QA task (:func:`load_xquad_qa`) and the parallel corpus
(:func:`clas_graph.data.corpora.load_xquad_parallel`) both read through it.

Local files use the hub's column names ``id``, ``context``, ``question``, ``answers`` (``{"text": [...],
"answer_start": [...]}``, or a list of ``{"text": ...}``, or a list of strings) as ``.jsonl``/``.json`` or
``.parquet``; or the original SQuAD-style nested JSON ``{"data": [{"paragraphs": [{"context", "qas":
[{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``.

A QA subset is the ids ``random.Random(seed).sample(sorted(ids), limit)``, returned in file order: the same
questions in every language of a parallel set (XQuAD shares ids across languages) of the same size.

Typical use::

    examples = load_xquad_qa("de", limit=100)                         # hub, seeded subset
    examples = load_xquad_qa("de", data_files={"de": "xquad.de.json"})  # local file (SQuAD JSON)
    prompts = [xquad_prompt(ex) for ex in examples]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import DataError
from .files import CORPUS_EXTENSIONS, local_file, read_columns, reason
from .languages import XQUAD_HUB, XQUAD_LANGUAGES
from .source import (
    check_hub_language,
    check_language,
    check_limit,
    check_size,
    hub_refusal,
    load_hub,
    read_task_file,
    require_task_columns,
    task_file,
    text_cell,
)
from .templates import render

__all__ = ["XQUAD_COLUMNS", "XQUAD_PROMPT", "QaExample", "load_xquad_qa", "read_xquad", "xquad_prompt"]

XQUAD_COLUMNS: tuple[str, ...] = ("id", "context", "question", "answers")
"""The columns of XQuAD rows (the hub's; a SQuAD-nested JSON file is flattened into them)."""

XQUAD_PROMPT = (
    "Answer the question using a short span from the context.\n\n"
    "Context: {context}\n"
    "Question: {question}\n"
    "Answer:"
)
"""The XQuAD task's default prompt."""


@dataclass(frozen=True)
class QaExample:
    """One extractive QA question; ``answers`` holds every gold answer text (at least one)."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]


def xquad_prompt(example: QaExample, template: str = XQUAD_PROMPT) -> str:
    """``template`` filled with the example's ``{context}`` and ``{question}``."""
    return render(template, context=example.context, question=example.question)


# --- the rows -------------------------------------------------------------------------------------------------


def read_xquad(
    language: str,
    *,
    split: str = "validation",
    data_files: Mapping[str, str | Path] | None = None,
    base_dir: str | Path | None = None,
    hub_id: str = XQUAD_HUB,
    mode: Literal["task", "corpus"] = "task",
) -> tuple[str, dict[str, list]]:
    """``(where, columns)``: the XQuAD rows of one language as columns, and where they came from (the file's
    path, or ``"<hub_id> (xquad.<language>, <split>)"``).

    Source: ``data_files[language]`` if ``data_files`` is given (``split`` is then unused), else
    ``datasets.load_dataset(hub_id, f"xquad.{language}", split=split)``. The columns are checked by the
    caller (each needs different ones). Both modes read the same rows from the same source; they keep what
    each caller has always accepted and said (see :mod:`~clas_graph.data.files`):

    * ``"task"`` (:func:`load_xquad_qa`): a file of any of ``TASK_EXTENSIONS`` (``~`` in ``base_dir``
      expanded), typed cells, strict SQuAD JSON (a missing key is an error); errors name
      ``"XQuAD file/data for language 'de'"``.
    * ``"corpus"`` (:func:`~clas_graph.data.corpora.load_xquad_parallel`, which uses only ``id`` and one
      text column): a file of ``CORPUS_EXTENSIONS``, cells as written, lenient SQuAD JSON (a missing key
      reads as None); errors name the file by its path; ``data_files`` must have ``language`` (the corpus
      checks all its languages first).

    Raises DataError for a missing file or language entry, an unsupported extension, an unreadable file, or
    a hub that cannot be reached (e.g. offline).
    """
    config = f"xquad.{language}"
    corpus = mode == "corpus"
    if data_files is None:
        where = f"{hub_id} ({config}, {split})"
        refuse = _corpus_refusal(language, where) if corpus else hub_refusal("XQuAD", hub_id, config, split, language)
        return where, load_hub(hub_id, config, split, refuse)
    if corpus:
        file = local_file(data_files[language], base_dir, CORPUS_EXTENSIONS)
        return str(file), read_columns(file, typed=False, squad="lenient")
    path = task_file("XQuAD", language, data_files, base_dir)
    return str(path), read_task_file(path, "XQuAD", language, squad=True)


def _corpus_refusal(language: str, where: str) -> Callable[[Exception], DataError]:
    fix = f"give local files with `data_files: {{{language}: path}}`"

    def refuse(err: Exception) -> DataError:
        if isinstance(err, ConnectionError):  # offline or unreachable; datasets' own retries already ran
            return DataError(f"cannot load XQuAD for {language!r} from the hub (offline?)", fix=fix)
        # unknown split/config, hub errors: one line, no traceback
        return DataError(f"cannot load XQuAD for {language!r} from the hub ({reason(err)})", where=where, fix=fix)

    return refuse


# --- QA items ---------------------------------------------------------------------------------------------------


def _answer_texts(value: Any) -> list[str] | None:
    """Answer texts of the hub's ``{"text": [...]}``, a list of ``{"text"}`` or of strings."""
    if isinstance(value, Mapping):
        value = value.get("text")
        if isinstance(value, str):
            return [value]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        return None
    texts = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("text")
        if not isinstance(item, str):
            return None
        texts.append(item)
    return texts


def load_xquad_qa(
    language: str,
    *,
    split: str = "validation",
    limit: int | None = None,
    seed: int = 0,
    data_files: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
    hub_id: str = XQUAD_HUB,
    exclude: Collection[str] = (),
) -> list[QaExample]:
    """XQuAD questions of one language, all or a seeded subset of ``limit`` questions.

    Source: ``data_files[language]`` if ``data_files`` is given (hub columns as jsonl/json/
    parquet, or SQuAD-style nested JSON; ``split`` is then unused), else
    ``datasets.load_dataset(hub_id, f"xquad.{language}", split=split)`` (read by :func:`read_xquad`). The
    subset is the ids ``random.Random(seed).sample(sorted(ids), limit)``, returned in file order: the same
    questions in every language of a parallel set (XQuAD shares ids across languages). Ids in
    ``exclude`` are left out before sampling (a dev subset disjoint from a test subset).

    Raises DataError for a missing file or language entry, an unreadable file, missing
    columns or keys, duplicate ids, questions without an answer text, ``limit`` above the
    number of questions, or a hub that cannot be reached (e.g. offline).
    """
    check_language(language)
    limit = check_limit(limit, seed)
    if data_files is None and hub_id == XQUAD_HUB:
        check_hub_language("XQuAD", language, XQUAD_LANGUAGES)
    where, columns = read_xquad(language, split=split, data_files=data_files, base_dir=base_dir, hub_id=hub_id)
    require_task_columns(columns, XQUAD_COLUMNS, "XQuAD", language, where)

    ids = [text_cell(v, "id", i, "XQuAD", language, where) for i, v in enumerate(columns["id"])]
    seen: set[str] = set()
    for qid in ids:
        if qid in seen:
            raise DataError(
                f"XQuAD data for language {language!r} has id {qid!r} more than once",
                where=where,
                fix="give every question a unique id",
            )
        seen.add(qid)
    excluded = set(exclude)
    pool = [qid for qid in ids if qid not in excluded]
    check_size(len(pool), limit, "XQuAD", language, where, len(excluded))
    rows = [i for i, qid in enumerate(ids) if qid not in excluded]
    if limit is not None:
        chosen = set(random.Random(seed).sample(sorted(pool), limit))
        rows = [i for i, qid in enumerate(ids) if qid in chosen]

    examples = []
    for i in rows:
        qid = ids[i]
        answers = _answer_texts(columns["answers"][i])
        if answers is None:
            raise DataError(
                f"XQuAD data for language {language!r}: question {qid!r} has malformed "
                f"answers {columns['answers'][i]!r}",
                where=where,
                fix='write answers as {"text": [...], "answer_start": [...]}',
            )
        if not any(text.strip() for text in answers):
            raise DataError(
                f"XQuAD data for language {language!r}: question {qid!r} has no answer text",
                where=where,
            )
        examples.append(
            QaExample(
                id=qid,
                context=text_cell(columns["context"][i], "context", qid, "XQuAD", language, where),
                question=text_cell(columns["question"][i], "question", qid, "XQuAD", language, where),
                answers=tuple(answers),
            )
        )
    return examples
