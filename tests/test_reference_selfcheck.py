"""Self-checks of the test infrastructure (tests/tiny.py, tests/reference.py).

These do not touch ``clas_graph``; they make sure the ground truth the package
is tested against is itself sound.
"""

from __future__ import annotations

import functools
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from reference import (  # noqa: E402
    ClasRef,
    clas_hooks,
    encode,
    ref_greedy,
    ref_last_logits,
    ref_last_logits_one_by_one,
)
from tiny import ARCHS, BOS_ID, EOS_ID, PAD_ID, tiny_model, tiny_tokenizer  # noqa: E402

TEXTS = [
    "Hi",
    "The capital of France is Paris and the capital of Germany is Berlin, yes.",
    "Столица России — Москва.",
    "中国的首都是北京。 ok",
    "ما هي عاصمة مصر؟",
    "भारत की राजधानी नई दिल्ली है। 🙂",
]
APPLY = [True, False, True, True, False, True]
INTERMEDIATE = 64
N_LAYERS = 4


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny matmuls: intra-op threading only adds overhead (and thrashes on a busy box).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=None)
def _model(arch: str):
    return tiny_model(arch)


def _random_clas(seed: int, layers=(0, 2, 3), beta=0.4, gamma=0.2, alpha=1.0, p=0.3) -> ClasRef:
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for layer in layers:
        ms = (torch.rand(INTERMEDIATE, generator=g) < p).float()
        mp = (torch.rand(INTERMEDIATE, generator=g) < p).float()
        masks[layer] = (ms, mp)
    return ClasRef(layers=masks, beta=beta, gamma=gamma, alpha=alpha)


# --------------------------------------------------------------------------- tiny.py


