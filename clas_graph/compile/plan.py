"""Plan: what a compiled condition does, as pure data.

Ordered ops with plain CPU tensors and no framework objects, so a plan can be
printed, hashed, saved (plan.json + safetensors) and shipped to a remote
server unchanged. `emit.py` turns a plan into an nnsight trace body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..sites import Architecture, ModelDims

SITE_H = "mlp.down_proj.input"
"""h = act_fn(gate_proj(x)) * up_proj(x), the MLP intermediate activation."""

# Execution order of sites inside one decoder layer; ops are sorted by
# (layer, site order, spec order) because nnsight needs values in the order
# the forward pass produces them.
SITE_ORDER = {SITE_H: 0}


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
class ScaleNeurons:
    """h <- h * scale (per intermediate neuron) on the selected rows, at one layer.

    CLAS compiles to this: (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec)
    = h * [(1-alpha) + alpha*(1+beta*Ms)*(1-gamma*Mspec)], elementwise.
    """

    intervention: str
    kind: str
    layer: int
    site: str
    rows: RowSelect
    scale: torch.Tensor
    """[intermediate_size] float32 on CPU."""
    params: dict = field(default_factory=dict)
    """What the scale was made from (coefficients, mask sizes), for humans and plan.json."""

    @property
    def tensor_name(self) -> str:
        return f"{self.intervention}.L{self.layer}.scale"

    def describe(self) -> str:
        return f"L{self.layer} {self.site}: {self.kind} '{self.intervention}' scales neurons on {self.rows.describe()}"


Op = ScaleNeurons


@dataclass(frozen=True)
class Plan:
    """One condition compiled against one model: ops in execution order."""

    condition: str
    model_type: str
    architecture: Architecture
    dims: ModelDims
    languages: tuple[str, ...]
    ops: tuple[Op, ...]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor the trace needs, by name (what travels to a remote server)."""
        return {op.tensor_name: op.scale for op in self.ops}

    def row_selects(self) -> dict[str, RowSelect]:
        return {op.rows.key: op.rows for op in self.ops}

    def row_masks(self, languages: list[str]) -> dict[str, torch.Tensor]:
        """Boolean [batch] mask per row selection, from each row's language."""
        return {
            key: torch.tensor([select.applies(lang) for lang in languages], dtype=torch.bool)
            for key, select in self.row_selects().items()
        }

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
                    "params": op.params,
                    "tensor": {
                        "name": op.tensor_name,
                        "shape": list(op.scale.shape),
                        "distinct_values": sorted({round(v, 6) for v in op.scale.unique().tolist()}),
                        "sha256": hashlib.sha256(op.scale.numpy().tobytes()).hexdigest(),
                    },
                }
                for op in self.ops
            ],
        }
