"""Task data for the paper's evaluations: XNLI (classification) and XQuAD (extractive QA).

Each loader returns a list of small frozen dataclasses for one language, read either from the
Hugging Face hub (``datasets.load_dataset``) or from a local file per language given in
``data_files`` (relative paths resolve against ``base_dir``, e.g. the spec file's folder).
Local files use the hub's column names:

* XNLI: ``premise``, ``hypothesis``, ``label`` (0 entailment, 1 neutral, 2 contradiction; the
  names themselves are accepted too) as ``.jsonl``/``.json``, ``.csv``, ``.tsv`` (tab
  separated, no quoting: quote marks are text) or ``.parquet``.
* XQuAD: ``id``, ``context``, ``question``, ``answers`` (``{"text": [...], "answer_start":
  [...]}``, or a list of ``{"text": ...}``, or a list of strings) as ``.jsonl``/``.json`` or
  ``.parquet``; or the original SQuAD-style nested JSON ``{"data": [{"paragraphs":
  [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``.

Subsets are the same items in every language when the files are parallel (same rows / same
ids, as XNLI's and XQuAD's are): XNLI takes the row indices
``sorted(random.Random(seed).sample(range(n), limit))``; XQuAD takes the ids
``random.Random(seed).sample(sorted(ids), limit)``. Both return rows in file order. The
sample depends on ``n`` (the number of rows or ids), so languages agree only when their files
have the same size.

Typical use::

    examples = load_xnli("de", limit=500)                          # hub, seeded subset
    examples = load_xnli("de", data_files={"de": "xnli_de.jsonl"})  # local file
    prompts = [xnli_prompt(ex) for ex in examples]
"""

from __future__ import annotations

import difflib
import random
import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .files import local_file, quiet_datasets, read_columns, reason, require_columns
from .languages import XNLI_LANGUAGES, XQUAD_LANGUAGES

__all__ = [
    "QaExample",
    "XNLI_LABEL_NAMES",
    "XNLI_LANGUAGES",
    "XNLI_PROMPT",
    "XQUAD_LANGUAGES",
    "XQUAD_PROMPT",
    "XnliExample",
    "load_xnli",
    "load_xquad_qa",
    "render",
    "template_fields",
    "xnli_prompt",
    "xquad_prompt",
]

#: XNLI label id -> name (the hub's ClassLabel order).
XNLI_LABEL_NAMES: tuple[str, ...] = ("entailment", "neutral", "contradiction")

XNLI_PROMPT = (
    "Premise: {premise}\n"
    "Hypothesis: {hypothesis}\n"
    "Does the premise entail the hypothesis? "
    "Answer with a single number: 0 for entailment, 1 for neutral, 2 for contradiction.\n"
    "Answer:"
)
"""The XNLI task's default prompt (paper section 3.2: ask for one integer label token)."""
XQUAD_PROMPT = (
    "Answer the question using a short span from the context.\n\n"
    "Context: {context}\n"
    "Question: {question}\n"
    "Answer:"
)
"""The XQuAD task's default prompt."""


@dataclass(frozen=True)
class XnliExample:
    """One XNLI pair; ``label`` is 0 entailment, 1 neutral, 2 contradiction."""

    id: str
    premise: str
    hypothesis: str
    label: int


@dataclass(frozen=True)
class QaExample:
    """One extractive QA question; ``answers`` holds every gold answer text (at least one)."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]


# --- prompts -------------------------------------------------------------------


def template_fields(template: str) -> list[str]:
    """Placeholder names used by ``template`` (``"{premise}"`` -> ``["premise"]``), in order.

    Raises DataError for a malformed template (a lone ``{`` or ``}``) or a positional
    placeholder (``{}``, ``{0}``).
    """
    if not isinstance(template, str):
        raise DataError(f"a prompt template must be a string, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise DataError(
            f"prompt template is malformed ({err})",
            fix="write {{ and }} for literal braces",
        ) from None
    names: list[str] = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise DataError(
                f"prompt template has a positional placeholder {{{field}}}",
                fix="name every placeholder, e.g. {premise}",
            )
        if name != field:  # `{premise.__class__}`: a prompt reads fields, never their attributes or items
            raise DataError(f"prompt template placeholder {{{field}}} reads an attribute or item of a field",
                            fix=f"write the plain field, {{{name}}}")
        names.append(name)
        if spec and "{" in spec:
            names.extend(template_fields(spec))
    return names


def render(template: str, **fields: Any) -> str:
    """``template.format(**fields)``, after checking that every placeholder is a given field.

    Raises DataError naming the first unknown placeholder and the allowed ones, e.g.
    ``render("{premis}", premise=..., hypothesis=...)``.
    """
    for name in template_fields(template):
        if name not in fields:
            allowed = ", ".join(f"{{{key}}}" for key in fields) or "none"
            raise DataError(
                f"prompt template uses unknown placeholder {{{name}}}",
                fix=f"use only {allowed} (write {{{{ and }}}} for literal braces)",
            )
    try:
        return template.format(**fields)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"prompt template could not be filled in: {err}") from None


def xnli_prompt(example: XnliExample, template: str = XNLI_PROMPT) -> str:
    """``template`` filled with the example's ``{premise}`` and ``{hypothesis}``."""
    return render(template, premise=example.premise, hypothesis=example.hypothesis)


