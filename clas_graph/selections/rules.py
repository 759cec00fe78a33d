"""The selection rules themselves, from raw counts and pooled responses (pure torch, no model).

LAPE (Tang et al. 2024, RUCAIBox/Language-Specific-Neurons `identify.py`) and expert neurons (Suau et al. 2022,
apple/ml-selfcond `expertise.py`; Sundar et al. 2025). Tensors use the artifact's layout: language first
([G, L, I]); names are `lape.*` and `experts.*` and are listed in stats.json under `selections`. What each
selection stores, and its parameters, are in its own module (`lape.py`, `experts.py`).
"""

from __future__ import annotations

import torch


def _kth(values: torch.Tensor, fraction: float) -> float:
    """The k-th smallest value with k = round(n * fraction), as `flattened.kthvalue(round(n * ratio))` in Tang et al."""
    k = min(max(round(values.numel() * fraction), 1), values.numel())
    return float(values.flatten().kthvalue(k).values)


def lape(prob: torch.Tensor, *, top_rate: float, filter_quantile: float, activation_bar_quantile: float):
    """prob [G, L, I] = P(a > 0) per language -> (entropy [L, I], mask [G, L, I] bool, meta dict)."""
    p = prob.to(torch.float64).permute(1, 2, 0)  # [L, I, G] as in identify.py
    layers, neurons, _ = p.shape
    total = p.sum(-1, keepdim=True)
    normed = torch.where(total > 0, p / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(p))
    log = torch.where(normed > 0, normed.log(), torch.zeros_like(normed))  # 0 * log 0 = 0
    entropy = -(normed * log).sum(-1)
    top_prob = _kth(p, filter_quantile)
    entropy[(p > top_prob).sum(-1) == 0] = float("inf")
    keep = round(layers * neurons * top_rate)
    order = torch.argsort(entropy.flatten(), stable=True)[:keep]
    selected = torch.zeros(layers * neurons, dtype=torch.bool)
    selected[order] = True
    bar = _kth(p, activation_bar_quantile)
    mask = (p > bar) & selected.view(layers, neurons, 1)
    meta = {"filter_value": top_prob, "activation_bar": bar, "kept_pairs": keep,
            "neurons_per_language": mask.sum((0, 1)).tolist()}
    return entropy.to(torch.float32), mask.permute(2, 0, 1).contiguous(), meta


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AP of each column of `scores` [N, M] for binary `labels` [N] (or several label sets [K, N] -> [K, M]), as
    sklearn's average_precision_score: sum over distinct thresholds of (recall step) * precision, tied scores
    forming one threshold. The scores are sorted once for all label sets."""
    many = labels.dim() == 2
    label_sets = labels if many else labels[None]
    n = scores.shape[0]
    order = torch.argsort(scores, dim=0, descending=True, stable=True)
    ranked = scores.gather(0, order)
    is_last = torch.ones_like(ranked, dtype=torch.bool)
    is_last[:-1] = ranked[1:] != ranked[:-1]  # the end of each run of tied scores is one threshold
    position = torch.arange(n)[:, None].expand_as(ranked)
    ends = torch.where(is_last, position, torch.full_like(position, n)).flip(0).cummin(0).values.flip(0)
    out = []
    for label in label_sets:
        hits = label.to(torch.float64)[order]  # [N, M]
        precision = hits.cumsum(0).gather(0, ends) / (ends + 1).to(torch.float64)
        out.append((hits * precision).sum(0) / hits.sum(0).clamp(min=1))
    return torch.stack(out) if many else out[0]


def experts(pooled: torch.Tensor, row_language: torch.Tensor, num_languages: int, layers: list[int],
            num_layers: int, *, top_k: int):
    """pooled [L_e, N, I] responses of the searched `layers`, row_language [N] -> dict of [G, L, I] tensors
    (`experts.ap`, `experts.mask`, `experts.p50`, `experts.p90`; NaN/False outside searched layers)."""
    _, _, neurons = pooled.shape
    shape = (num_languages, num_layers, neurons)
    ap = torch.full(shape, float("nan"), dtype=torch.float32)
    p50, p90 = ap.clone(), ap.clone()
    label_sets = torch.stack([row_language == g for g in range(num_languages)])  # [G, N]
    for j, layer in enumerate(layers):
        ap[:, layer] = average_precision(pooled[j].to(torch.float64), label_sets).to(torch.float32)
        for g in range(num_languages):
            mine = pooled[j][row_language == g].to(torch.float64)
            p50[g, layer] = torch.quantile(mine, 0.5, dim=0).to(torch.float32)
            p90[g, layer] = torch.quantile(mine, 0.9, dim=0).to(torch.float32)
    mask = torch.zeros(shape, dtype=torch.bool)
    searched = ap[:, layers]  # [G, L_e, I]
    k = min(top_k, searched[0].numel())
    for g in range(num_languages):
        best = torch.argsort(-searched[g].flatten().to(torch.float64), stable=True)[:k]
        chosen = torch.zeros(searched[g].numel(), dtype=torch.bool)
        chosen[best] = True
        mask[g, layers] = chosen.view(len(layers), neurons)
    return {"experts.ap": ap, "experts.mask": mask, "experts.p50": p50, "experts.p90": p90}


def selection_mask(stats, tensor: str, layers, languages=None, per_row: bool = False) -> dict[int, torch.Tensor]:
    """{layer: bool [I]} union of the languages' neurons in the artifact's [G, L, I] table `tensor` (all languages
    when None), or with `per_row` a per-language table {layer: bool [G, I]} in the artifact's language order."""
    table = stats.tensors[tensor].to(torch.bool)  # [G, L, I]
    if per_row:
        return {layer: table[:, layer].clone() for layer in layers}
    rows = list(range(len(stats.languages))) if languages is None else [stats.languages.index(c) for c in languages]
    return {layer: table[rows, layer].any(0) for layer in layers}
