"""Where a task's items come from, shared by the task loaders (:mod:`~clas_graph.data.xnli`,
:mod:`~clas_graph.data.xquad`): argument checks, the local file of a language (``data_files``) or the Hugging
Face hub, and the checks on the columns read.

Errors name the task and language (``"XNLI file for language 'de'"``, ``"XNLI data for language 'de'"``);
the files themselves are read by :mod:`~clas_graph.data.files`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .files import TASK_EXTENSIONS, local_file, quiet_datasets, read_columns, reason, require_columns

__all__ = [
    "check_hub_language",
    "check_language",
    "check_limit",
    "check_size",
    "hub_refusal",
    "load_hub",
    "read_task_file",
    "require_task_columns",
    "task_file",
    "text_cell",
]

Columns = dict[str, list]


# --- arguments ---------------------------------------------------------------------------------------------


def check_language(language: Any) -> str:
    if not isinstance(language, str) or not language.strip():
        raise DataError(f"language must be a non-empty code such as 'de', got {language!r}")
    return language


def check_limit(limit: Any, seed: Any) -> int | None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def check_hub_language(task: str, language: str, known: Sequence[str]) -> None:
    """DataError (with a 'did you mean') for a language the default hub dataset lacks."""
    if language not in known:
        close = difflib.get_close_matches(language.lower(), known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{task} on the hub has no language {language!r}.{hint} Available: {', '.join(known)}",
            fix=f"pick one of those, or pass data_files={{'{language}': 'PATH'}}",
        )


# --- a local file ------------------------------------------------------------------------------------------


def _file_name(task: str, language: str) -> str:
    return f"{task} file for language {language!r}"


def _data_name(task: str, language: str) -> str:
    return f"{task} data for language {language!r}"


def task_file(
    task: str, language: str, data_files: Mapping[str, str] | None, base_dir: Any
) -> Path | None:
    """The local file for ``language``, or None to use the hub (``data_files`` is None)."""
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


def read_task_file(path: Path, task: str, language: str, squad: bool = False) -> Columns:
    """The columns of a task's local file: typed cells; with ``squad`` a ``.json`` may be SQuAD-nested (strict)."""
    return read_columns(
        path,
        typed=True,
        squad="strict" if squad else None,
        name=_file_name(task, language),
        subject=_data_name(task, language),
    )


# --- the hub -----------------------------------------------------------------------------------------------


def load_hub(hub_id: str, config: str, split: str, refuse: Callable[[Exception], DataError]) -> Columns:
    """``datasets.load_dataset(hub_id, config, split=split)`` as columns, without progress bars.

    Any failure (offline, unknown config or split, network) raises ``refuse(error)`` without a traceback.
    """
    import datasets

    with quiet_datasets():
        try:
            ds = datasets.load_dataset(hub_id, config, split=split)
        except Exception as err:  # offline, unknown config/split, network: all say "use a file"
            raise refuse(err) from None
    return ds.to_dict()


def hub_refusal(
    task: str, hub_id: str, config: str, split: str, language: str
) -> Callable[[Exception], DataError]:
    """The task loaders' error for a hub that cannot give ``task`` (one line, pointing at ``data_files``)."""

    def refuse(err: Exception) -> DataError:
        return DataError(
            f"Could not load {task} for language {language!r} from the Hugging Face hub "
            f"({hub_id}, config {config!r}, split {split!r}): {reason(err)}",
            fix=f"pass data_files={{'{language}': 'PATH'}} with a local file in the "
            "hub's columns",
        )

    return refuse


# --- the columns read --------------------------------------------------------------------------------------


def require_task_columns(
    columns: Mapping[str, list], required: Sequence[str], task: str, language: str, where: str
) -> None:
    require_columns(
        columns, required, where=where, fix=f"use the hub's column names: {', '.join(required)}",
        subject=_data_name(task, language),
    )


def text_cell(value: Any, column: str, row: Any, task: str, language: str, where: str) -> str:
    """A text cell as given; a number (csv/tsv parse number-only text as one) as its text; else DataError."""
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


def check_size(
    n: int, limit: int | None, task: str, language: str, where: str, excluded: int = 0
) -> None:
    """DataError when there are no rows (after ``excluded`` were left out), or fewer than ``limit``."""
    left = f" after leaving out the {excluded} test items" if excluded else ""
    if n == 0:
        raise DataError(f"{task} data for language {language!r} has no rows{left}", where=where)
    if limit is not None and limit > n:
        raise DataError(
            f"{task} data for language {language!r} has {n} rows{left}, fewer than limit={limit}",
            where=where,
            fix=f"set limit to at most {n}, or leave it unset for all rows",
        )