def xquad_prompt(example: QaExample, template: str = XQUAD_PROMPT) -> str:
    """``template`` filled with the example's ``{context}`` and ``{question}``."""
    return render(template, context=example.context, question=example.question)


# --- shared loading helpers ------------------------------------------------------

#: File types a task's local file may have (the task loaders read them typed, through ``datasets``).
TASK_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".tsv")


def _check_language(language: Any) -> str:
    if not isinstance(language, str) or not language.strip():
        raise DataError(f"language must be a non-empty code such as 'de', got {language!r}")
    return language


def _check_limit(limit: Any, seed: Any) -> int | None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def _local_file(
    task: str, language: str, data_files: Mapping[str, str] | None, base_dir: Any
) -> Path | None:
    """The local file for ``language``, or None to use the hub."""
    if data_files is None:
        return None
    if not isinstance(data_files, Mapping):
        raise DataError(
            f"{task} data_files must map language -> file path, got {type(data_files).__name__}"
        )
    if language not in data_files:
        have = ", ".join(map(str, data_files)) or "none"
        raise DataError(
            f"{task} data_files has no file for language {language!r} (has: {have})",
            fix=f"add '{language}: PATH' to data_files",
        )
    base = Path(base_dir).expanduser() if base_dir is not None else None
    return local_file(data_files[language], base, TASK_EXTENSIONS, name=_file_name(task, language))


def _file_name(task: str, language: str) -> str:
    return f"{task} file for language {language!r}"


def _data_name(task: str, language: str) -> str:
    return f"{task} data for language {language!r}"


def _read_local(path: Path, task: str, language: str, squad: bool = False) -> dict[str, list]:
    return read_columns(
        path,
        typed=True,
        squad="strict" if squad else None,
        name=_file_name(task, language),
        subject=_data_name(task, language),
    )


def _load_hub(task: str, hub_id: str, config: str, split: str, language: str) -> dict[str, list]:
    import datasets

    with quiet_datasets():
        try:
            ds = datasets.load_dataset(hub_id, config, split=split)
        except Exception as err:  # offline, unknown config/split, network: all say "use a file"
            raise DataError(
                f"Could not load {task} for language {language!r} from the Hugging Face hub "
                f"({hub_id}, config {config!r}, split {split!r}): {reason(err)}",
                fix=f"pass data_files={{'{language}': 'PATH'}} with a local file in the "
                "hub's columns",
            ) from None
    return ds.to_dict()


def _check_hub_language(task: str, language: str, known: Sequence[str]) -> None:
    if language not in known:
        close = difflib.get_close_matches(language.lower(), known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{task} on the hub has no language {language!r}.{hint} Available: {', '.join(known)}",
            fix=f"pick one of those, or pass data_files={{'{language}': 'PATH'}}",
        )


def _require_columns(
    columns: Mapping[str, list], required: Sequence[str], task: str, language: str, where: str
) -> None:
    require_columns(
        columns, required, where=where, fix=f"use the hub's column names: {', '.join(required)}",
        subject=_data_name(task, language),
    )


