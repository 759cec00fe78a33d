"""Every intervention kind, and compositions, against independent hook implementations (tests/reference_ops.py).

Tolerance 1e-5 max abs on float32 logits of tiny random models.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from reference_ops import HookOp, greedy, last_logits, rows_where
from safetensors.torch import save_file
from tiny import spec_data, tiny_tokenizer
from typer.testing import CliRunner

import clas_graph
from clas_graph.cli import app
from clas_graph.spec.load import validate_data
from clas_graph.stats import StatsArtifact

ATOL = 1e-5
LANGS = ["en", "de", "fr", "zh"]
TEXTS = ["The sky is blue and", "Der Himmel ist blau und", "Le ciel est bleu et la mer", "天空是蓝色的",
         "Die Katze schläft", "Hello there my friend", "Bonjour mes amis, comment"]
ROWS = ["en", "de", "fr", "zh", "de", "en", "fr"]
INTERMEDIATE, H = 64, 32


def fake_stats(seed: int = 0) -> StatsArtifact:
    gen = torch.Generator().manual_seed(seed)
    category = torch.randint(0, 4, (4, INTERMEDIATE), generator=gen).to(torch.int8)
    owner = torch.randint(0, len(LANGS), (4, INTERMEDIATE), generator=gen).to(torch.int8)
    tensors = {
        "category": category,
        "specific_language": torch.where(category == 1, owner, torch.full_like(owner, -1)),
        "mean": torch.randn(len(LANGS), 4, INTERMEDIATE, generator=gen),
        "act_mean": torch.randn(len(LANGS), 4, INTERMEDIATE, generator=gen),
        "resid_mean": torch.randn(len(LANGS), 4, H, generator=gen),
        "bridge_layers": torch.tensor([1, 2]),
    }
    return StatsArtifact(tuple(LANGS), tensors, {})


STATS = fake_stats()


def spec(interventions, conditions=None):
    data = {**spec_data(LANGS),
            "stats": {"corpus": {"kind": "bible", "limit": 2}}, "interventions": interventions}
    if conditions:
        data["conditions"] = conditions
    return validate_data(data)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def setup(request, tiny_lm):
    model = tiny_lm(request.param)
    return model._module, tiny_tokenizer(), model


def non_anchor(lang):
    return lang != "en"


# --- independent formulas -----------------------------------------------------------------------


def int_mu_fn(layer, site_means):
    def fn(x, langs):
        new = x.clone()
        for b, lang in enumerate(langs):
            g = LANGS.index(lang)
            neurons = (STATS.tensors["specific_language"][layer] == g).nonzero().flatten()
            new[b, :, neurons] = site_means[g, layer, neurons].to(x.dtype)
        return rows_where(langs, non_anchor, x, new)
    return fn


def add_fn(layer, coefficient, language=None):
    resid = STATS.tensors["resid_mean"]

    def fn(x, langs):
        vectors = torch.stack([resid[LANGS.index(language or lang), layer] - resid[0, layer] for lang in langs])
        return rows_where(langs, non_anchor, x, x + coefficient * vectors[:, None, :].to(x.dtype))
    return fn


def scale_fn(neurons, factor, touched=non_anchor):
    def fn(x, langs):
        new = x.clone()
        new[..., neurons] = new[..., neurons] * factor
        return rows_where(langs, touched, x, new)
    return fn


def ablate_fn(neurons):
    def fn(x, langs):
        new = x.clone()
        new[..., neurons] = 0.0
        return rows_where(langs, non_anchor, x, new)
    return fn


def clas_fn(shared, specific, beta, gamma, alpha):
    def fn(x, langs):
        ms = torch.zeros(INTERMEDIATE, dtype=x.dtype, device=x.device)  # on the site's device, in its dtype
        ms[shared] = 1.0
        mp = torch.zeros(INTERMEDIATE, dtype=x.dtype, device=x.device)
        mp[specific] = 1.0
        h1 = x * (1 + beta * ms)
        h2 = h1 * (1 - gamma * mp)
        return rows_where(langs, non_anchor, x, (1 - alpha) * x + alpha * h2)
    return fn


def check(setup, the_spec, condition, ops, generate=True):
    hf, tok, model = setup
    plan = clas_graph.compile_plan(the_spec, model, condition, stats=STATS)
    got = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=4)
    want = last_logits(hf, tok, TEXTS, ROWS, ops)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, ROWS, batch_size=4)
    assert all(torch.equal(got[i], base[i]) for i, lang in enumerate(ROWS) if lang == "en"), "anchor rows untouched"
    assert (got - base).abs().amax() > 1e-3, "the intervention visibly changes non-anchor rows"
    if generate:
        generated = clas_graph.generate_ids(model, plan, TEXTS, ROWS, 5, batch_size=4)
        assert generated == greedy(hf, tok, TEXTS, ROWS, ops, 5)
    return got


# --- each kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["mlp.act_fn.output", "mlp.down_proj.input"])
def test_int_mu_overwrites_the_row_languages_specific_neurons_with_their_mean(setup, site):
    the_spec = spec([{"kind": "int_mu", "layers": [1, 3], "site": site}])
    means = STATS.tensors["act_mean" if site == "mlp.act_fn.output" else "mean"]
    short = "act" if site == "mlp.act_fn.output" else "h"
    check(setup, the_spec, "int_mu", [HookOp(1, short, int_mu_fn(1, means)), HookOp(3, short, int_mu_fn(3, means))])


def test_add_vector_diffmean_adds_each_row_its_own_languages_vector(setup):
    the_spec = spec([{"kind": "add_vector", "layers": [2], "vector": {"from_stats": "diffmean"}, "coefficient": 0.7}])
    check(setup, the_spec, "add_vector", [HookOp(2, "resid", add_fn(2, 0.7))])


def test_add_vector_for_a_fixed_target_language(setup):
    the_spec = spec([{"kind": "add_vector", "layers": {"auto": "bridge"},
                      "vector": {"from_stats": "diffmean", "language": "fr"}, "coefficient": -1.5}])
    check(setup, the_spec, "add_vector",
          [HookOp(1, "resid", add_fn(1, -1.5, "fr")), HookOp(2, "resid", add_fn(2, -1.5, "fr"))])


def test_add_vector_from_inline_values(setup):
    values = torch.linspace(-1, 1, H)
    the_spec = spec([{"kind": "add_vector", "layers": [0], "vector": {"values": values.tolist()}, "coefficient": 2.0}])
    fn = lambda x, langs: rows_where(langs, non_anchor, x, x + 2.0 * values)  # noqa: E731
    check(setup, the_spec, "add_vector", [HookOp(0, "resid", fn)])


def test_scale_from_stats_on_all_rows(setup):
    the_spec = spec([{"kind": "scale", "layers": [2], "site": "mlp.act_fn.output", "factor": 1.5, "rows": "all",
                      "neurons": {"from_stats": "partial_shared"}}])
    neurons = (STATS.tensors["category"][2] == 2).nonzero().flatten()
    hf, tok, model = setup
    plan = clas_graph.compile_plan(the_spec, model, stats=STATS)
    got = clas_graph.forward(model, plan, TEXTS, ROWS)
    want = last_logits(hf, tok, TEXTS, ROWS, [HookOp(2, "act", scale_fn(neurons, 1.5, touched=lambda lang: True))])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_ablate_inline_neurons(setup):
    the_spec = spec([{"kind": "ablate", "layers": [1], "neurons": {"neurons": {1: [0, 5, 6, 40]}}}])
    check(setup, the_spec, "ablate", [HookOp(1, "h", ablate_fn([0, 5, 6, 40]))])


# --- compositions ---------------------------------------------------------------------------------

SHARED = {1: [1, 2, 3, 10, 11], 2: [4, 5, 6, 7]}
SPECIFIC = {1: [20, 21], 2: [30, 31, 32]}
COMBO = [
    {"kind": "clas", "layers": [1, 2], "shared": {"neurons": SHARED}, "specific": {"neurons": SPECIFIC},
     "beta": 0.6, "gamma": 0.4, "alpha": 0.8},
    {"kind": "add_vector", "layers": [1], "vector": {"from_stats": "diffmean"}, "coefficient": 0.5},
    {"kind": "ablate", "layers": [2], "neurons": {"neurons": {2: [4, 30, 50]}}},
]


def test_clas_plus_add_vector_plus_ablate_across_layers(setup):
    the_spec = spec(COMBO, {"combo": ["clas", "add_vector", "ablate"]})
    ops = [HookOp(1, "h", clas_fn(SHARED[1], SPECIFIC[1], 0.6, 0.4, 0.8)),
           HookOp(1, "resid", add_fn(1, 0.5)),
           HookOp(2, "h", clas_fn(SHARED[2], SPECIFIC[2], 0.6, 0.4, 0.8)),
           HookOp(2, "h", ablate_fn([4, 30, 50]))]
    check(setup, the_spec, "combo", ops)
    plan = clas_graph.compile_plan(the_spec, setup[2], "combo", stats=STATS)
    assert [(op.layer, op.site, op.intervention) for op in plan.ops] == [
        (1, "mlp.down_proj.input", "clas"), (1, "resid_post", "add_vector"),
        (2, "mlp.down_proj.input", "clas"), (2, "mlp.down_proj.input", "ablate")]


def test_order_on_one_site_follows_the_condition(setup):
    ivs = [{"kind": "int_mu", "layers": [2], "site": "mlp.down_proj.input"},
           {"kind": "scale", "layers": [2], "factor": 3.0, "neurons": {"from_stats": "language_specific"}}]
    the_spec = spec(ivs, {"mu_then_scale": ["int_mu", "scale"], "scale_then_mu": ["scale", "int_mu"]})
    specific = (STATS.tensors["category"][2] == 1).nonzero().flatten()
    mu = int_mu_fn(2, STATS.tensors["mean"])
    triple = scale_fn(specific, 3.0)
    first = check(setup, the_spec, "mu_then_scale", [HookOp(2, "h", mu), HookOp(2, "h", triple)], generate=False)
    second = check(setup, the_spec, "scale_then_mu", [HookOp(2, "h", triple), HookOp(2, "h", mu)], generate=False)
    # scale-then-overwrite leaves the means (the scale is erased); overwrite-then-scale gives 3x the means
    assert (first - second).abs().amax() > 1e-3


def test_generation_steps_prompt_and_generated(setup):
    hf, tok, model = setup
    ivs = [{"kind": "add_vector", "id": "prompt_only", "layers": [1], "vector": {"from_stats": "diffmean"},
            "coefficient": 2.0, "steps": "prompt"},
           {"kind": "ablate", "id": "gen_only", "layers": [2], "neurons": {"neurons": {2: list(range(0, 64, 2))}},
            "steps": "generated"}]
    the_spec = spec(ivs, {"both": ["prompt_only", "gen_only"]})
    plan = clas_graph.compile_plan(the_spec, model, "both", stats=STATS)
    ops = [HookOp(1, "resid", add_fn(1, 2.0), phase="prompt"),
           HookOp(2, "h", ablate_fn(list(range(0, 64, 2))), phase="generated")]
    assert clas_graph.generate_ids(model, plan, TEXTS, ROWS, 5, batch_size=4) == greedy(hf, tok, TEXTS, ROWS, ops, 5)
    # a plain forward is a prompt step: only the prompt op applies
    got = clas_graph.forward(model, plan, TEXTS, ROWS)
    torch.testing.assert_close(got, last_logits(hf, tok, TEXTS, ROWS, ops[:1]), atol=ATOL, rtol=0)


# --- malformed compositions: one clear message, exit status 2, no traceback --------------------------

BASE = """\
schema_version: 1
name: bad
model: {path: m}
languages: [en, de]
"""


@pytest.fixture
def tiny_config(monkeypatch):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=1)
    monkeypatch.setattr("clas_graph.loading.load_config", lambda ref, base_dir=None: config)
    return config


def run_cli(command, path):
    result = CliRunner().invoke(app, [command, str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_unknown_site_for_an_architecture(write, tiny_config, monkeypatch):
    import dataclasses

    from clas_graph import sites

    narrow = dataclasses.replace(sites.ARCHITECTURES["llama"], sites=frozenset({"mlp.down_proj.input"}))
    monkeypatch.setitem(sites.ARCHITECTURES, "llama", narrow)
    path = write("s.yaml", BASE + "interventions:\n  - {kind: scale, layers: [1], site: mlp.act_fn.output, factor: 2, "
                                  "neurons: {neurons: {1: [3]}}}\n")
    message = run_cli("compile", path)
    assert "site 'mlp.act_fn.output' does not exist on llama models" in message and "interventions[0].site" in message


def test_vector_of_the_wrong_size(write, tiny_config):
    path = write("s.yaml", BASE + "interventions:\n  - {kind: add_vector, layers: [1], vector: {values: [1, 2, 3]}}\n")
    message = run_cli("compile", path)
    assert "the vector has 3 values, but the model's hidden size is 16" in message
    assert "interventions[0].vector.values" in message


def test_vector_file_with_a_wrong_sha256(write, tiny_config, tmp_path):
    save_file({"v": torch.ones(16)}, str(tmp_path / "v.safetensors"))
    actual = hashlib.sha256((tmp_path / "v.safetensors").read_bytes()).hexdigest()
    path = write("s.yaml", BASE + "interventions:\n  - {kind: add_vector, layers: [1], "
                                  f"vector: {{file: v.safetensors, key: v, sha256: '{'a' * 64}'}}}}\n")
    message = run_cli("compile", path)
    assert f"set `sha256: {actual}`" in message and "interventions[0].vector.sha256" in message


def test_vector_file_is_used_when_the_hash_matches(tmp_path):
    save_file({"v": torch.arange(4 * 16, dtype=torch.float32).reshape(4, 16)}, str(tmp_path / "v.safetensors"))
    digest = hashlib.sha256((tmp_path / "v.safetensors").read_bytes()).hexdigest()
    the_spec = validate_data({**spec_data(["en", "de"]),
                              "interventions": [{"kind": "add_vector", "layers": [2], "coefficient": 0.5,
                                                 "vector": {"file": "v.safetensors", "key": "v", "sha256": digest}}]})
    the_spec._source = str(tmp_path / "spec.yaml")
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=1)
    (op,) = clas_graph.compile_plan(the_spec, config).ops
    assert torch.equal(op.vector, 0.5 * torch.arange(32, 48, dtype=torch.float32))


def test_conflicting_overwrites_name_both_ids(write, tiny_config):
    path = write("s.yaml", BASE + """\
