"""Plan: what a compiled condition does, as pure data.

Ordered ops with plain CPU tensors and no framework objects, so a plan can be
printed, hashed, saved (plan.json + safetensors) and shipped to a remote
server unchanged. `emit.py` turns a plan into an nnsight trace body.

Four op kinds cover every intervention (x is the site's value, per row):
  ScaleNeurons  x <- x * scale                      (CLAS, scale)
  SetNeurons    x[n] <- value[n] where mask[n]      (Int-mu, ablate)
  AddVector     x <- x + vector                     (add_vector)
  PatchValues   x[t] <- (1-c)*x[t] + c*mean_k x_k[s] (patch: values of source rows)
Tensors of SetNeurons/AddVector may be per language ([languages, dim]); each
row then uses its own language's row of the table. Every op acts on the token
positions its `positions` select (compile/positions.py; default all).

A patch's source values come from *source rows*: extra rows of the same batch
(the parallel text, or the same text under another condition) that no op of
the condition touches, so at every site they hold the source's own values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from ..sites import Architecture, ModelDims
from .positions import ALL_POSITIONS, PositionSelect

# torch is imported where tensors are made, so the intervention kinds' modules (which build these ops) and the
# spec models load without torch: `clas-graph validate` and `--help` start fast.
if TYPE_CHECKING:
    import torch

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

    def applies(self, language) -> bool:
        if not isinstance(language, str):  # a source row: only the ops of its own source touch it
            return False
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
class SourceRow:
    """The label of a source row in a batch (other rows are labelled by their language): it holds the values
    patched into row `target` of the same batch (its index there), as member `member` of source `source`."""

    language: str
    source: str
    target: int
    member: int = 0

    def __str__(self) -> str:
        return f"{self.language} (source {self.source} of row {self.target})"


@dataclass(frozen=True)
class SourceRows:
    """An op's row rule applied to the source rows of one source (a `{condition: ...}` source runs that
    condition's ops on them); it never touches the other rows."""

    source: str
    inner: RowSelect

    @property
    def mode(self) -> str:
        return self.inner.mode

    @property
    def languages(self) -> tuple[str, ...]:
        return self.inner.languages

    def applies(self, label) -> bool:
        return isinstance(label, SourceRow) and label.source == self.source and self.inner.applies(label.language)

    @property
    def key(self) -> str:
        return f"{self.source}|{self.inner.key}"

    def describe(self) -> str:
        return f"source rows of {self.source} ({self.inner.describe()})"


def label_language(label) -> str:
    """The language of a row label (a language, or a SourceRow)."""
    return label.language if isinstance(label, SourceRow) else label


@dataclass(frozen=True)
class PatchSource:
    """Where a patch's values come from: the same item's parallel text in `languages` (one source row each,
    reduced by their mean), or the same text under `condition`."""

    key: str
    """Stable name, e.g. `language:en`, `languages:de+es+fr`, `condition:base`."""
    languages: tuple[str, ...] = ()
    condition: str | None = None

    @property
    def members(self) -> int:
        """Source rows per patched row."""
        return max(1, len(self.languages))

    def describe(self) -> str:
        if self.condition is not None:
            return f"the same text under condition '{self.condition}'"
        if len(self.languages) == 1:
            return f"the parallel text in {self.languages[0]}"
        return f"the mean over the parallel texts in {', '.join(self.languages)}"


def source_index_key(key: str) -> str:
    """Name of the [batch, members] row input holding each row's source rows (-1: none) for source `key`."""
    return f"source:{key}"


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
    positions: PositionSelect = field(default=ALL_POSITIONS, kw_only=True)
    """The token positions it acts on (default: all)."""

    def sources(self) -> dict[str, PatchSource]:
        """The source rows this op reads, by source key (none but for patches)."""
        return {}

    def tensor_name(self, part: str) -> str:
        return f"{self.intervention}.L{self.layer}.{self.site}.{part}"

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def statements(self, x: str, tensor, per_row) -> list[str]:
        """The trace statements that apply the op to the site value in variable `x` on the rows (and positions)
        `rows_here` selects: `tensor(part, cast=True)` is the expression of one of its tensors on `x`'s device,
        `per_row(expr)` picks each row's own language from a per-language table."""
        raise NotImplementedError

    def padded(self, count: int) -> "Op":
        """The op with its per-language tables grown by `count` languages of zeros (languages the statistics did
        not see; the compiler refuses ops that would act on them)."""
        return self

    def describe(self) -> str:
        where = "" if self.positions.mode == "all" else f" at positions {self.positions.label}"
        return f"L{self.layer} {self.site}: {self.kind} '{self.intervention}' on {self.rows.describe()}{where}"


