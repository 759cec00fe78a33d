"""Plan: what a compiled condition does, as pure data.

Ordered ops with plain CPU tensors and no framework objects, so a plan can be
printed, hashed, saved (plan.json + safetensors) and shipped to a remote
server unchanged. `emit.py` turns a plan into an nnsight trace body.

Three op kinds cover every intervention (x is the site's value, per row):
  ScaleNeurons  x <- x * scale                      (CLAS, scale)
  SetNeurons    x[n] <- value[n] where mask[n]      (Int-mu, ablate)
  AddVector     x <- x + vector                     (add_vector)
Tensors of SetNeurons/AddVector may be per language ([languages, dim]); each
row then uses its own language's row of the table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..sites import Architecture, ModelDims

SITE_ACT = "mlp.act_fn.output"
"""a = act_fn(gate_proj(x)), the gate activation (Int-mu's site in Mondal et al.)."""
SITE_H = "mlp.down_proj.input"
"""h = a * up_proj(x), the MLP intermediate activation (CLAS's site)."""
SITE_RESID = "resid_post"
"""The residual stream after the decoder layer (its output)."""

# Execution order of sites inside one decoder layer; ops are sorted by
# (layer, site order, order in the condition) because nnsight needs values in
# the order the forward pass produces them.
SITE_ORDER = {SITE_ACT: 0, SITE_H: 1, SITE_RESID: 2}
LANGUAGE_INDEX = "language_index"
"""Name of the per-row language index [batch] among the trace's row inputs."""


@dataclass(frozen=True)
class RowSelect:
    """Which rows an op modifies, by the row's language."""

    mode: Literal["all", "except", "only"]
    languages: tuple[str, ...] = ()

    def applies(self, language: str) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "except":
            return language not in self.languages
        return language in self.languages

    @property
    def key(self) -> str:
        """Stable name of this selection, used for the row-mask argument of the trace."""
        return self.mode if self.mode == "all" else f"{self.mode}:{','.join(self.languages)}"

    def describe(self) -> str:
        if self.mode == "all":
            return "all rows"
        verb = "rows not in" if self.mode == "except" else "rows in"
        return f"{verb} {', '.join(self.languages)}"


@dataclass(frozen=True)
class Op:
    intervention: str
    kind: str
    layer: int
    site: str
    rows: RowSelect
    steps: str
    """`all`, `prompt` (the first forward of generation) or `generated` (the following ones)."""
    params: dict
    """What the tensors were made from (coefficients, mask sizes), for humans and plan.json."""
    formula: str | None = field(default=None, kw_only=True)
    """What the op computes in its kind's terms, for the generated trace's comment; default: the op class's."""

    def tensor_name(self, part: str) -> str:
        return f"{self.intervention}.L{self.layer}.{self.site}.{part}"

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"L{self.layer} {self.site}: {self.kind} '{self.intervention}' on {self.rows.describe()}"


@dataclass(frozen=True)
class ScaleNeurons(Op):
    """x <- x * scale on the selected rows. CLAS folds into this:
    (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec) = h * [(1-alpha) + alpha*(1+beta*Ms)*(1-gamma*Mspec)]."""

    scale: torch.Tensor
    """[intermediate_size] float32."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {self.tensor_name("scale"): self.scale}


@dataclass(frozen=True)
class SetNeurons(Op):
    """x[n] <- values[n] where mask[n], on the selected rows (per-language tables when 2-D)."""

    mask: torch.Tensor
    """[intermediate_size] or [languages, intermediate_size] bool."""
    values: torch.Tensor
    """Same shape as mask, float32."""

    @property
    def per_language(self) -> bool:
        return self.mask.dim() == 2

    def tensors(self) -> dict[str, torch.Tensor]:
        return {self.tensor_name("mask"): self.mask, self.tensor_name("values"): self.values}


@dataclass(frozen=True)
class AddVector(Op):
    """x <- x + vector on the selected rows (coefficient already applied; per-language table when 2-D)."""

    vector: torch.Tensor
    """[hidden_size] or [languages, hidden_size] float32."""

    @property
    def per_language(self) -> bool:
        return self.vector.dim() == 2

    def tensors(self) -> dict[str, torch.Tensor]:
        return {self.tensor_name("vector"): self.vector}


@dataclass(frozen=True)
class AddVectorKeepNorm(AddVector):
    """x <- (x + vector) * ||x|| / ||x + vector|| per position: norm-preserving steering (diffmean's preserve_norm)."""


@dataclass(frozen=True)
class Plan:
    """One condition compiled against one model: ops in execution order."""

    condition: str
    model_type: str
    architecture: Architecture
    dims: ModelDims
    languages: tuple[str, ...]
    """Row languages the plan accepts; per-language tables are indexed in this order."""
    ops: tuple[Op, ...]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor the trace needs, by name (what travels to a remote server)."""
        out: dict[str, torch.Tensor] = {}
        for op in self.ops:
            out.update(op.tensors())
        return out

    def row_selects(self) -> dict[str, RowSelect]:
        return {op.rows.key: op.rows for op in self.ops}

    def row_inputs(self, languages: list[str]) -> dict[str, torch.Tensor]:
        """Per-row inputs of the trace: a boolean [batch] mask per row selection, and each row's language index."""
        out = {
            key: torch.tensor([select.applies(lang) for lang in languages], dtype=torch.bool)
            for key, select in self.row_selects().items()
        }
        out[LANGUAGE_INDEX] = torch.tensor([self.languages.index(lang) for lang in languages], dtype=torch.long)
        return out

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({op.layer for op in self.ops}))

    def to_json(self) -> dict:
        """A readable, JSON-safe description (tensors by shape, count and sha256)."""
        return {
            "condition": self.condition,
            "model_type": self.model_type,
            "dims": vars(self.dims),
            "languages": list(self.languages),
            "ops": [
                {
                    "layer": op.layer,
                    "site": op.site,
                    "kind": op.kind,
                    "intervention": op.intervention,
                    "rows": {"mode": op.rows.mode, "languages": list(op.rows.languages)},
                    "steps": op.steps,
                    "params": op.params,
                    "tensors": {name: _describe(tensor) for name, tensor in op.tensors().items()},
                }
                for op in self.ops
            ],
        }


def _describe(tensor: torch.Tensor) -> dict:
    info = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "sha256": hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()}
    if tensor.dtype == torch.bool:
        info["true"] = int(tensor.sum())
    elif tensor.numel() and len(unique := tensor.unique()) <= 8:
        info["distinct_values"] = sorted(round(v, 6) for v in unique.tolist())
    return info
