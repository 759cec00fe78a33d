"""Position selectors, shared by every intervention kind: which token positions of a row an op touches.

    positions: all | last | prompt | generated | {first: N} | {last: N} | [indices]

Positions count the tokens of the row's input text as the model sees it (BOS included, from 0; padding never
counts, so left-padded mixed-length batches select each text's own tokens). During generation:
- `all`: every position of the prompt forward and every generated token (as before selectors existed);
- `prompt`: every position of the prompt forward only (the same as `steps: prompt`);
- `generated`: only the generated tokens, i.e. every forward after the prompt's (the same as `steps: generated`);
- `last`, `{first: N}`, `{last: N}`, `[indices]`: those tokens of the prompt, in the prompt forward only: they
  name tokens of the input text, and generated tokens are not part of it.
In a plain forward (logits, pooled states, losses) the input is the prompt, so `generated` selects nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt

from ..compile.positions import ALL_POSITIONS, PositionSelect
from ..spec.base import StrictModel, distinct


class FirstPositions(StrictModel):
    """The first N tokens of each text (BOS is the first where the tokenizer adds one)."""

    first: PositiveInt


class LastPositions(StrictModel):
    """The last N tokens of each text."""

    last: PositiveInt


TokenIndices = Annotated[list[int], Field(min_length=1), distinct("token index")]
"""Token indices of each text, 0-based; negative ones count from the end (-1 is the last token)."""

PositionRule = Union[Literal["all", "last", "prompt", "generated"], FirstPositions, LastPositions, TokenIndices]
"""`all` (default), `last`, `prompt`, `generated`, `{first: N}`, `{last: N}` or `[indices]`."""

PROMPT_ONLY = "prompt"
GENERATED_ONLY = "generated"


def label(rule: PositionRule) -> str:
    """The rule as a spec writes it."""
    if isinstance(rule, FirstPositions):
        return f"{{first: {rule.first}}}"
    if isinstance(rule, LastPositions):
        return f"{{last: {rule.last}}}"
    if isinstance(rule, list):
        return "[" + ", ".join(map(str, rule)) + "]"
    return rule


def position_select(rule: PositionRule, where: str = "") -> PositionSelect:
    """The plan's selector for a rule (`prompt` and `generated` select steps, not tokens: every token of them)."""
    if rule == "last":
        return PositionSelect("last", (1,), "last", where)
    if isinstance(rule, FirstPositions):
        return PositionSelect("first", (rule.first,), label(rule), where)
    if isinstance(rule, LastPositions):
        return PositionSelect("last", (rule.last,), label(rule), where)
    if isinstance(rule, list):
        return PositionSelect("indices", tuple(rule), label(rule), where)
    return ALL_POSITIONS


def steps_of(rule: PositionRule) -> str:
    """The generation steps a rule acts at: `all`, `prompt` or `generated`."""
    if rule == "all":
        return "all"
    return GENERATED_ONLY if rule == "generated" else PROMPT_ONLY


def combined_steps(rule: PositionRule, steps: str) -> str | None:
    """The steps an op acts at under both `positions` and `steps`; None when they exclude each other."""
    implied = steps_of(rule)
    if implied == "all" or steps == "all" or implied == steps:
        return steps if implied == "all" else implied
    return None
