"""Resolve a spec's mask sources into boolean [intermediate_size] tensors per layer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import CompileError
from ..selections import registry as selections
from ..sites import ModelDims
from ..spec.masks import FileMask, InlineMask, StatsMask


def resolve_mask(source, *, layers: list[int], dims: ModelDims, where: str, base_dir: Path,
                 stats=None) -> dict[int, torch.Tensor]:
    """Mask source -> {layer: bool tensor [intermediate_size]} for every layer in `layers`."""
    empty = {layer: torch.zeros(dims.intermediate_size, dtype=torch.bool) for layer in layers}
    if source is None:
        return empty
    if isinstance(source, StatsMask):
        if source.from_stats in selections.SELECTION_NAMES:
            return _selection(source, layers=layers, where=where, stats=stats)
        if source.per_row:
            raise CompileError("`per_row` only applies to `from_stats: lape` or `experts`", where=f"{where}.per_row",
                               fix="drop `per_row`, or select `from_stats: lape` / `experts`")
        if source.languages is not None and source.from_stats != "language_specific":
            raise CompileError("`languages` only applies to `from_stats: language_specific`, `lape` or `experts`",
                               where=f"{where}.languages", fix="drop `languages`, or select one of those")
        return stats.mask(source.from_stats, layers, source.languages)
    if isinstance(source, InlineMask):
        return _inline(source, layers=layers, dims=dims, where=where, masks=empty)
    if isinstance(source, FileMask):
        return _from_file(source, layers=layers, dims=dims, where=where, base_dir=base_dir)
    raise CompileError(f"unsupported mask source {type(source).__name__}", where=where)


def _selection(source: StatsMask, *, layers, where: str, stats) -> dict[int, torch.Tensor]:
    name = source.from_stats
    if not selections.has_mask(stats, name):
        raise CompileError(
            f"the statistics artifact holds no '{name}' selection",
            where=f"{where}.from_stats",
            fix=f"list it under `stats: {{selections: [{name}]}}` and run `clas-graph stats SPEC` (or `run`)",
        )
    if source.per_row and source.languages is not None:
        raise CompileError("`per_row` and `languages` exclude each other (per_row: each row's own language)",
                           where=f"{where}.per_row", fix="drop one of them")
    return selections.mask(stats, name, layers, source.languages, per_row=source.per_row)


def _inline(source: InlineMask, *, layers, dims: ModelDims, where: str, masks: dict) -> dict[int, torch.Tensor]:
    for layer, indices in source.neurons.items():
        if layer not in masks:
            raise CompileError(
                f"the mask lists neurons for layer {layer}, which is not in this intervention's `layers` {layers}",
                where=f"{where}.neurons.{layer}", fix=f"add {layer} to `layers` or remove it from the mask",
            )
        for position, index in enumerate(indices):
            if index >= dims.intermediate_size:
                raise CompileError(
                    f"neuron index {index} is out of range: the model ({dims.model_type}) has "
                    f"{dims.intermediate_size} intermediate neurons per layer (0-{dims.intermediate_size - 1})",
                    where=f"{where}.neurons.{layer}[{position}]",
                    fix=f"use indices below {dims.intermediate_size}",
                )
        masks[layer][list(indices)] = True
    return masks


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tensor(source, *, where: str, base_dir: Path) -> torch.Tensor:
    """The tensor `source.key` of the safetensors file `source.file`, after checking `source.sha256`."""
    path = Path(source.file)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise CompileError(f"file '{path}' does not exist", where=f"{where}.file",
                           fix="check the path (relative to the spec file)")
    actual = sha256_file(path)
    if actual != source.sha256:
        raise CompileError(
            f"sha256 of '{path}' is {actual}, but the spec says {source.sha256}",
            where=f"{where}.sha256",
            fix=f"if the file changed on purpose, set `sha256: {actual}`; otherwise restore the original file",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            if source.key not in handle.keys():
                raise CompileError(
                    f"tensor '{source.key}' is not in '{path}' "
                    f"(it holds: {', '.join(sorted(handle.keys())) or 'nothing'})",
                    where=f"{where}.key", fix="use one of the tensor names it holds",
                )
            return handle.get_tensor(source.key)
    except CompileError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CompileError(f"cannot read '{path}' as safetensors ({exc})", where=f"{where}.file",
                           fix="point `file` at a .safetensors file (safetensors.torch.save_file)") from None


def _from_file(source: FileMask, *, layers, dims: ModelDims, where: str, base_dir: Path) -> dict[int, torch.Tensor]:
    tensor = read_tensor(source, where=where, base_dir=base_dir)
    expected = (dims.num_layers, dims.intermediate_size)
    if tuple(tensor.shape) != expected:
        raise CompileError(
            f"mask '{source.key}' has shape {list(tensor.shape)}, but the model needs "
            f"[num_layers, intermediate_size] = {list(expected)}",
            where=f"{where}.key", fix="save a mask of that shape for this model",
        )
    if not torch.isin(tensor.to(torch.float32), torch.tensor([0.0, 1.0])).all():
        raise CompileError(f"mask '{source.key}' must hold only 0 and 1 (or booleans)", where=f"{where}.key",
                           fix="save the mask as booleans (or 0/1) of shape [num_layers, intermediate_size]")
    return {layer: tensor[layer].to(torch.bool) for layer in layers}
