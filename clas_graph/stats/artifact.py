"""The statistics artifact: stats.safetensors (tensors) + stats.json (what they mean and where from).

Written atomically, tensors first and the JSON last; the JSON carries the
tensors' sha256, so a crash between the two leaves nothing that loads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..errors import DataError
from ..records import atomic_write_bytes, atomic_write_json
from . import categories as cat

ARTIFACT_SCHEMA = 1
OPTIONAL_TENSORS = ("active_frac",)
"""Tensors an artifact may lack (stats.json's `computed` lists what it holds; older artifacts hold all)."""
TENSOR_FILE, META_FILE = "stats.safetensors", "stats.json"


@dataclass(frozen=True)
class Moments:
    """Raw per-language sums over non-pad tokens, float64. Shapes: [L, G, I] / [L, G, H] / [G]."""

    h_sum: torch.Tensor
    h_sqsum: torch.Tensor
    act_sum: torch.Tensor
    resid_sum: torch.Tensor
    tokens: torch.Tensor

    def __add__(self, other: "Moments") -> "Moments":
        return Moments(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self):
        return (self.h_sum, self.h_sqsum, self.act_sum, self.resid_sum, self.tokens)

    def mean(self) -> torch.Tensor:
        """[G, L, I] mean of h per language."""
        return (self.h_sum / self._per_language()).transpose(0, 1)

    def _per_language(self) -> torch.Tensor:
        return self.tokens.clamp(min=1)[None, :, None]


@dataclass(frozen=True)
class StatsArtifact:
    languages: tuple[str, ...]
    tensors: dict[str, torch.Tensor]
    """mean, sq_mean, act_mean, active_frac (optional) [G, L, I]; resid_mean [G, L, H]; tokens [G];
    category, specific_language [L, I] int8; t_act [L]; bridge_layers [k]; bridge_scores [L]."""
    meta: dict = field(default_factory=dict)

    # --- derived views -------------------------------------------------------------------

    @property
    def category(self) -> torch.Tensor:
        return self.tensors["category"]

    @property
    def bridge_layers(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.tensors["bridge_layers"].tolist())

    def mask(self, name: str, layers, languages=None) -> dict[int, torch.Tensor]:
        """{layer: bool [I]} of neurons in category `name` (optionally specific to `languages`)."""
        code = {v: k for k, v in cat.CATEGORY_NAMES.items()}[name]
        masks = {}
        for layer in layers:
            selected = self.category[layer] == code
            if languages is not None:
                owners = [self.languages.index(code_) for code_ in languages]
                selected &= torch.isin(self.tensors["specific_language"][layer].to(torch.int64), torch.tensor(owners))
            masks[layer] = selected
        return masks

    # --- files ------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        blob = save_tensors({k: v.contiguous() for k, v in self.tensors.items()})
        atomic_write_bytes(directory / TENSOR_FILE, blob)
        meta = {**self.meta, "schema_version": ARTIFACT_SCHEMA, "languages": list(self.languages),
                "tensors_sha256": hashlib.sha256(blob).hexdigest()}
        atomic_write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, tensor_path: Path) -> "StatsArtifact":
        """Load and verify; a missing or mismatched stats.json means an incomplete artifact (refused)."""
        tensor_path = Path(tensor_path)
        meta_path = tensor_path.with_name(META_FILE)
        if not tensor_path.is_file():
            raise DataError(f"no statistics artifact at '{tensor_path}'", where="stats.artifact",
                            fix="run `clas-graph stats SPEC` to make one, or fix the path")
        if not meta_path.is_file():
            raise DataError(f"'{meta_path}' is missing, so '{tensor_path}' is incomplete (interrupted run?)",
                            where="stats.artifact", fix="recompute it with `clas-graph stats SPEC`")
        blob = tensor_path.read_bytes()
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"'{meta_path}' is not valid JSON ({exc})", where="stats.artifact",
                            fix="recompute it with `clas-graph stats SPEC`") from None
        if not isinstance(meta, dict) or meta.get("tensors_sha256") != hashlib.sha256(blob).hexdigest():
            raise DataError(f"'{tensor_path}' does not match its stats.json (sha256 differs)",
                            where="stats.artifact", fix="recompute it with `clas-graph stats SPEC`")
        if not isinstance(meta.get("languages"), list):
            raise DataError(f"'{meta_path}' has no `languages` list (edited?)", where="stats.artifact",
                            fix="recompute it with `clas-graph stats SPEC`")
        return cls(tuple(meta["languages"]), load_tensors(blob), meta)

    def for_languages(self, languages) -> "StatsArtifact":
        """The same artifact with its language axis in `languages` order (same set required)."""
        if tuple(languages) == self.languages:
            return self
        order = [self.languages.index(code) for code in languages]
        tensors = dict(self.tensors)
        selections = self.meta.get("selections", {}).get("language_axis", [])  # lape.*, experts.*: per-language tensors
        for key in ("mean", "sq_mean", "act_mean", "active_frac", "resid_mean", "tokens", *selections):
            if key in self.tensors:
                tensors[key] = self.tensors[key][order]
        remap = torch.tensor([languages.index(code) for code in self.languages] + [-1], dtype=torch.int8)
        owners = self.tensors["specific_language"].to(torch.int64)
        tensors["specific_language"] = remap[owners]  # -1 indexes the appended -1
        return replace(self, languages=tuple(languages), tensors=tensors)


def build_artifact(moments: Moments, active_counts: torch.Tensor | None, t_act: torch.Tensor, threshold_kind: str,
                   languages, bridge_rule: dict, meta: dict) -> StatsArtifact:
    """Moments + active counts [L, G, I] (None: not computed) -> the artifact with categories and bridge layers."""
    per_language = moments.tokens.clamp(min=1)
    mean = moments.mean()
    is_active = cat.active(mean, t_act, threshold_kind)
    category = cat.categorize(is_active)
    choice = cat.bridge_layers(category, **bridge_rule)
    to_gli = lambda t: (t / per_language[None, :, None]).transpose(0, 1)  # noqa: E731 - [L,G,*] sums -> [G,L,*] means
    tensors = {
        "mean": mean.to(torch.float32),
        "sq_mean": to_gli(moments.h_sqsum).to(torch.float32),
        "act_mean": to_gli(moments.act_sum).to(torch.float32),
        "resid_mean": to_gli(moments.resid_sum).to(torch.float32),
        "tokens": moments.tokens.to(torch.float64),
        "category": category,
        "specific_language": cat.specific_language(is_active, category),
        "t_act": t_act.to(torch.float64),
        "bridge_layers": torch.tensor(choice.layers, dtype=torch.int64),
        "bridge_scores": torch.tensor(choice.scores, dtype=torch.float64),
    }
    if active_counts is not None:
        tensors["active_frac"] = to_gli(active_counts).to(torch.float32)
    share = cat.shares(category)
    meta = {
        **meta,
        "computed": sorted(tensors),
        "bridge": {"layers": list(choice.layers), "rule": choice.rule, "candidates": list(choice.candidates),
                   "scores": [round(s, 6) for s in choice.scores]},
        "category_shares": {name: [round(v, 6) for v in values.tolist()] for name, values in share.items()},
        "t_act_values": [float(v) for v in t_act.tolist()],
    }
    return StatsArtifact(tuple(languages), tensors, meta)
