"""Random models with a real model's layer shapes, a word-level tokenizer and texts of exact token counts: what the
GPU benchmark runs on, built on the device with no download (weights, tokenizer and data are all made here).

Each text is `words` words of a made-up vocabulary, one token per word plus BOS, so a text's token count is known
and every batch is unpadded; the tokenizer has no EOS, so every generation runs its full `max_new_tokens`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

# Llama 3.1 8B (Meta's config.json): the flagship's shapes
LLAMA_31_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                   head_dim=128, vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5,
                   max_position_embeddings=131072, num_hidden_layers=32)
# The same proportions, small enough for a CPU smoke run
TINY = dict(hidden_size=64, intermediate_size=224, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
            vocab_size=2048, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=2048,
            num_hidden_layers=32)
WORDS = 1000
"""Words of the made-up vocabulary (ids 3 .. WORDS + 2; 0 pad, 1 BOS)."""


@dataclass(frozen=True)
class Shape:
    name: str
    config: dict
    layers: int

    @property
    def full_layers(self) -> int:
        """The depth of the model whose shapes these are (the built model may have fewer layers)."""
        return self.config["num_hidden_layers"]


def build_model(shape: Shape, dtype: torch.dtype, device: str):
    """A randomly initialised LlamaForCausalLM of `shape.layers` layers, created directly on `device` in `dtype`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**shape.config, "num_hidden_layers": shape.layers}, pad_token_id=0, bos_token_id=1,
                         eos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    model.train(False)
    model.generation_config.eos_token_id = None  # generations run their full length
    model.generation_config.pad_token_id = 0
    return model


def word_tokenizer():
    """Whitespace-separated words w3 .. w{WORDS+2} -> their ids, BOS prepended; pad 0; no EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, WORDS + 3)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", unk_token="<unk>",
                                   padding_side="left", model_max_length=4096)


def texts(count: int, tokens: int, seed: int) -> list[str]:
    """`count` texts of exactly `tokens` tokens each (BOS included)."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(3, WORDS + 3)}" for _ in range(tokens - 1)) for _ in range(count)]


def bridge_layers(shape: Shape, first: int = 24, last: int = 29) -> list[int]:
    """The flagship's CLAS layers (24-29 of 32) at the same relative depth in a model of `shape.layers` layers."""
    scale = shape.layers / shape.full_layers
    start = min(int(first * scale), shape.layers - 1)
    count = max(1, round((last - first + 1) * scale))
    return list(range(start, min(start + count, shape.layers)))
