"""LAPE deactivation, `set` (activation to a statistic) and CLaS-Bench DiffMean against independent hook code.

Tolerance 1e-5 max abs on float32 logits of tiny random models (as tests/test_composition.py).
"""

from __future__ import annotations

import pytest
import torch
from reference_ops import HookOp, greedy, last_logits, rows_where
from tiny import spec_data, tiny_model, tiny_tokenizer

import clas_graph
from clas_graph import CompileError
from clas_graph.spec.load import validate_data
from clas_graph.stats import StatsArtifact

ATOL = 1e-5
LANGS = ["en", "de", "fr", "zh"]
TEXTS = ["The sky is blue and", "Der Himmel ist blau und", "Le ciel est bleu et la mer", "天空是蓝色的",
         "Die Katze schläft", "Hello there my friend", "Bonjour mes amis, comment"]
ROWS = ["en", "de", "fr", "zh", "de", "en", "fr"]
L, INTERMEDIATE, H = 4, 64, 32


def fake_stats(seed: int = 0) -> StatsArtifact:
    gen = torch.Generator().manual_seed(seed)
    experts = torch.rand(len(LANGS), L, INTERMEDIATE, generator=gen) < 0.15
    experts[:, 1] = False  # one layer without experts: no op is emitted there
    tensors = {
        "category": torch.randint(0, 4, (L, INTERMEDIATE), generator=gen).to(torch.int8),
        "specific_language": torch.full((L, INTERMEDIATE), -1, dtype=torch.int8),
        "mean": torch.randn(len(LANGS), L, INTERMEDIATE, generator=gen),
        "act_mean": torch.randn(len(LANGS), L, INTERMEDIATE, generator=gen),
        "resid_mean": torch.randn(len(LANGS), L, H, generator=gen) * 3,
        "bridge_layers": torch.tensor([1, 2]),
        "lape.mask": torch.rand(len(LANGS), L, INTERMEDIATE, generator=gen) < 0.1,
        "experts.mask": experts,
        "experts.p50": torch.rand(len(LANGS), L, INTERMEDIATE, generator=gen) * 4,
        "experts.p90": torch.rand(len(LANGS), L, INTERMEDIATE, generator=gen) * 6,
    }
    return StatsArtifact(tuple(LANGS), tensors, {"selections": {"experts": {"site": "mlp.act_fn.output"}}})


STATS = fake_stats()


def spec(interventions, conditions=None, anchor=None):
    data = {**spec_data(LANGS),
            "stats": {"corpus": {"kind": "bible", "limit": 2}, "selections": ["lape", "experts"]},
            "interventions": interventions}
    if conditions:
        data["conditions"] = conditions
    if anchor:
        data["anchor"] = anchor
    return validate_data(data)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def setup(request, tiny_lm):
    model = tiny_lm(request.param)
    return model._module, tiny_tokenizer(), model


def everyone(lang):
    return True


def check(setup, the_spec, condition, ops, rows=ROWS, generate=True):
    hf, tok, model = setup
    plan = clas_graph.compile_plan(the_spec, model, condition, stats=STATS)
    got = clas_graph.forward(model, plan, TEXTS, rows, batch_size=4)
    want = last_logits(hf, tok, TEXTS, rows, ops)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, rows, batch_size=4)
    assert (got - base).abs().amax() > 1e-3, "the intervention visibly changes the output"
    if generate:
        generated = clas_graph.generate_ids(model, plan, TEXTS, rows, 4, batch_size=4)
        assert generated == greedy(hf, tok, TEXTS, rows, ops, 4)
    return plan


# --- independent formulas -----------------------------------------------------------------------


def lape_off(layer, language=None):
    """Zero the LAPE neurons of `language` (or of each row's own language) in the act_fn output."""
    def fn(x, langs):
        new = x.clone()
        for b, lang in enumerate(langs):
            neurons = STATS.tensors["lape.mask"][LANGS.index(language or lang), layer].nonzero().flatten()
            new[b, :, neurons] = 0.0
        return new
    return fn


def set_to(layer, table, language, mode="replace", factor=1.0):
    def fn(x, langs):
        new = x.clone()
        g = LANGS.index(language)
        neurons = STATS.tensors["experts.mask"][g, layer].nonzero().flatten()
        value = (factor * table[g, layer, neurons]).to(x.dtype)
        if mode == "replace":
            new[:, :, neurons] = value
        else:
            new[:, :, neurons] = new[:, :, neurons] + value
        return new
    return fn


def diffmean(layer, target, alpha, source=None, keep_norm=False, touched=everyone):
    resid = STATS.tensors["resid_mean"].double()

    def fn(x, langs):
        out = x.clone()
        for b, lang in enumerate(langs):
            d = resid[LANGS.index(target), layer] - resid[LANGS.index(source or lang), layer]
            step = (alpha * d / (d.norm() + 1e-8)).to(x.dtype)
            steered = x[b] + step
            if keep_norm:
                # norms in float32: float16's range ends at 65504
                norms = x[b].float().norm(dim=-1, keepdim=True) / steered.float().norm(dim=-1, keepdim=True)
                steered = steered * norms.to(x.dtype)
            out[b] = steered
        return rows_where(langs, touched, x, out)
    return fn


# --- each kind ------------------------------------------------------------------------------------


