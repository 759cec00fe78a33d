"""The neuron selections, listed explicitly: their names, the `Selections` spec model and lookup by name."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from ..spec.base import StrictModel
from .experts import ExpertSelection
from .lape import LapeSelection

# The rules (torch) load where a mask is read, so spec models load without torch: `clas-graph validate` and
# `--help` start fast.

SELECTION_KINDS = (LapeSelection, ExpertSelection)
"""Every selection's model, in the order they are computed and listed."""

SELECTION_NAMES = tuple(kind.NAME for kind in SELECTION_KINDS)
"""`("lape", "experts")`: names in `stats.selections` and `{from_stats: ...}`."""

TENSOR_PREFIXES = tuple(f"{name}." for name in SELECTION_NAMES)
"""Prefixes of the artifact tensors that selections store."""

LANGUAGE_AXIS = tuple(name for kind in SELECTION_KINDS for name in kind.LANGUAGE_AXIS)
"""Selection tensors whose first axis is the language (reordered with the artifact's languages)."""


def selection_kind(name: str) -> type:
    """The model of the selection called `name`."""
    return next(kind for kind in SELECTION_KINDS if kind.NAME == name)


def has_mask(stats, name: str) -> bool:
    """Whether the statistics artifact holds the neurons of selection `name`."""
    return selection_kind(name).MASK_TENSOR in stats.tensors


def mask(stats, name: str, layers, languages=None, per_row: bool = False):
    """{layer: bool [I]}: the union of the languages' neurons of selection `name` (all languages when None), or
    with `per_row` a per-language table {layer: bool [G, I]} in the artifact's language order."""
    from .rules import selection_mask

    return selection_mask(stats, selection_kind(name).MASK_TENSOR, layers, languages, per_row=per_row)


class Selections(StrictModel):
    """Which selections to compute (each omitted one is skipped)."""

    lape: LapeSelection | None = None
    """LAPE language-specific neurons (Tang et al. 2024)."""
    experts: ExpertSelection | None = None
    """Expert neurons by average precision (Suau et al. 2022; Sundar et al. 2025)."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        # `[lape, experts]` means each with its defaults.
        if isinstance(value, (list, tuple)):
            unknown = [name for name in value if name not in SELECTION_NAMES]
            if unknown:
                raise ValueError(f"unknown selection(s) {unknown}; known: {list(SELECTION_NAMES)}")
            return {name: {} for name in value}
        return value

    def names(self) -> list[str]:
        return [name for name in SELECTION_NAMES if getattr(self, name) is not None]

    def chosen(self) -> list:
        """The selections asked for (their models), in `SELECTION_NAMES` order."""
        return [getattr(self, name) for name in self.names()]
