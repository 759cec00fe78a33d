"""Token positions an op acts on, as plan data, and the torch expressions a trace computes them with.

Positions count every token the model sees in a row's text, BOS included, from 0; padding never counts. The
trace finds them from the batch's attention mask (left or right padding alike), so a mixed-length batch selects
each row's own positions: `{first: 2}` is each text's first two tokens, `{last: 2}` its last two, `[0, -1]` its
first and last. `all` keeps the op as before (every position, padding included). Which generation steps a
selector acts at is folded into the op's `steps` by the compiler (interventions/positions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ATTENTION_MASK = 'inputs["attention_mask"]'
"""Where every trace finds the batch's attention mask (the trace functions' `inputs`)."""


@dataclass(frozen=True)
class PositionSelect:
    """Which token positions of each row an op touches."""

    mode: Literal["all", "first", "last", "indices"] = "all"
    values: tuple[int, ...] = ()
    """`first`/`last`: (N,); `indices`: the token indices (negative ones count from the end: -1 is the last)."""
    label: str = "all"
    """As the spec wrote it (`last`, `{first: 2}`, `[0, -1]`), for plans and messages."""
    where: str = ""
    """The spec field it came from, for errors about texts it does not fit."""

    @property
    def count(self) -> int | None:
        """Positions per row (None: every position, so as many as the row has)."""
        if self.mode == "all":
            return None
        return self.values[0] if self.mode in ("first", "last") else len(self.values)

    def token_indices(self, length: int) -> list[int]:
        """The selected token indices of a text of `length` tokens; ValueError when they do not fit it."""
        if self.mode == "all":
            return list(range(length))
        if self.mode in ("first", "last"):
            n = self.values[0]
            if n > length:
                raise ValueError(f"`{self.label}` needs {n} tokens, but a text has {length}")
            return list(range(n)) if self.mode == "first" else list(range(length - n, length))
        out = []
        for index in self.values:
            if not -length <= index < length:
                raise ValueError(f"token index {index} of `{self.label}` is outside a text of {length} tokens")
            out.append(index % length)
        if len(set(out)) != len(out):
            raise ValueError(f"`{self.label}` names the same token twice in a text of {length} tokens")
        return out

    def mask_lines(self, x: str) -> list[str]:
        """Statements leaving `pos_here`, a bool [batch, tokens] mask of the selected positions (for a site value
        held in `x`)."""
        lines = [f"am = {ATTENTION_MASK}.to({x}.device)", "real = am.cumsum(-1) - 1",
                 "count = am.sum(-1, keepdim=True)"]
        if self.mode == "first":
            chosen = f"real < {self.values[0]}"
        elif self.mode == "last":
            chosen = f"real >= count - {self.values[0]}"
        else:
            chosen = " | ".join(f"(real == {i})" if i >= 0 else f"(real == count - {-i})" for i in self.values)
        return lines + [f"pos_here = ({chosen}) & (am > 0)"]

    def index_expr(self) -> str:
        """A long [batch, count] expression: each row's selected positions in the padded batch, in order (needs
        `am`, `real` and `count` from `mask_lines`)."""
        if self.mode == "all":
            return "torch.arange(am.shape[1], device=am.device).expand(am.shape[0], -1)"
        if self.mode == "first":
            want = f"torch.arange({self.values[0]}, device=am.device).expand(am.shape[0], -1)"
        elif self.mode == "last":
            want = f"count - {self.values[0]} + torch.arange({self.values[0]}, device=am.device)"
        else:
            chosen = f"torch.tensor({list(self.values)!r}, device=am.device)"
            want = f"({chosen} + (({chosen} < 0).long() * count))"
        # the k-th real token sits where the running count of real tokens first reaches k + 1
        return f"torch.searchsorted(am.cumsum(-1).contiguous(), ({want} + 1).contiguous())"


ALL_POSITIONS = PositionSelect()
"""Every position (what ops did before position selectors existed)."""
