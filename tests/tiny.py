"""Tiny, fully local tokenizer + randomly initialised causal LMs for tests.

Nothing here touches the network or imports ``clas_graph``: the tokenizer is a
byte-level BPE trained in a fraction of a second on a built-in multilingual
snippet list, and the models are built from the ``transformers`` config
classes with random weights.

Attention implementation: ``sdpa`` (the transformers default on CPU).  Padded
batches match one-by-one runs to ~1e-6 with it for every arch (checked in
``tests/test_reference_selfcheck.py``), so eager attention is not needed for
exactness; ``tiny_model(..., attn_implementation="eager")`` is available for
callers that want it anyway.
"""

from __future__ import annotations

import functools
import json

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ARCHS = ("llama", "qwen2", "qwen3", "mistral", "gemma3")

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

# Small multilingual corpus the BPE merges are learned from.  Byte-level BPE
# keeps all 256 bytes in the alphabet, so ANY unicode text tokenizes; the
# merges just make common words from these languages shorter.
CORPUS: tuple[str, ...] = (
    # English
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Answer with 0, 1 or 2. The answer is 1.",
    "I like to read books in the evening and drink a cup of tea.",
    "Large language models can answer questions in many languages.",
    # German
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Was ist die Hauptstadt von Deutschland? Die Hauptstadt ist Berlin.",
    "Ich lese gern Bücher am Abend und trinke eine Tasse Tee.",
    "Große Sprachmodelle können Fragen in vielen Sprachen beantworten.",
    # French
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Quelle est la capitale de la France ? La capitale est Paris.",
    "J'aime lire des livres le soir et boire une tasse de thé.",
    "Les grands modèles de langue répondent à des questions.",
    # Spanish
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "¿Cuál es la capital de España? La capital es Madrid.",
    "Me gusta leer libros por la noche y beber una taza de té.",
    "Los modelos de lenguaje responden preguntas en muchos idiomas.",
    # Russian
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Какая столица России? Столица России — Москва.",
    "Я люблю читать книги вечером и пить чай.",
    "Большие языковые модели отвечают на вопросы на многих языках.",
    # Chinese
    "敏捷的棕色狐狸跳过了懒狗。",
    "中国的首都是哪里？中国的首都是北京。",
    "我喜欢在晚上看书和喝茶。",
    "大型语言模型可以用多种语言回答问题。",
    # Arabic
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "ما هي عاصمة مصر؟ عاصمة مصر هي القاهرة.",
    "أحب قراءة الكتب في المساء وشرب الشاي.",
    "نماذج اللغة الكبيرة تجيب على الأسئلة بلغات كثيرة.",
    # Hindi
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "भारत की राजधानी क्या है? भारत की राजधानी नई दिल्ली है।",
    "मुझे शाम को किताबें पढ़ना और चाय पीना पसंद है।",
    "बड़े भाषा मॉडल कई भाषाओं में सवालों के जवाब देते हैं।",
    # digits / labels
    "0 1 2 3 4 5 6 7 8 9 10 2024 0.5 1/2",
)

VOCAB_SIZE = 400


@functools.lru_cache(maxsize=None)
def _tokenizer_json() -> str:
    tok = Tokenizer(models.BPE(unk_token=None))
    # add_prefix_space=False: "0" alone encodes to the single byte token "0".
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],  # -> ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS), trainer=trainer)
    assert (tok.token_to_id(PAD), tok.token_to_id(BOS), tok.token_to_id(EOS)) == (PAD_ID, BOS_ID, EOS_ID)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B:1",
        special_tokens=[(BOS, BOS_ID)],
    )
    return tok.to_str()


