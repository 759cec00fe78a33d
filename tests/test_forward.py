"""clas_graph.forward / generate against an independent plain-PyTorch hook implementation.

Tolerance: 1e-5 max abs on float32 logits of tiny random models (measured
differences are ~1e-6; padding/batching noise is ~3e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import ClasRef, ref_greedy, ref_last_logits
from tiny import ARCHS, spec_data, tiny_tokenizer

import clas_graph
from clas_graph.spec.load import validate_data

ATOL = 1e-5
LAYERS = [1, 2]
TEXTS = [
    "The capital of France is Paris and",
    "Die Hauptstadt von Frankreich ist",
    "La capitale de la France est Paris, et celle de l'Allemagne est",
    "法国的首都是",
    "Hi",
    "Der Himmel ist blau",
    "Le ciel est bleu et la mer est",
]
LANGS = ["en", "de", "fr", "zh", "en", "de", "fr"]


def random_masks(seed: int, intermediate: int = 64, n_shared: int = 20, n_spec: int = 10):
    rng = np.random.default_rng(seed)
    shared, specific = {}, {}
    for layer in LAYERS:
        perm = rng.permutation(intermediate)
        shared[layer] = sorted(perm[:n_shared].tolist())
        specific[layer] = sorted(perm[n_shared:n_shared + n_spec].tolist())
    return shared, specific


def make_spec(shared, specific, *, beta=0.4, gamma=0.2, alpha=1.0, rows="non_anchor", anchor=None):
    clas = {"kind": "clas", "id": "clas", "layers": LAYERS, "beta": beta, "gamma": gamma, "alpha": alpha, "rows": rows}
    if shared:
        clas["shared"] = {"neurons": shared}
    if specific:
        clas["specific"] = {"neurons": specific}
    data = {**spec_data(["en", "de", "fr", "zh"], model={"path": "unused"}),
            "interventions": [clas]}
    if anchor is not None:
        data["anchor"] = anchor
    return validate_data(data)


def clas_ref(shared, specific, *, beta=0.4, gamma=0.2, alpha=1.0, intermediate=64) -> ClasRef:
    def mask(indices):
        m = torch.zeros(intermediate)
        m[indices] = 1.0
        return m

    return ClasRef({layer: (mask(shared.get(layer, [])), mask(specific.get(layer, []))) for layer in LAYERS},
                   beta=beta, gamma=gamma, alpha=alpha)


@pytest.fixture(scope="module", params=ARCHS)
def setup(request, tiny_lm):
    model = tiny_lm(request.param)
    return request.param, model._module, tiny_tokenizer(), model


@pytest.mark.parametrize("alpha", [1.0, -0.7, 0.35])
def test_forward_matches_hook_reference(setup, alpha):
    _, hf, tok, model = setup
    shared, specific = random_masks(0)
    plan = clas_graph.compile_plan(make_spec(shared, specific, alpha=alpha), model)
    got = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=4)
    want = ref_last_logits(hf, tok, TEXTS, [lang != "en" for lang in LANGS], clas_ref(shared, specific, alpha=alpha))
    assert got.shape == (len(TEXTS), hf.config.vocab_size)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, LANGS, batch_size=4)
    moved = (got - base).abs().amax(-1)
    assert all(moved[i] > 1e-3 for i, lang in enumerate(LANGS) if lang != "en"), (
        "CLAS must visibly move non-anchor rows")


def test_anchor_rows_are_untouched_exactly(setup):
    _, _, _, model = setup
    shared, specific = random_masks(1)
    plan = clas_graph.compile_plan(make_spec(shared, specific), model)
    got = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=8)
    base = clas_graph.forward(model, None, TEXTS, LANGS, batch_size=8)
    for i, lang in enumerate(LANGS):
        if lang == "en":
            assert torch.equal(got[i], base[i])


@pytest.mark.parametrize("case", ["alpha_zero", "empty_masks_alpha_one"])
def test_no_op_settings_equal_the_unmodified_model(setup, case):
    _, _, _, model = setup
    shared, specific = random_masks(2)
    spec = make_spec(shared, specific, alpha=0.0) if case == "alpha_zero" else make_spec({}, {}, alpha=1.0)
    plan = clas_graph.compile_plan(spec, model)
    assert plan.ops, "the plan still carries the (no-op) CLAS ops"
    got = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=8)
    base = clas_graph.forward(model, None, TEXTS, LANGS, batch_size=8)
    assert torch.equal(got, base)


def test_results_do_not_depend_on_batching(setup):
    _, _, _, model = setup
    shared, specific = random_masks(3)
    plan = clas_graph.compile_plan(make_spec(shared, specific), model)
    together = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=len(TEXTS))
    alone = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=1)
    pairs = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=2)
    torch.testing.assert_close(together, alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(pairs, alone, atol=ATOL, rtol=0)


def test_row_rules_select_languages(setup):
    _, hf, tok, model = setup
    shared, specific = random_masks(4)
    only_fr = clas_graph.compile_plan(make_spec(shared, specific, rows={"languages": ["fr"]}), model)
    got = clas_graph.forward(model, only_fr, TEXTS, LANGS)
    want = ref_last_logits(hf, tok, TEXTS, [lang == "fr" for lang in LANGS], clas_ref(shared, specific))
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    every = clas_graph.compile_plan(make_spec(shared, specific, anchor={"kind": "none"}), model)
    got = clas_graph.forward(model, every, TEXTS, LANGS)
    want = ref_last_logits(hf, tok, TEXTS, [True] * len(LANGS), clas_ref(shared, specific))
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_generate_matches_hook_greedy_token_for_token(setup):
    arch, hf, tok, model = setup
    shared, specific = random_masks(5)
    plan = clas_graph.compile_plan(make_spec(shared, specific, beta=0.6, gamma=0.4), model)
    apply = [lang != "en" for lang in LANGS]
    got = clas_graph.generate_ids(model, plan, TEXTS, LANGS, max_new_tokens=6, batch_size=4)
    want = ref_greedy(hf, tok, TEXTS, apply, clas_ref(shared, specific, beta=0.6, gamma=0.4), max_new_tokens=6)
    assert got == want
    base = clas_graph.generate_ids(model, None, TEXTS, LANGS, max_new_tokens=6, batch_size=4)
    assert base == ref_greedy(hf, tok, TEXTS, apply, None, max_new_tokens=6)
    texts = clas_graph.generate(model, plan, TEXTS, LANGS, max_new_tokens=6, batch_size=4)
    assert texts == [tok.decode(ids, skip_special_tokens=True) for ids in want]


def test_unknown_row_language_is_a_data_error(setup):
    _, _, _, model = setup
    plan = clas_graph.compile_plan(make_spec(*random_masks(6)), model)
    with pytest.raises(clas_graph.DataError, match="'xx'"):
        clas_graph.forward(model, plan, ["hello"], ["xx"])
