"""Neuron categories, T_act and bridge layers from per-language means (pure tensor functions).

Categories are dataset-level (paper section 2.3): a neuron is *active* for a
language when its statistic exceeds T_act, strictly; then
    0 dead              active for no language
    1 language-specific active for exactly one language
    2 partial-shared    active for some, not all
    3 all-shared        active for every language
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEAD, SPECIFIC, PARTIAL, ALL_SHARED = 0, 1, 2, 3
CATEGORY_NAMES = {DEAD: "dead", SPECIFIC: "language_specific", PARTIAL: "partial_shared", ALL_SHARED: "all_shared"}


def activity_statistic(mean: torch.Tensor, kind: str) -> torch.Tensor:
    """What T_act is compared with: the signed mean (absolute threshold) or |mean| (quantile threshold)."""
    return mean.abs() if kind == "quantile" else mean


def thresholds(mean: torch.Tensor, *, kind: str, q: float = 0.8, value: float = 0.0) -> torch.Tensor:
    """T_act per layer, [layers] float64. `mean` is [languages, layers, neurons]."""
    if kind == "absolute":
        return torch.full((mean.shape[1],), float(value), dtype=torch.float64)
    per_layer = mean.abs().transpose(0, 1).reshape(mean.shape[1], -1).to(torch.float64)
    return torch.quantile(per_layer, q, dim=1)


def active(mean: torch.Tensor, t_act: torch.Tensor, kind: str) -> torch.Tensor:
    """[languages, layers, neurons] bool: statistic > T_act of its layer (a tie is not active)."""
    return activity_statistic(mean, kind) > t_act.to(mean.dtype)[None, :, None]


def categorize(is_active: torch.Tensor) -> torch.Tensor:
    """[languages, layers, neurons] bool -> [layers, neurons] int8 category."""
    languages = is_active.shape[0]
    if languages < 2:
        raise ValueError("categories need at least two languages")
    count = is_active.sum(0)
    category = torch.full(count.shape, PARTIAL, dtype=torch.int8)
    category[count == 0] = DEAD
    category[count == 1] = SPECIFIC
    category[count == languages] = ALL_SHARED
    return category


def specific_language(is_active: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """[layers, neurons] int8: index of the language a language-specific neuron belongs to, -1 otherwise."""
    owner = is_active.to(torch.int8).argmax(0).to(torch.int8)
    return torch.where(category == SPECIFIC, owner, torch.full_like(owner, -1))


def shares(category: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fraction of neurons per category, per layer: name -> [layers] float64."""
    neurons = category.shape[1]
    return {name: (category == code).sum(1).to(torch.float64) / neurons for code, name in CATEGORY_NAMES.items()}


@dataclass(frozen=True)
class BridgeChoice:
    layers: tuple[int, ...]
    scores: tuple[float, ...]
    """score per layer = partial - dead - specific (shares)."""
    candidates: tuple[int, ...]
    rule: str


def bridge_layers(category: torch.Tensor, *, k: int, exclude_last: int, min_layer: int | None) -> BridgeChoice:
    """The k contiguous candidate layers with the highest summed score (ties: the earliest window)."""
    num_layers = category.shape[0]
    share = shares(category)
    score = share["partial_shared"] - share["dead"] - share["language_specific"]
    low = num_layers // 2 if min_layer is None else min_layer
    high = num_layers - exclude_last
    candidates = list(range(low, high))
    rule = (f"k={k} contiguous layers in [{low}, {high}) maximising sum of "
            "share(partial_shared) - share(dead) - share(language_specific)")
    if len(candidates) < k:
        raise ValueError(f"only {len(candidates)} candidate layers in [{low}, {high}) for k={k}")
    best = max(range(low, high - k + 1), key=lambda start: (float(score[start:start + k].sum()), -start))
    return BridgeChoice(tuple(range(best, best + k)), tuple(score.tolist()), tuple(candidates), rule)