@dataclass(frozen=True)
class ScaleNeurons(Op):
    """x <- x * scale on the selected rows. CLAS folds into this:
    (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec) = h * [(1-alpha) + alpha*(1+beta*Ms)*(1-gamma*Mspec)]."""

    scale: torch.Tensor
    """[intermediate_size] float32."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {self.tensor_name("scale"): self.scale}

    def statements(self, x, tensor, per_row):
        return [f"{x} = torch.where(rows_here, {x} * {tensor('scale')}, {x})"]


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

    def statements(self, x, tensor, per_row):
        mask, values = tensor("mask", cast=False), tensor("values")
        if self.per_language:
            mask, values = per_row(mask), per_row(values)
        return [f"{x} = torch.where(rows_here & {mask}, {values}, {x})"]

    def padded(self, count):
        import torch

        return replace(self, mask=torch.cat([self.mask, self.mask.new_zeros(count, self.mask.shape[1])]),
                       values=torch.cat([self.values, self.values.new_zeros(count, self.values.shape[1])]))


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

    def vector_expression(self, tensor, per_row) -> str:
        return per_row(tensor("vector")) if self.per_language else tensor("vector")

    def statements(self, x, tensor, per_row):
        return [f"{x} = torch.where(rows_here, {x} + {self.vector_expression(tensor, per_row)}, {x})"]

    def padded(self, count):
        import torch

        return replace(self, vector=torch.cat([self.vector, self.vector.new_zeros(count, self.vector.shape[1])]))


@dataclass(frozen=True)
class AddVectorKeepNorm(AddVector):
    """x <- (x + vector) * ||x|| / ||x + vector|| per position: norm-preserving steering (diffmean's preserve_norm)."""

    def statements(self, x, tensor, per_row):
        return [f"steered = {x} + {self.vector_expression(tensor, per_row)}",
                "# norms in float32: in float16 a norm above 65504 (a strong vector) would be inf",
                f"steered = steered * ({x}.float().norm(dim=-1, keepdim=True)"
                " / steered.float().norm(dim=-1, keepdim=True).clamp(min=1e-12)).to(steered.dtype)",
                f"{x} = torch.where(rows_here, steered, {x})"]


@dataclass(frozen=True)
class PatchValues(Op):
    """`x[t] <- (1-c)*x[t] + c*mean_k x[source_k][s]` on the selected rows: position t of `positions` takes the
    matching position s of `source_positions` (the i-th selected of one side is the i-th of the other) from the
    row's source rows (one per member of `source`), read at the same site before this op writes."""

    source: PatchSource
    source_positions: PositionSelect
    coefficient: float = 1.0

    def sources(self) -> dict[str, PatchSource]:
        return {self.source.key: self.source}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def describe(self) -> str:
        return (f"{super().describe()} <- {self.source.describe()}, positions {self.positions.label} <- "
                f"{self.source_positions.label}")


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

    def sources(self) -> dict[str, PatchSource]:
        """Every source the plan's ops read, by key (empty: the plan needs no source rows)."""
        return {key: source for op in self.ops for key, source in op.sources().items()}

    def row_inputs(self, languages: list) -> dict[str, torch.Tensor]:
        """Per-row inputs of the trace: a boolean [batch] mask per row selection, each row's language index and,
        per source, each row's source rows in the batch ([batch, members], -1: none). `languages` holds one label
        per row: its language, or a `SourceRow`."""
        import torch

        out = {
            key: torch.tensor([select.applies(lang) for lang in languages], dtype=torch.bool)
            for key, select in self.row_selects().items()
        }
        out[LANGUAGE_INDEX] = torch.tensor([self.languages.index(label_language(lang)) for lang in languages],
                                           dtype=torch.long)
        for key, source in self.sources().items():
            index = torch.full((len(languages), source.members), -1, dtype=torch.long)
            for row, label in enumerate(languages):
                if isinstance(label, SourceRow) and label.source == key:
                    index[label.target, label.member] = row
            out[source_index_key(key)] = index
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
                    **({} if op.positions.mode == "all" else {"positions": op.positions.label}),
                    "params": op.params,
                    "tensors": {name: _describe(tensor) for name, tensor in op.tensors().items()},
                }
                for op in self.ops
            ],
        }


def _describe(tensor: torch.Tensor) -> dict:
    import torch

    info = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "sha256": hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()}
    if tensor.dtype == torch.bool:
        info["true"] = int(tensor.sum())
    elif tensor.numel() and len(unique := tensor.unique()) <= 8:
        info["distinct_values"] = sorted(round(v, 6) for v in unique.tolist())
    return info