def test_lape_deactivation_of_one_language(setup):
    the_spec = spec([{"kind": "ablate", "id": "off", "layers": {"auto": "all"}, "site": "mlp.act_fn.output",
                      "neurons": {"from_stats": "lape", "languages": ["de"]}, "rows": "all"}])
    check(setup, the_spec, "off", [HookOp(layer, "act", lape_off(layer, "de")) for layer in range(L)])


def test_lape_deactivation_of_each_rows_own_language(setup):
    the_spec = spec([{"kind": "ablate", "id": "off", "layers": [0, 2, 3], "site": "mlp.act_fn.output",
                      "neurons": {"from_stats": "lape", "per_row": True}, "rows": "all"}])
    check(setup, the_spec, "off", [HookOp(layer, "act", lape_off(layer)) for layer in (0, 2, 3)])


@pytest.mark.parametrize("value,table,mode,factor", [("median", "experts.p50", "replace", 1.0),
                                                     ("p90", "experts.p90", "add", 0.5)])
def test_set_experts_of_a_target_language_to_their_statistic(setup, value, table, mode, factor):
    the_spec = spec([{"kind": "set", "id": "on", "layers": {"auto": "all"}, "value": value, "language": "fr",
                      "mode": mode, "factor": factor, "rows": "all",
                      "neurons": {"from_stats": "experts", "languages": ["fr"]}}])
    ops = [HookOp(layer, "act", set_to(layer, STATS.tensors[table], "fr", mode, factor)) for layer in (0, 2, 3)]
    plan = check(setup, the_spec, "on", ops)
    assert [op.layer for op in plan.ops] == [0, 2, 3]  # layer 1 has no experts: no op


def test_set_each_rows_own_mean_at_h(setup):
    mask = STATS.tensors["lape.mask"]

    def fn(layer):
        def inner(x, langs):
            new = x.clone()
            for b, lang in enumerate(langs):
                g = LANGS.index(lang)
                neurons = mask[:, layer].any(0).nonzero().flatten()  # neurons of any language
                new[b, :, neurons] = STATS.tensors["mean"][g, layer, neurons]
            return rows_where(langs, lambda code: code != "en", x, new)
        return inner

    the_spec = spec([{"kind": "set", "id": "mu", "layers": [1, 3], "site": "mlp.down_proj.input", "value": "mean",
                      "neurons": {"from_stats": "lape"}}])
    check(setup, the_spec, "mu", [HookOp(1, "h", fn(1)), HookOp(3, "h", fn(3))])


@pytest.mark.parametrize("source,keep_norm", [(None, False), ("en", False), (None, True)])
def test_diffmean_clas_bench_form(setup, source, keep_norm):
    iv = {"kind": "diffmean", "id": "dm", "layers": [2], "target": "fr", "alpha": 4.0, "preserve_norm": keep_norm,
          "rows": "all"}
    if source:
        iv["source"] = source
    plan = check(setup, spec([iv]), "dm", [HookOp(2, "resid", diffmean(2, "fr", 4.0, source, keep_norm))])
    vector = plan.ops[0].vector
    norms = vector.norm(dim=-1)
    if source is None:  # one row per source language; the target's own row is zero
        assert norms[LANGS.index("fr")] == 0 and torch.allclose(norms[[0, 1, 3]], torch.tensor(4.0))
    else:
        assert torch.allclose(norms, torch.tensor(4.0))


def test_lape_steering_composition_deactivate_source_then_activate_target(setup):
    """CLaS-Bench's LAPE steering: zero the row language's neurons, then add the target's mean, in that order."""
    the_spec = spec([
        {"kind": "ablate", "id": "off", "layers": [0, 3], "site": "mlp.act_fn.output",
         "neurons": {"from_stats": "lape", "per_row": True}, "rows": "all"},
        {"kind": "set", "id": "on", "layers": [0, 3], "value": "mean", "language": "zh", "mode": "add", "rows": "all",
         "neurons": {"from_stats": "lape", "languages": ["zh"]}},
    ], {"force_zh": ["off", "on"]})

    def on(layer):
        def fn(x, langs):
            new = x.clone()
            neurons = STATS.tensors["lape.mask"][LANGS.index("zh"), layer].nonzero().flatten()
            new[:, :, neurons] = new[:, :, neurons] + STATS.tensors["act_mean"][LANGS.index("zh"), layer, neurons]
            return new
        return fn

    ops = [HookOp(0, "act", lape_off(0)), HookOp(0, "act", on(0)),
           HookOp(3, "act", lape_off(3)), HookOp(3, "act", on(3))]
    check(setup, the_spec, "force_zh", ops)


def test_errors_name_the_field():
    with pytest.raises(CompileError, match="per-row"):
        clas_graph.compile_plan(spec([{"kind": "scale", "id": "s", "layers": [0], "factor": 2.0,
                                       "neurons": {"from_stats": "lape", "per_row": True}}]),
                                tiny_model("llama").config, "s", stats=STATS)
    from clas_graph.errors import SpecError
    with pytest.raises(SpecError, match="'pt' is not in `languages`"):
        spec([{"kind": "diffmean", "layers": [0], "target": "pt"}])
    bare = StatsArtifact(STATS.languages, {k: v for k, v in STATS.tensors.items() if not k.startswith("experts")}, {})
    with pytest.raises(CompileError, match="no expert statistics"):
        clas_graph.compile_plan(spec([{"kind": "set", "id": "s", "layers": [0], "value": "median",
                                       "neurons": {"neurons": {0: [1, 2]}}}]),
                                tiny_model("llama").config, "s", stats=bare)