def test_tokenizer_basics():
    tok = tiny_tokenizer()
    assert tok is tiny_tokenizer()  # cached
    assert 300 <= len(tok) <= 500
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "<bos>", "<eos>"]
    assert tok.padding_side == "left"
    for d in "012":
        ids = tok(d, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (d, ids)
        assert tok(d)["input_ids"] == [BOS_ID] + ids
    assert len({tok(d, add_special_tokens=False)["input_ids"][0] for d in "012"}) == 3
    for text in TEXTS + ["Ünïcödé ∑ 𝔘 \t\n x", "Tschüß, ça va? ¿Qué tal?"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == BOS_ID and BOS_ID not in ids[1:]
        assert tok.unk_token_id is None or tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_left_padding_and_positions():
    tok = tiny_tokenizer()
    enc = encode(tok, ["Hi", "a much longer text, really"])
    ids, am, pos = enc["input_ids"], enc["attention_mask"], enc["position_ids"]
    n_short = int(am[0].sum())
    assert ids.shape[1] > n_short
    assert am[0, -n_short:].all() and not am[0, :-n_short].any()
    assert (ids[0, :-n_short] == PAD_ID).all() and ids[0, -n_short] == BOS_ID
    assert pos[0, -n_short:].tolist() == list(range(n_short))
    assert pos[1].tolist() == list(range(ids.shape[1]))


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_config_and_determinism(arch):
    tok = tiny_tokenizer()
    m = _model(arch)
    c = m.config
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads) == (32, 64, 4, 2)
    assert c.num_hidden_layers == N_LAYERS and len(m.model.layers) == N_LAYERS
    assert m.model.layers[0].self_attn.head_dim == 8
    assert c.vocab_size == len(tok)
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert not m.training and m.dtype == torch.float32
    assert m.model.layers[0].mlp.down_proj.in_features == INTERMEDIATE
    if arch == "gemma3":
        assert m.lm_head.weight is m.model.embed_tokens.weight
        assert set(c.layer_types) == {"sliding_attention", "full_attention"}
        assert c.sliding_window == 4
    # same seed -> same weights; other seed -> different; global RNG untouched
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    m2 = tiny_model(arch, seed=0)
    assert torch.equal(torch.rand(3), before)
    m3 = tiny_model(arch, seed=1)
    sd, sd2, sd3 = m.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert not torch.equal(sd["model.embed_tokens.weight"], sd3["model.embed_tokens.weight"])
    # weights were re-initialised with the large std
    assert 0.15 < m.model.layers[0].mlp.gate_proj.weight.std().item() < 0.25


# --------------------------------------------------------------------------- reference.py


@pytest.mark.parametrize("arch", ARCHS)
def test_alpha_zero_is_identity(arch):
    m, tok = _model(arch), tiny_tokenizer()
    base = ref_last_logits(m, tok, TEXTS, APPLY, None)
    clas = _random_clas(1, alpha=0.0)
    assert torch.equal(ref_last_logits(m, tok, TEXTS, APPLY, clas), base)
    assert torch.equal(ref_last_logits(m, tok, TEXTS, [True] * len(TEXTS), clas), base)


@pytest.mark.parametrize("arch", ARCHS)
def test_unapplied_rows_exact_and_applied_rows_move(arch):
    m, tok = _model(arch), tiny_tokenizer()
    base = ref_last_logits(m, tok, TEXTS, APPLY, None)
    clas = _random_clas(2, beta=0.4, gamma=0.2, alpha=1.0)
    out = ref_last_logits(m, tok, TEXTS, APPLY, clas)
    apply = torch.tensor(APPLY)
    assert torch.equal(out[~apply], base[~apply])
    diff = (out - base).abs().amax(dim=-1)
    assert (diff[apply] > 1e-3).all(), diff
    # hooks are gone after the context
    for layer in m.model.layers:
        assert not layer.mlp.down_proj._forward_pre_hooks
    assert torch.equal(ref_last_logits(m, tok, TEXTS, APPLY, None), base)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_matches_one_by_one(arch):
    m, tok = _model(arch), tiny_tokenizer()
    assert len({len(tok(t)["input_ids"]) for t in TEXTS}) > 3  # genuinely mixed lengths
    for clas in (None, _random_clas(3)):
        batch = ref_last_logits(m, tok, TEXTS, APPLY, clas)
        single = ref_last_logits_one_by_one(m, tok, TEXTS, APPLY, clas)
        assert batch.shape == (len(TEXTS), len(tok))
        err = (batch - single).abs().max().item()
        assert err < 1e-5, f"{arch}: batch vs one-by-one max abs {err:.2e}"


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_formula_matches_manual_mlp(arch):
    m, tok = _model(arch), tiny_tokenizer()
    layer = 2
    beta, gamma, alpha = 0.7, 0.3, 0.6
    clas = _random_clas(4, layers=(layer,), beta=beta, gamma=gamma, alpha=alpha, p=0.5)
    ms, mp = clas.layers[layer]
    mlp = m.model.layers[layer].mlp
    captured = {}

    def cap_x(module, args):
        captured["x"] = args[0].detach().clone()

    def cap_h(module, args):
        captured["h_final"] = args[0].detach().clone()

    enc = encode(tok, TEXTS)
    with clas_hooks(m, clas, torch.tensor(APPLY)):
        # registered after the CLAS hook -> sees its output
        hx = mlp.register_forward_pre_hook(cap_x)
        hh = mlp.down_proj.register_forward_pre_hook(cap_h)
        try:
            with torch.no_grad():
                m(**enc, use_cache=False)
        finally:
            hx.remove()
            hh.remove()

    with torch.no_grad():
        x = captured["x"]
        h = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        # literal formula, written out independently of reference.clas_formula
        h1 = h * (1.0 + beta * ms)
        h2 = h1 * (1.0 - gamma * mp)
        expected_sel = (1.0 - alpha) * h + alpha * h2
    got = captured["h_final"]
    apply = torch.tensor(APPLY)
    assert got.shape == h.shape == (len(TEXTS), enc["input_ids"].shape[1], INTERMEDIATE)
    torch.testing.assert_close(got[apply], expected_sel[apply], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[~apply], h[~apply], rtol=0, atol=0)
    # and the intervention actually changed the selected rows (incl. pad positions: every position)
    assert (got[apply] - h[apply]).abs().amax(dim=-1).min() > 1e-4
    # a unit where only M_shared is on scales by exactly (1 - alpha) + alpha * (1 + beta)
    only_shared = (ms == 1) & (mp == 0)
    assert only_shared.any()
    scale = (1 - alpha) + alpha * (1 + beta)
    torch.testing.assert_close(got[apply][..., only_shared], scale * h[apply][..., only_shared], rtol=1e-5, atol=1e-6)


def test_row_mask_batch_mismatch_raises():
    m, tok = _model("llama"), tiny_tokenizer()
    with pytest.raises(RuntimeError):
        enc = encode(tok, TEXTS[:2])
        with clas_hooks(m, _random_clas(5), torch.tensor([True, False, True])), torch.no_grad():
            m(**enc)
    assert not m.model.layers[0].mlp.down_proj._forward_pre_hooks


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_batch_equals_row_by_row(arch):
    m, tok = _model(arch), tiny_tokenizer()
    clas = _random_clas(6)
    batch = ref_greedy(m, tok, TEXTS, APPLY, clas, max_new_tokens=8)
    rows = [ref_greedy(m, tok, [t], [a], clas, max_new_tokens=8)[0] for t, a in zip(TEXTS, APPLY)]
    assert batch == rows
    # unapplied rows generate exactly what the unmodified model generates; applied rows can change
    plain = ref_greedy(m, tok, TEXTS, APPLY, None, max_new_tokens=8)
    assert [b for b, a in zip(batch, APPLY) if not a] == [p for p, a in zip(plain, APPLY) if not a]
    assert any(b != p for b, p, a in zip(batch, plain, APPLY) if a)
    for r in batch:
        assert len(r) <= 8 and EOS_ID not in r and PAD_ID not in r
    # greedy with hooks = argmax of ref_last_logits for the first new token
    first = ref_last_logits(m, tok, TEXTS, APPLY, clas).argmax(-1).tolist()
    for r, f in zip(batch, first):
        if f == EOS_ID:
            assert r == []
        else:
            assert r[0] == f
