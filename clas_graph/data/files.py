"""Local data files: find one (relative to the spec's folder), check its extension, read it into columns.

Every loader that reads a local table goes through :func:`local_file`, :func:`read_columns` and
:func:`require_columns`. The result is always ``{column: [value per row]}``; a JSON record without a key
gives None in that column.

The loaders differ in what they accept, and say so through explicit parameters, never a copy of the code:

* ``extensions``: the suffixes (matched case-insensitively) a loader accepts, listed in that order in the
  error that refuses another one: :data:`TASK_EXTENSIONS` (the task loaders) or :data:`CORPUS_EXTENSIONS`
  (the parallel corpora). :data:`FORMATS` names the format of every suffix any loader knows.
* ``typed``: how cells are read.

  - ``True`` (the task loaders): through ``datasets``' builders, as the hub's data are. CSV/TSV numbers
    become numbers, an empty cell is None; a JSON column must keep one type. ``.tsv`` is tab separated with
    no quoting (quote marks are text).
  - ``False`` (the parallel corpora): with pandas, pyarrow and ``json``. Every CSV cell is text as written
    (``"007"`` stays, ``"NA"`` is a word, an empty cell is ``""``); JSON and parquet values are kept as
    stored. A JSON document is a list of records, one record, or ``{"data": [records]}``; anything else,
    and any file that is not one ``.json`` document, is read as JSON lines.
* ``squad``: whether a ``.json`` file may be SQuAD-nested (``{"data": [{"paragraphs": [{"context", "qas":
  [{"id", "question", "answers"}]}]}]}``), flattened into the columns ``id, context, question, answers``.

  - ``"strict"``: any JSON object with a ``data`` key is SQuAD; every key must be there (the error names
    the place that lacks it); a null list holds nothing.
  - ``"lenient"``: only ``{"data": [{"paragraphs": ...}, ...]}`` is SQuAD; a missing key reads as None (a
    missing list as empty), for loaders that use only some of the columns.
  - None: JSON is never SQuAD.
* ``name`` and ``subject``: how errors name the file (``"XNLI file for language 'de'"``) and its content
  (``"XNLI data for language 'de'"``). Without them errors name the file by its path only.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import DataError

__all__ = [
    "CORPUS_EXTENSIONS",
    "FORMATS",
    "TASK_EXTENSIONS",
    "local_file",
    "quiet_datasets",
    "read_columns",
    "reason",
    "require_columns",
]

#: Every suffix a loader may accept -> the format it is read as.
FORMATS: dict[str, str] = {
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

#: File types a task's local file may have (the task loaders read them typed, through ``datasets``).
TASK_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".tsv")

#: File types a parallel corpus's local table may have (corpora read them plain: every CSV cell as text).
CORPUS_EXTENSIONS: tuple[str, ...] = (".json", ".jsonl", ".csv", ".parquet")

SQUAD_LAYOUT_FIX = (
    'use the SQuAD layout {"data": [{"paragraphs": [{"context", "qas": '
    '[{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}'
)

Columns = dict[str, list]


def reason(err: BaseException) -> str:
    """First line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars from ``datasets`` while a loader reads (restored afterwards)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


# --- finding a file ---------------------------------------------------------------------------------------


def local_file(
    path: str | Path, base_dir: str | Path | None, extensions: Sequence[str], *, name: str | None = None
) -> Path:
    """The file at ``path`` (``~`` expanded; a relative path starts at ``base_dir``), checked to exist and to
    have one of ``extensions``.

    ``base_dir`` is used as given (a caller that allows ``~`` in it expands it first). Raises DataError for a
    missing file or another extension; with ``name`` the errors start with it and point at ``data_files``.
    """
    file = Path(path).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = Path(base_dir) / file
        _refuse_link_outside(file, Path(base_dir), path)
    if not file.is_file():
        if name is None:
            raise DataError(
                f"file {file} does not exist", fix="check the path (relative paths start at the spec's folder)"
            )
        raise DataError(
            f"{name} not found",
            where=str(file),
            fix="check the path in data_files (relative paths start at the spec's folder)",
        )
    if file.suffix.lower() not in extensions:
        if name is None:
            what = f"unsupported file type {file.suffix.lower() or '(none)'!r}"
        else:
            what = f"{name} has an unsupported extension {file.suffix or '(none)'!r}"
        raise DataError(what, where=str(file), fix=f"use one of {', '.join(extensions)}")
    return file


def _refuse_link_outside(file: Path, base_dir: Path, written: str | Path) -> None:
    """A relative path whose symbolic links lead out of the spec's folder is refused: a folder of specs someone
    shared could otherwise make a run read any file of yours (a path written with `..` or absolute is explicit,
    and allowed)."""
    real = file.resolve()
    lexical = Path(os.path.abspath(file))
    if real == lexical or base_dir.resolve() in real.parents:
        return
    raise DataError(f"'{written}' is a symbolic link to {real}, outside the spec's folder {base_dir.resolve()}",
                    where=str(file), fix=f"write the absolute path {real} in the spec if you mean to read that file")


# --- reading it -------------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A file the plain reader cannot take, with the reason in words."""


