"""XNLI (classification) items and prompts: premise/hypothesis pairs with a 0/1/2 label.

:func:`load_xnli` returns a list of :class:`XnliExample` for one language, read either from the Hugging Face
hub (``datasets.load_dataset``) or from a local file per language given in ``data_files`` (relative paths
resolve against ``base_dir``, e.g. the spec file's folder). Local files use the hub's column names
``premise``, ``hypothesis``, ``label`` (0 entailment, 1 neutral, 2 contradiction; the names themselves are
accepted too) as ``.jsonl``/``.json``, ``.csv``, ``.tsv`` (tab separated, no quoting: quote marks are text)
or ``.parquet``.

A subset is the row indices ``sorted(random.Random(seed).sample(range(n), limit))``, in file order: the same
items in every language when the files are parallel (same rows, as XNLI's are) and of the same size ``n``.

Typical use::

    examples = load_xnli("de", limit=500)                          # hub, seeded subset
    examples = load_xnli("de", data_files={"de": "xnli_de.jsonl"})  # local file
    prompts = [xnli_prompt(ex) for ex in examples]
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .languages import XNLI_HUB, XNLI_LANGUAGES
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

__all__ = ["XNLI_LABEL_NAMES", "XNLI_PROMPT", "XnliExample", "load_xnli", "xnli_prompt"]

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


@dataclass(frozen=True)
class XnliExample:
    """One XNLI pair; ``label`` is 0 entailment, 1 neutral, 2 contradiction."""

    id: str
    premise: str
    hypothesis: str
    label: int


def xnli_prompt(example: XnliExample, template: str = XNLI_PROMPT) -> str:
    """``template`` filled with the example's ``{premise}`` and ``{hypothesis}``."""
    return render(template, premise=example.premise, hypothesis=example.hypothesis)


def _label(value: Any, row: int, language: str, where: str) -> int:
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
    hub_id: str = XNLI_HUB,
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
    check_language(language)
    limit = check_limit(limit, seed)
    path = task_file("XNLI", language, data_files, base_dir)
    if path is None:
        if hub_id == XNLI_HUB:
            check_hub_language("XNLI", language, XNLI_LANGUAGES)
        columns = load_hub(hub_id, language, split, hub_refusal("XNLI", hub_id, language, split, language))
        where = f"{hub_id} ({language}, {split})"
    else:
        columns = read_task_file(path, "XNLI", language)
        where = str(path)
    require_task_columns(columns, ("premise", "hypothesis", "label"), "XNLI", language, where)

    excluded = set(exclude)
    pool = [i for i in range(len(columns["label"])) if f"{split}-{i}" not in excluded]
    indices = _sample_indices(pool, limit, seed, language, where, len(excluded))
    return [
        XnliExample(
            id=f"{split}-{i}",
            premise=text_cell(columns["premise"][i], "premise", i, "XNLI", language, where),
            hypothesis=text_cell(columns["hypothesis"][i], "hypothesis", i, "XNLI", language, where),
            label=_label(columns["label"][i], i, language, where),
        )
        for i in indices
    ]


def _sample_indices(
    pool: Sequence[int], limit: int | None, seed: int, language: str, where: str, excluded: int = 0
) -> list[int]:
    """All of ``pool`` or a seeded sample of ``limit`` of it (without exclusions: rows 0..n-1, as before)."""
    check_size(len(pool), limit, "XNLI", language, where, excluded)
    if limit is None:
        return list(pool)
    if not excluded:
        return sorted(random.Random(seed).sample(range(len(pool)), limit))
    return sorted(random.Random(seed).sample(list(pool), limit))
