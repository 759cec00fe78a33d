"""Resolve a spec's vector source into per-layer tensors: [hidden] or a per-language table [languages, hidden]."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CompileError
from ..sites import ModelDims
from ..spec.vectors import FileVector, InlineVector, StatsVector
from .masks import read_tensor


def resolve_vector(source, *, layers: list[int], dims: ModelDims, where: str, base_dir: Path, stats=None,
                   languages: tuple[str, ...], anchor: str | None) -> dict[int, torch.Tensor]:
    if isinstance(source, InlineVector):
        if len(source.values) != dims.hidden_size:
            raise CompileError(
                f"the vector has {len(source.values)} values, but the model's hidden size is {dims.hidden_size}",
                where=f"{where}.values", fix=f"give exactly {dims.hidden_size} values",
            )
        vector = torch.tensor(source.values, dtype=torch.float32)
        return {layer: vector for layer in layers}
    if isinstance(source, FileVector):
        tensor = read_tensor(source, where=where, base_dir=base_dir).to(torch.float32)
        if tuple(tensor.shape) == (dims.hidden_size,):
            return {layer: tensor for layer in layers}
        if tuple(tensor.shape) == (dims.num_layers, dims.hidden_size):
            return {layer: tensor[layer] for layer in layers}
        raise CompileError(
            f"vector '{source.key}' has shape {list(tensor.shape)}, but the model needs [hidden_size] = "
            f"[{dims.hidden_size}] or [num_layers, hidden_size] = [{dims.num_layers}, {dims.hidden_size}]",
            where=f"{where}.key", fix="save a vector of one of those shapes for this model",
        )
    if isinstance(source, StatsVector):
        if anchor is None:
            raise CompileError("DiffMean subtracts the anchor language's mean, but the spec has no anchor",
                               where=f"{where}.from_stats", fix="set `anchor: {kind: fixed, language: en}`")
        resid = stats.tensors["resid_mean"].to(torch.float32)  # [languages, layers, hidden], spec language order
        base = resid[languages.index(anchor)]
        if source.language is not None:
            target = resid[languages.index(source.language)]
            return {layer: target[layer] - base[layer] for layer in layers}
        return {layer: resid[:, layer] - base[layer][None] for layer in layers}
    raise CompileError(f"unsupported vector source {type(source).__name__}", where=where)
