"""Which vocabulary tokens are typical of which language, from a parallel corpus (no word lists needed).

Per language l and token t: c[l, t] = occurrences of t in the tokenized texts of l (special tokens left out),
f[l, t] = c[l, t] / sum_t c[l, t] (the token's frequency in l's text, so a language whose texts tokenize into more
tokens does not dominate), and the concentration s[l, t] = f[l, t] / sum_l' f[l', t]. Token t is typical of
l* = argmax_l s[l, t] when s[l*, t] >= `min_share` and c[l*, t] >= `min_count`; other tokens (shared across
languages, rare, never seen) belong to no language. A lens then sums the probability of each language's tokens.

Ours, not Wendler et al.'s (who use translated word lists): the definition, its two thresholds and the corpus.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch


@dataclass(frozen=True)
class TokenLanguages:
    """The token -> language map and what it was made from."""

    languages: tuple[str, ...]
    tokens: dict[str, tuple[int, ...]]
    """Per language, its typical token ids (ascending); every token is in at most one language."""
    counts: dict[str, tuple[int, ...]]
    """Per language, c[l, t] of each of its tokens (same order)."""
    min_share: float
    min_count: int
    texts: int
    """Parallel texts per language the counts come from."""

    @property
    def sha256(self) -> str:
        """Digest of the (language, token ids) assignment, to tell maps apart in records."""
        text = ";".join(f"{lang}:{','.join(map(str, self.tokens[lang]))}" for lang in self.languages)
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self, tokenizer=None, examples: int = 12) -> dict:
        """JSON-safe record: definition, sizes, digest and (with a tokenizer) each language's most frequent
        typical tokens as text."""
        out = {"definition": "token t is typical of l* = argmax_l s[l,t], s[l,t] = f[l,t] / sum_l' f[l',t], "
                             "f[l,t] = c[l,t] / sum_t c[l,t], when s[l*,t] >= min_share and c[l*,t] >= min_count",
               "min_share": self.min_share, "min_count": self.min_count, "texts_per_language": self.texts,
               "sizes": {lang: len(self.tokens[lang]) for lang in self.languages}, "sha256": self.sha256}
        if tokenizer is not None:
            out["examples"] = {}
            for lang in self.languages:
                top = sorted(zip(self.counts[lang], self.tokens[lang]), reverse=True)[:examples]
                out["examples"][lang] = [tokenizer.decode([t]) for _, t in top]
        return out


def token_counts(tokenizer, texts: Mapping[str, Sequence[str]], vocab_size: int) -> torch.Tensor:
    """c [languages, vocab]: token occurrences per language (in `texts` order), special tokens left out."""
    counts = torch.zeros(len(texts), vocab_size, dtype=torch.float64)
    special = sorted(set(getattr(tokenizer, "all_special_ids", []) or []))
    for row, language in enumerate(texts):
        for text in texts[language]:
            ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
            ids = ids[ids < vocab_size]
            counts[row] += torch.bincount(ids, minlength=vocab_size).to(torch.float64)
    if special:
        counts[:, [t for t in special if t < vocab_size]] = 0
    return counts


def assign(counts: torch.Tensor, *, min_share: float, min_count: int) -> torch.Tensor:
    """Per token, the index of the language it is typical of, or -1 (see the module docstring)."""
    freq = counts / counts.sum(1, keepdim=True).clamp(min=1)
    share = freq / freq.sum(0, keepdim=True).clamp(min=1e-300)
    best_share, best = share.max(0)
    seen = counts.sum(0) > 0
    keep = seen & (best_share >= min_share) & (counts.gather(0, best[None])[0] >= min_count)
    return torch.where(keep, best, torch.full_like(best, -1))


def token_languages(tokenizer, texts: Mapping[str, Sequence[str]], vocab_size: int, *, min_share: float = 0.9,
                    min_count: int = 3) -> TokenLanguages:
    """The map from parallel `texts` ({language: texts}, the same number each)."""
    languages = tuple(texts)
    counts = token_counts(tokenizer, texts, vocab_size)
    owner = assign(counts, min_share=min_share, min_count=min_count)
    tokens, kept = {}, {}
    for index, language in enumerate(languages):
        ids = torch.nonzero(owner == index)[:, 0]
        tokens[language] = tuple(int(t) for t in ids)
        kept[language] = tuple(int(c) for c in counts[index, ids])
    sizes = {len(texts[lang]) for lang in languages}
    return TokenLanguages(languages, tokens, kept, min_share, min_count, max(sizes) if sizes else 0)
