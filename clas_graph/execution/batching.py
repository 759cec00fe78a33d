"""How rows become batches: by token count, longest first, so padding stays small (callers restore the order)."""

from __future__ import annotations

from typing import Sequence


def token_lengths(tokenizer, texts: Sequence[str], max_length: int) -> list[int]:
    """Each text's token count as the model sees it (special tokens included, truncated at `max_length`)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]


def longest_first(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row index batches of `batch_size`, longest rows first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