@functools.lru_cache(maxsize=None)
def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE (~400 tokens), <pad>=0 <bos>=1 <eos>=2, left padding, adds <bos>."""
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="left",
        model_max_length=512,
    )
    ids = tok("hi")["input_ids"]
    assert ids[0] == BOS_ID, f"tiny tokenizer must prepend <bos>, got {ids}"
    return tok


def _common_kwargs(tok, layers: int) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def _build(arch: str, layers: int, attn_implementation: str) -> transformers.PreTrainedModel:
    tok = tiny_tokenizer()
    kw = _common_kwargs(tok, layers)
    if arch == "llama":
        cfg = transformers.LlamaConfig(head_dim=8, **kw)
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        # Qwen2 has no head_dim field: hidden_size / heads = 32 / 4 = 8. q/k/v carry biases.
        cfg = transformers.Qwen2Config(**kw)
        cls = transformers.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg = transformers.Qwen3Config(head_dim=8, **kw)
        cls = transformers.Qwen3ForCausalLM
    elif arch == "mistral":
        cfg = transformers.MistralConfig(head_dim=8, **kw)
        cls = transformers.MistralForCausalLM
    elif arch == "gemma3":
        layer_types = ["sliding_attention" if (i % 2 == 0) else "full_attention" for i in range(layers)]
        if "full_attention" not in layer_types:
            layer_types[-1] = "full_attention"
        cfg = transformers.Gemma3TextConfig(
            head_dim=8,
            query_pre_attn_scalar=8,  # real Gemma 3 uses head_dim here
            sliding_window=4,
            layer_types=layer_types,
            tie_word_embeddings=True,
            hidden_activation="gelu_pytorch_tanh",
            **kw,
        )
        cls = transformers.Gemma3ForCausalLM
    else:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    cfg._attn_implementation = attn_implementation
    return cls(cfg)


def tiny_model(
    arch: str,
    *,
    seed: int = 0,
    layers: int = 4,
    std: float = 0.2,
    attn_implementation: str = "sdpa",
) -> transformers.PreTrainedModel:
    """Random-weight tiny causal LM (hidden 32, MLP 64, 4 heads / 2 kv heads, head_dim 8).

    All Linear/Embedding weights ~ N(0, std) (default 0.2, 10x the HF default) so
    activations are not tiny and interventions visibly move logits; biases ~ N(0, 0.02);
    norm weights keep their defaults.  Deterministic for a given ``seed`` and does not
    disturb the caller's global RNG state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(arch, layers, attn_implementation)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                    mod.weight.normal_(0.0, std)
                    bias = getattr(mod, "bias", None)
                    if bias is not None:
                        bias.normal_(0.0, 0.02)
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
    model.to(torch.float32).eval()
    gc = model.generation_config
    gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = PAD_ID, BOS_ID, EOS_ID
    return model


def save_tiny(path, arch: str, *, layers: int = 4):
    """Save a tiny model and the tiny tokenizer into `path` (a model folder as users have them); returns `path`."""
    tiny_model(arch, layers=layers).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def spec_folder(folder, model_dir, spec_text: str):
    """`folder/spec.yaml` with `model/` linked to a saved tiny model (specs say `model: {path: model}`)."""
    (folder / "model").symlink_to(model_dir)
    path = folder / "spec.yaml"
    path.write_text(spec_text)
    return path


# --- tiny specs: the skeleton every test spec shares, so a test writes only what it is about ---------------------


def spec_data(languages, *, name: str = "t", model: dict | None = None, **fields) -> dict:
    """A spec as data: schema_version 1, `name`, `model` (default `{path: m}`, a path never loaded), `languages`,
    then `fields` (interventions, tasks, stats, ...) as given."""
    return {"schema_version": 1, "name": name, "model": {"path": "m"} if model is None else model,
            "languages": languages, **fields}


def spec_yaml(name: str, languages, *sections: str, model: str = "{path: model}") -> str:
    """A spec as YAML text: schema_version 1, `name`, `model` (flow YAML; default the `model/` folder next to the
    spec, see `spec_folder`), `languages`, then `sections` (YAML text, each ending in a newline) in order."""
    head = f"schema_version: 1\nname: {name}\nmodel: {model}\nlanguages: {json.dumps(languages)}\n"
    return head + "".join(sections)


def clas_yaml(shared: dict, specific: dict, **params) -> str:
    """One `interventions:` item: CLAS `id: clas` on layers [1, 2] with inline neuron lists, then `params`
    (beta=..., ...) in the order given."""
    lines = ["  - kind: clas", "    id: clas", "    layers: [1, 2]", f"    shared: {{neurons: {json.dumps(shared)}}}",
             f"    specific: {{neurons: {json.dumps(specific)}}}"]
    return "\n".join(lines + [f"    {key}: {value}" for key, value in params.items()]) + "\n"


# One `interventions:` item: scale three neurons of layer 1 by 2 (a second condition next to CLAS).
BOOST_YAML = """\
  - kind: scale
    id: boost
    layers: [1]
    factor: 2.0
    neurons: {neurons: {1: [7, 9, 14]}}
"""

# One `interventions:` item: CLAS on the bridge layers with the neurons the statistics categorize.
CLAS_FROM_STATS_YAML = """\
  - kind: clas
    layers: {auto: bridge}
    shared: {from_stats: partial_shared}
    specific: {from_stats: language_specific}
"""