def read_columns(
    file: Path,
    *,
    typed: bool,
    squad: Literal["strict", "lenient"] | None = None,
    name: str | None = None,
    subject: str | None = None,
) -> Columns:
    """Columns of a local table whose suffix is in :data:`FORMATS` (see the module docstring for ``typed``,
    ``squad``, ``name`` and ``subject``).

    Raises DataError naming the file when it cannot be parsed, or (``squad="strict"``) when a SQuAD file lacks
    a key.
    """
    suffix = file.suffix.lower()
    fmt = FORMATS[suffix]
    where = str(file)
    try:
        if typed:
            if squad is not None and suffix == ".json":
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):  # the builder reports it
                    columns = _squad_document(json.loads(file.read_text(encoding="utf-8")), squad, subject, where)
                    if columns is not None:
                        return columns
            return _read_typed(file, fmt)
        return _read_plain(file, fmt, squad, subject)
    except DataError:
        raise
    except _Unreadable as err:
        if name is None:
            raise DataError(str(err), where=where, fix=_FIX_UNREADABLE) from None
        raise DataError(f"{name} could not be read as {fmt}: {err}", where=where, fix=_FIX_UNREADABLE) from None
    except Exception as err:  # parser, arrow, decoding errors come in many types; all mean "bad file"
        if not typed and not isinstance(err, (ValueError, OSError)):
            raise
        if name is None:
            raise DataError(f"cannot read {suffix[1:]} file ({err})", where=where, fix=_FIX_UNREADABLE) from None
        raise DataError(f"{name} could not be read as {fmt}: {reason(err)}", where=where,
                        fix=_FIX_UNREADABLE) from None


_FIX_UNREADABLE = "correct the file, or give it the extension of its format (.jsonl, .json, .csv, .tsv, .parquet)"


def _read_typed(file: Path, fmt: str) -> Columns:
    import datasets

    builder, options = fmt, {}
    if fmt == "tsv":
        builder, options = "csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}
    # A throw-away cache: local files are small, and the user's cache stays clean.
    with quiet_datasets(), tempfile.TemporaryDirectory(prefix="clas_graph_data_") as cache:
        dataset = datasets.load_dataset(
            builder, data_files=str(file), split="train", cache_dir=cache, keep_in_memory=True, **options
        )
        return dataset.to_dict()


def _read_plain(file: Path, fmt: str, squad: Literal["strict", "lenient"] | None, subject: str | None) -> Columns:
    if fmt in ("csv", "tsv"):
        import pandas as pd

        options = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
        # All cells as text: ids like "007" stay intact, "NA" stays a word, empty stays "".
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, **options)
        return frame.to_dict("list")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(file).to_pydict()
    text = file.read_text(encoding="utf-8")
    # Only a ".json" suffix (in this exact case) is tried as one JSON document; the rest is JSON lines.
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines saved as .json (the hub's loader accepts both)
        if data is not None:
            if squad is not None:
                columns = _squad_document(data, squad, subject, str(file))
                if columns is not None:
                    return columns
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            return _records(data if isinstance(data, list) else [data])
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise _Unreadable(f"line {number} is not valid JSON ({err.msg})") from None
    return _records(rows)


def _records(rows: list) -> Columns:
    """JSON records as columns, in the order their keys first appear; a record without a key gives None."""
    if not all(isinstance(row, dict) for row in rows):
        raise _Unreadable("expected JSON objects (one record per line) or SQuAD JSON")
    names = dict.fromkeys(key for row in rows for key in row)
    return {key: [row.get(key) for row in rows] for key in names}


def _squad_document(
    data: Any, squad: Literal["strict", "lenient"], subject: str | None, where: str
) -> Columns | None:
    """The flattened columns of a SQuAD-nested document, or None when ``data`` is not one."""
    strict = squad == "strict"
    if strict:
        if not isinstance(data, Mapping) or "data" not in data:
            return None
    elif not (
        isinstance(data, dict) and isinstance(data.get("data"), list) and data["data"]
        and isinstance(data["data"][0], dict) and "paragraphs" in data["data"][0]
    ):
        return None

    def get(obj: Any, key: str, at: str, default: Any = None) -> Any:
        if isinstance(obj, Mapping) and key in obj:
            return obj[key]
        if strict or not isinstance(obj, Mapping):
            what = f"{subject}: {at}" if subject else at
            raise DataError(f"{what} lacks key {key!r}", where=where, fix=SQUAD_LAYOUT_FIX)
        return default

    def items(obj: Any, key: str, at: str) -> Iterable:
        value = get(obj, key, at, [])
        return (value or []) if strict else value

    columns: Columns = {"id": [], "context": [], "question": [], "answers": []}
    articles = get(data, "data", "the top level")
    for a, article in enumerate(articles if isinstance(articles, list) else []):
        for p, paragraph in enumerate(items(article, "paragraphs", f"data[{a}]")):
            at = f"data[{a}].paragraphs[{p}]"
            context = get(paragraph, "context", at)
            for q, qa in enumerate(items(paragraph, "qas", at)):
                qat = f"{at}.qas[{q}]"
                columns["id"].append(get(qa, "id", qat))
                columns["context"].append(context)
                columns["question"].append(get(qa, "question", qat))
                columns["answers"].append(get(qa, "answers", qat))
    return columns


# --- checking its columns ---------------------------------------------------------------------------------


def require_columns(
    columns: Collection[str], needed: Sequence[str], *, where: str, fix: str, subject: str | None = None
) -> None:
    """Raise DataError unless every name in ``needed`` is among ``columns``, listing the columns there are.

    With ``subject`` the error names it and every missing column; without, the first missing one.
    """
    missing = [name for name in needed if name not in columns]
    if not missing:
        return
    found = ", ".join(map(str, columns)) or "none"
    if subject is None:
        raise DataError(f"missing column {missing[0]!r} (columns: {found})", where=where, fix=fix)
    named = ", ".join(repr(name) for name in missing)
    raise DataError(f"{subject} lacks column(s) {named} (found: {found})", where=where, fix=fix)
