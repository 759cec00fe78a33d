"""Architecture tables: abstract sites -> module paths and sizes.

One small table per architecture family. The rest of clas_graph speaks only
the abstract vocabulary (`mlp.act_fn.output`, `mlp.up_proj.output`,
`mlp.down_proj.input`), so supporting a new SwiGLU/GeGLU model is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CompileError


@dataclass(frozen=True)
class Architecture:
    """Where the decoder layers and MLP parts live in one model family."""

    family: str
    layers_path: str
    """Attribute path from the top-level model to the list of decoder layers."""
    embed_path: str = "model.embed_tokens"
    """The token embedding: the first module each forward runs (generation traces wait on it every step)."""
    mlp: str = "mlp"
    act_fn: str = "act_fn"
    up_proj: str = "up_proj"
    down_proj: str = "down_proj"
    sites: frozenset = frozenset({"mlp.act_fn.output", "mlp.down_proj.input", "resid_post"})
    """Abstract sites this family exposes (all gated MLPs with an `act_fn` module have these three)."""
    final_norm: str | None = None
    """The norm applied to the last layer's output before the unembedding (None: not known for this family, so
    no lens can read it)."""
    lm_head: str = "lm_head"
    """The unembedding (hidden -> vocabulary logits)."""

    def layer_path(self, layer: int) -> str:
        return f"{self.layers_path}[{layer}]"


# model_type (from the HF config) -> architecture. Gated MLPs all share the
# gate/up/down/act_fn naming in transformers 5.
_TEXT = "model.layers"
_NORM = "model.norm"
ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("llama", _TEXT, final_norm=_NORM),
    "mistral": Architecture("mistral", _TEXT, final_norm=_NORM),
    "qwen2": Architecture("qwen2", _TEXT, final_norm=_NORM),
    "qwen3": Architecture("qwen3", _TEXT, final_norm=_NORM),
    "gemma": Architecture("gemma", _TEXT, final_norm=_NORM),
    "gemma2": Architecture("gemma2", _TEXT, final_norm=_NORM),
    "gemma3_text": Architecture("gemma3", _TEXT, final_norm=_NORM),
    # Gemma 3 multimodal checkpoints wrap the text model.
    "gemma3": Architecture("gemma3", "model.language_model.layers", embed_path="model.language_model.embed_tokens",
                           final_norm="model.language_model.norm"),
}


@dataclass(frozen=True)
class ModelDims:
    """The sizes a plan must fit."""

    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int


def text_config(config):
    """The text part of a (possibly multimodal) HF config."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def architecture_for(config) -> Architecture:
    """The site table for an HF config; a clear error for unsupported models."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise CompileError(
            f"unsupported architecture '{model_type}'",
            where="model",
            fix=f"use a model of a supported family ({supported}), or add a table entry in clas_graph/sites",
        )
    return ARCHITECTURES[model_type]


def dims_of(config) -> ModelDims:
    text = text_config(config)
    intermediate = text.intermediate_size
    if isinstance(intermediate, (list, tuple)):  # per-layer sizes (not supported yet)
        raise CompileError("models with per-layer intermediate sizes are not supported", where="model")
    return ModelDims(
        model_type=config.model_type,
        num_layers=text.num_hidden_layers,
        hidden_size=text.hidden_size,
        intermediate_size=intermediate,
        vocab_size=text.vocab_size,
    )