def _text(value: Any, column: str, row: Any, task: str, language: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, float) and value != value:  # None or NaN
        raise DataError(
            f"{task} data for language {language!r}: row {row} has no {column!r}", where=where
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # csv/tsv parse a number-only text as a number
    raise DataError(
        f"{task} data for language {language!r}: row {row} {column!r} must be text, "
        f"got {type(value).__name__}",
        where=where,
    )


# --- XNLI ---------------------------------------------------------------------------


def _xnli_label(value: Any, row: int, language: str, where: str) -> int:
    label: int | None = None
    if isinstance(value, bool):
        label = None
    elif isinstance(value, int):
        label = value
    elif isinstance(value, float) and value.is_integer():
        label = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in XNLI_LABEL_NAMES:
            label = XNLI_LABEL_NAMES.index(text)
        elif text.isdigit():
            label = int(text)
    if label not in (0, 1, 2):
        raise DataError(
            f"XNLI data for language {language!r}: row {row} has label {value!r}",
            where=where,
            fix="labels are 0 (entailment), 1 (neutral), 2 (contradiction) or those names",
        )
    return label


def load_xnli(
    language: str,
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    data_files: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
    hub_id: str = "facebook/xnli",
    exclude: Collection[str] = (),
) -> list[XnliExample]:
    """XNLI pairs of one language, all rows or a seeded subset of ``limit`` rows.

    Source: ``data_files[language]`` if ``data_files`` is given (the file holds that language's
    rows only; ``split`` then only names the ids), else
    ``datasets.load_dataset(hub_id, language, split=split)``. Columns ``premise``,
    ``hypothesis``, ``label``. The subset is the row indices
    ``sorted(random.Random(seed).sample(range(n), limit))``: the same rows for every language
    of a parallel set of the same size. Ids are ``f"{split}-{row index}"`` (index in the full
    file), so they match across languages. Rows whose id is in ``exclude`` are left out before
    sampling (a dev subset disjoint from a test subset of the same source).

    Raises DataError for a missing file or language entry, an unreadable file, missing
    columns, empty texts, labels other than 0/1/2 (or entailment/neutral/contradiction),
    ``limit`` above the number of rows, or a hub that cannot be reached (e.g. offline).
    """
    _check_language(language)
    limit = _check_limit(limit, seed)
    path = _local_file("XNLI", language, data_files, base_dir)
    if path is None:
        if hub_id == "facebook/xnli":
            _check_hub_language("XNLI", language, XNLI_LANGUAGES)
        columns = _load_hub("XNLI", hub_id, language, split, language)
        where = f"{hub_id} ({language}, {split})"
    else:
        columns = _read_local(path, "XNLI", language)
        where = str(path)
    _require_columns(columns, ("premise", "hypothesis", "label"), "XNLI", language, where)

    excluded = set(exclude)
    pool = [i for i in range(len(columns["label"])) if f"{split}-{i}" not in excluded]
    indices = _sample_indices(pool, limit, seed, "XNLI", language, where, len(excluded))
    return [
        XnliExample(
            id=f"{split}-{i}",
            premise=_text(columns["premise"][i], "premise", i, "XNLI", language, where),
            hypothesis=_text(columns["hypothesis"][i], "hypothesis", i, "XNLI", language, where),
            label=_xnli_label(columns["label"][i], i, language, where),
        )
        for i in indices
    ]


def _check_size(
    n: int, limit: int | None, task: str, language: str, where: str, excluded: int = 0
) -> None:
    left = f" after leaving out the {excluded} test items" if excluded else ""
    if n == 0:
        raise DataError(f"{task} data for language {language!r} has no rows{left}", where=where)
    if limit is not None and limit > n:
        raise DataError(
            f"{task} data for language {language!r} has {n} rows{left}, fewer than limit={limit}",
            where=where,
            fix=f"set limit to at most {n}, or leave it unset for all rows",
        )


def _sample_indices(
    pool: Sequence[int], limit: int | None, seed: int, task: str, language: str, where: str,
    excluded: int = 0,
) -> list[int]:
    """All of ``pool`` or a seeded sample of ``limit`` of it (without exclusions: rows 0..n-1, as before)."""
    _check_size(len(pool), limit, task, language, where, excluded)
    if limit is None:
        return list(pool)
    if not excluded:
        return sorted(random.Random(seed).sample(range(len(pool)), limit))
    return sorted(random.Random(seed).sample(list(pool), limit))


# --- XQuAD ----------------------------------------------------------------------------


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
    hub_id: str = "google/xquad",
    exclude: Collection[str] = (),
) -> list[QaExample]:
    """XQuAD questions of one language, all or a seeded subset of ``limit`` questions.

    Source: ``data_files[language]`` if ``data_files`` is given (hub columns as jsonl/json/
    parquet, or SQuAD-style nested JSON; ``split`` is then unused), else
    ``datasets.load_dataset(hub_id, f"xquad.{language}", split=split)``. The subset is the ids
    ``random.Random(seed).sample(sorted(ids), limit)``, returned in file order: the same
    questions in every language of a parallel set (XQuAD shares ids across languages). Ids in
    ``exclude`` are left out before sampling (a dev subset disjoint from a test subset).

    Raises DataError for a missing file or language entry, an unreadable file, missing
    columns or keys, duplicate ids, questions without an answer text, ``limit`` above the
    number of questions, or a hub that cannot be reached (e.g. offline).
    """
    _check_language(language)
    limit = _check_limit(limit, seed)
    path = _local_file("XQuAD", language, data_files, base_dir)
    if path is None:
        if hub_id == "google/xquad":
            _check_hub_language("XQuAD", language, XQUAD_LANGUAGES)
        config = f"xquad.{language}"
        columns = _load_hub("XQuAD", hub_id, config, split, language)
        where = f"{hub_id} ({config}, {split})"
    else:
        columns = _read_local(path, "XQuAD", language, squad=True)
        where = str(path)
    _require_columns(columns, ("id", "context", "question", "answers"), "XQuAD", language, where)

    ids = [_text(v, "id", i, "XQuAD", language, where) for i, v in enumerate(columns["id"])]
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
    _check_size(len(pool), limit, "XQuAD", language, where, len(excluded))
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
                context=_text(columns["context"][i], "context", qid, "XQuAD", language, where),
                question=_text(columns["question"][i], "question", qid, "XQuAD", language, where),
                answers=tuple(answers),
            )
        )
    return examples