interventions:
  - {kind: ablate, id: zero_a, layers: [1, 2], neurons: {neurons: {1: [3, 4], 2: [9]}}}
  - {kind: ablate, id: zero_b, layers: [2], neurons: {neurons: {2: [9, 10]}}}
conditions: {both: [zero_a, zero_b]}
""")
    message = run_cli("compile", path)
    assert "'zero_a' (ablate) and 'zero_b' (ablate) both overwrite 1 of the same neurons at layer 2" in message


def test_include_merges_and_names_the_file_of_a_bad_value(write):
    write("base.yaml", BASE + "interventions:\n  - {kind: clas, layers: [1], beta: 0.4}\nbatch_size: 4\n")
    child = write("child.yaml", "include: base.yaml\nname: child\nbatch_size: 16\n")
    loaded = clas_graph.load_spec(child)
    assert loaded.name == "child" and loaded.batch_size == 16 and loaded.interventions[0].beta == 0.4
    assert loaded.languages == ["en", "de"]
    bad_base = write("bad_base.yaml", BASE.replace("languages: [en, de]", "languages: [en, de]\ntemperature: 3"))
    child2 = write("child2.yaml", f"include: {bad_base.name}\nname: child2\n")
    message = run_cli("validate", child2)
    assert f"{bad_base}:5" in message and "unknown key 'temperature'" in message


def test_include_replaces_lists_and_merges_mappings(write):
    write("base.yaml", BASE + "anchor: {kind: fixed, language: en}\ninterventions:\n"
                              "  - {kind: clas, layers: [1, 2], beta: 0.4, gamma: 0.1}\n")
    child = write("child.yaml", "include: base.yaml\nlanguages: [en, fr, de]\n"
                                "interventions:\n  - {kind: clas, layers: [3]}\n")
    loaded = clas_graph.load_spec(child)
    assert loaded.languages == ["en", "fr", "de"]
    assert [iv.layers for iv in loaded.interventions] == [[3]] and loaded.interventions[0].gamma == 0.2


def test_include_cycle(write):
    write("a.yaml", "include: b.yaml\n" + BASE)
    b = write("b.yaml", "include: a.yaml\n")
    message = run_cli("validate", b)
    assert "include cycle" in message and "a.yaml" in message


def test_include_of_a_missing_file(write):
    path = write("a.yaml", "include: nowhere.yaml\n" + BASE)
    message = run_cli("validate", path)
    assert "included file" in message and "nowhere.yaml" in message and f"{path}:1" in message


def test_generation_with_only_prompt_step_ops_terminates_and_matches(setup):
    # A step on which no op applies must still advance the model (an idle loop body would spin forever).
    hf, tok, model = setup
    the_spec = spec([{"kind": "add_vector", "layers": [1], "vector": {"from_stats": "diffmean"}, "coefficient": 2.0,
                      "steps": "prompt"}])
    plan = clas_graph.compile_plan(the_spec, model, stats=STATS)
    ops = [HookOp(1, "resid", add_fn(1, 2.0), phase="prompt")]
    assert clas_graph.generate_ids(model, plan, TEXTS, ROWS, 5, batch_size=4) == greedy(hf, tok, TEXTS, ROWS, ops, 5)
