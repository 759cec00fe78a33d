"""Statistics runner: moments vs an independent hook computation, categories, bridge rule, artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import CLAS_FROM_STATS_YAML, spec_data, spec_folder, spec_yaml, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph import CompileError, compile_plan
from clas_graph.cli import app
from clas_graph.data.bible import load_bible
from clas_graph.errors import DataError
from clas_graph.loading import wrap
from clas_graph.runners import stats as stats_runner
from clas_graph.spec.load import load_spec, validate_data
from clas_graph.spec.stats import AbsoluteThreshold, QuantileThreshold
from clas_graph.stats import StatsArtifact, categorize, thresholds
from clas_graph.stats.categories import ALL_SHARED, DEAD, PARTIAL, SPECIFIC, active, bridge_layers, specific_language

LANGS = ["en", "de", "fr", "zh"]
REL = 1e-5


@pytest.fixture(scope="module")
def samples():
    return load_bible(LANGS, limit=5, seed=1)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request, tiny_lm):
    return tiny_lm(request.param)


def hook_moments(hf, tokenizer, samples, languages, skip_bos=True):
    """Independent reference: one text at a time, plain forward hooks, float64 sums over all tokens
    (but the BOS token, which the tiny tokenizer puts first, when `skip_bos`)."""
    layers = hf.model.layers
    n, inter = len(layers), hf.config.intermediate_size
    h_sum = torch.zeros(n, len(languages), inter, dtype=torch.float64)
    h_sq = torch.zeros_like(h_sum)
    resid = torch.zeros(n, len(languages), hf.config.hidden_size, dtype=torch.float64)
    tokens = torch.zeros(len(languages), dtype=torch.float64)
    captured = {}
    handles = [layer.mlp.down_proj.register_forward_pre_hook(
        lambda mod, args, i=i: captured.__setitem__(("h", i), args[0].detach())) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(
        lambda mod, args, out, i=i: captured.__setitem__(("r", i),
                                                         (out[0] if isinstance(out, tuple) else out).detach()))
        for i, layer in enumerate(layers)]
    try:
        for sample in samples:
            for g, lang in enumerate(languages):
                ids = tokenizer(sample.texts[lang], return_tensors="pt")
                with torch.no_grad():
                    hf(**ids)
                first = 1 if skip_bos else 0
                assert ids["input_ids"][0, 0].item() == tokenizer.bos_token_id
                tokens[g] += ids["input_ids"].shape[1] - first
                for i in range(n):
                    h = captured[("h", i)][0, first:].double()
                    h_sum[i, g] += h.sum(0)
                    h_sq[i, g] += (h * h).sum(0)
                    resid[i, g] += captured[("r", i)][0, first:].double().sum(0)
    finally:
        for handle in handles:
            handle.remove()
    return h_sum, h_sq, resid, tokens


def rel_close(got, want):
    scale = want.abs().max().clamp(min=1e-12)
    assert ((got - want).abs().max() / scale).item() < REL


@pytest.mark.parametrize("batch_size,exclude_bos", [(1, True), (3, True), (8, True), (8, False)])
def test_batched_moments_equal_one_at_a_time_hooks(model, samples, batch_size, exclude_bos):
    moments, counts, t_act = stats_runner.collect(model, samples, LANGS, threshold=QuantileThreshold(),
                                                  batch_size=batch_size, exclude_bos=exclude_bos)
    h_sum, h_sq, resid, tokens = hook_moments(model._module, model.tokenizer, samples, LANGS, skip_bos=exclude_bos)
    assert torch.equal(moments.tokens, tokens)
    rel_close(moments.h_sum, h_sum)
    rel_close(moments.h_sqsum, h_sq)
    rel_close(moments.resid_sum, resid)
    mean = (h_sum / tokens[None, :, None]).transpose(0, 1)
    torch.testing.assert_close(t_act, thresholds(mean, kind="quantile", q=0.8), rtol=1e-6, atol=0)


def test_padding_tokens_with_large_values_are_ignored(samples):
    hf = tiny_model("llama")
    with torch.no_grad():
        hf.model.embed_tokens.weight[tiny_tokenizer().pad_token_id] = 1e4  # a poisoned pad embedding
    model = wrap(hf, tiny_tokenizer())
    batched, counts_b, _ = stats_runner.collect(model, samples, LANGS, threshold=AbsoluteThreshold(), batch_size=20)
    alone, counts_a, _ = stats_runner.collect(model, samples, LANGS, threshold=AbsoluteThreshold(), batch_size=1)
    rel_close(batched.h_sum, alone.h_sum)
    rel_close(batched.resid_sum, alone.resid_sum)
    assert torch.equal(counts_b, counts_a)


def test_active_fraction_counts_tokens_above_the_threshold(model, samples):
    value = 0.05
    moments, counts, _ = stats_runner.collect(model, samples, LANGS, threshold=AbsoluteThreshold(value=value),
                                              batch_size=4)
    hf, tok = model._module, model.tokenizer
    captured = {}
    handle = hf.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, a: captured.__setitem__("h", a[0]))
    try:
        expected = torch.zeros(len(LANGS), hf.config.intermediate_size, dtype=torch.float64)
        for sample in samples:
            for g, lang in enumerate(LANGS):
                with torch.no_grad():
                    hf(**tok(sample.texts[lang], return_tensors="pt"))
                expected[g] += (captured["h"][0, 1:] > value).sum(0).double()  # BOS excluded by default
    finally:
        handle.remove()
    assert torch.equal(counts[1], expected)


# --- categories and thresholds on hand-built tensors ------------------------------------------


def test_categories_from_the_definition_with_edge_cases():
    # [languages=3, layers=1, neurons=6]; T_act = 1.0 (absolute, signed)
    mean = torch.tensor([[[2.0, 0.0, 2.0, 1.0, 5.0, -3.0]],
                         [[2.0, 0.0, 0.5, 1.0, 0.0, -3.0]],
                         [[2.0, 0.0, 0.5, 0.0, 0.0, -3.0]]], dtype=torch.float64)
    t = thresholds(mean, kind="absolute", value=1.0)
    is_active = active(mean, t, "absolute")
    category = categorize(is_active)
    # n0: all above -> all-shared; n1: a language with all-zero activations everywhere -> dead;
    # n2: one language -> specific; n3: exactly at T_act is not active -> dead;
    # n4: one -> specific; n5: negative means are not active under the signed rule -> dead
    assert category[0].tolist() == [ALL_SHARED, DEAD, SPECIFIC, DEAD, SPECIFIC, DEAD]
    assert specific_language(is_active, category)[0].tolist() == [-1, -1, 0, -1, 0, -1]
    # |mean| with a quantile threshold: sign no longer matters
    t_q = thresholds(mean, kind="quantile", q=0.5)
    assert t_q.item() == pytest.approx(float(np.quantile(mean.abs().numpy(), 0.5)))
    cat_q = categorize(active(mean, t_q, "quantile"))
    assert cat_q[0, 5].item() == ALL_SHARED and cat_q[0, 2].item() == SPECIFIC


def test_partial_shared_and_sign_invariance():
    mean = torch.tensor([[[3.0, 3.0]], [[3.0, 0.0]], [[0.0, 0.0]]], dtype=torch.float64)
    assert categorize(active(mean, thresholds(mean, kind="absolute"), "absolute"))[0].tolist() == [PARTIAL, SPECIFIC]
    flipped = mean * torch.tensor([1.0, -1.0], dtype=torch.float64)  # negate one neuron (up_proj row sign flip)
    q = categorize(active(mean, thresholds(mean, kind="quantile", q=0.5), "quantile"))
    q_flipped = categorize(active(flipped, thresholds(flipped, kind="quantile", q=0.5), "quantile"))
    assert torch.equal(q, q_flipped)
    literal = categorize(active(flipped, thresholds(flipped, kind="absolute"), "absolute"))
    assert literal[0, 1].item() == DEAD  # the literal rule is not sign-invariant


def test_bridge_rule_picks_the_best_contiguous_window():
    layers, neurons = 10, 10
    category = torch.full((layers, neurons), DEAD, dtype=torch.int8)
    for layer, partial in {5: 9, 6: 8, 7: 9, 8: 10, 9: 10}.items():
        category[layer, :partial] = PARTIAL
    choice = bridge_layers(category, k=2, exclude_last=2, min_layer=None)
    assert choice.candidates == (5, 6, 7)
    # window sums: (5,6) -> 0.8+0.6 = 1.4, (6,7) -> 0.6+0.8 = 1.4 -> tie goes to the earliest window
    assert choice.layers == (5, 6)
    assert bridge_layers(category, k=1, exclude_last=0, min_layer=0).layers == (8,)
    with pytest.raises(ValueError, match="candidate layers"):
        bridge_layers(category, k=4, exclude_last=2, min_layer=None)


# --- the runner, the artifact and specs -------------------------------------------------------

SPEC = spec_yaml("tiny-stats", LANGS, """\
stats:
  corpus: {kind: bible, limit: 4, seed: 2}
  bridge: {k: 2, exclude_last: 1, min_layer: 1}
interventions:
""", CLAS_FROM_STATS_YAML)


MODEL_ARCH = "gemma3"  # the `model_dir` fixture (conftest.py)


@pytest.fixture
def spec_file(tmp_path, model_dir):
    return spec_folder(tmp_path, model_dir, SPEC)


def test_stats_command_writes_artifact_figure_and_reuses_it(spec_file, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    artifact = StatsArtifact.load(run_dir / "stats.safetensors")
    meta = json.loads((run_dir / "stats.json").read_text())
    assert meta["languages"] == ["en", "de", "fr", "zh"] and meta["samples"] == 4
    assert meta["threshold"] | {"note": None} == {"kind": "quantile", "q": 0.8, "of": "abs_mean", "note": None}
    assert "{kind: absolute, value: 0.0}" in meta["threshold"]["note"]  # what the paper's wording implies
    assert list(artifact.tensors["mean"].shape) == [4, 4, 64]
    assert list(artifact.tensors["resid_mean"].shape) == [4, 4, 32]
    assert artifact.category.dtype == torch.int8 and list(artifact.category.shape) == [4, 64]
    assert artifact.bridge_layers == tuple(meta["bridge"]["layers"]) and len(artifact.bridge_layers) == 2
    assert min(artifact.bridge_layers) >= 1 and max(artifact.bridge_layers) <= 2
    assert (run_dir / "figures" / "neuron_categories.png").stat().st_size > 5000
    assert "bridge rule" in result.output

    calls = []
    monkeypatch.setattr(stats_runner, "collect", lambda *a, **k: calls.append(1))
    again = CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)])
    assert again.exit_code == 0, again.output
    assert calls == [] and "reusing" in again.output

    # The plan takes its layers and masks from the artifact.
    spec = load_spec(spec_file)
    plan = compile_plan(spec, model_dir_config(spec_file), stats=artifact)
    assert plan.layers == artifact.bridge_layers
    op = plan.ops[0]
    shared = artifact.category[op.layer] == 2
    specific = artifact.category[op.layer] == 1
    assert torch.equal(op.scale != 1.0, shared | specific)
    assert torch.allclose(op.scale[shared], torch.tensor(1.4)) and torch.allclose(op.scale[specific], torch.tensor(0.8))


def model_dir_config(spec_file):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(spec_file.parent / "model")


def test_compile_without_statistics_says_how_to_get_them(spec_file, tmp_path):
    result = CliRunner().invoke(app, ["compile", str(spec_file), "--runs-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "clas-graph stats" in result.stderr and "stats" in result.stderr


def test_from_stats_without_a_stats_section_is_a_spec_error():
    data = {**spec_data(["en", "de"], name="x"),
            "interventions": [{"kind": "clas", "layers": {"auto": "bridge"}}]}
    with pytest.raises(Exception, match="no `stats:` section"):
        validate_data(data)


def test_interrupted_statistics_leave_no_artifact(spec_file, tmp_path, monkeypatch):
    runs = tmp_path / "runs"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stats_runner, "collect", interrupted)
    result = CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 130
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "stats.safetensors").exists() and not (run_dir / "stats.json").exists()


def test_artifact_round_trip_and_refusals(spec_file, tmp_path):
    runs = tmp_path / "runs"
    assert CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)]).exit_code == 0
    (run_dir,) = runs.iterdir()
    path = run_dir / "stats.safetensors"
    artifact = StatsArtifact.load(path)
    artifact.save(tmp_path / "copy")
    copy = StatsArtifact.load(tmp_path / "copy" / "stats.safetensors")
    assert copy.languages == artifact.languages
    assert all(torch.equal(copy.tensors[k], artifact.tensors[k]) for k in artifact.tensors)

    spec = load_spec(spec_file)
    reordered = validate_data({**spec.model_dump(mode="json", exclude_none=True),
                               "languages": ["zh", "fr", "de", "en"]})
    moved = stats_runner.check_artifact_fits(artifact, reordered, "x")
    assert torch.equal(moved.tensors["mean"][0], artifact.tensors["mean"][3])
    owners = artifact.tensors["specific_language"]
    assert torch.equal(moved.tensors["specific_language"] == 0, owners == 3)

    other_langs = validate_data({**spec.model_dump(mode="json", exclude_none=True), "languages": ["en", "de", "fr"]})
    with pytest.raises(DataError, match="covers languages"):
        stats_runner.check_artifact_fits(artifact, other_langs, "x")
    other_model = validate_data({**spec.model_dump(mode="json", exclude_none=True), "model": {"path": "elsewhere"}})
    with pytest.raises(DataError, match="different model"):
        stats_runner.check_artifact_fits(artifact, other_model, "x")

    (run_dir / "stats.json").write_text(json.dumps({**json.loads((run_dir / "stats.json").read_text()),
                                                    "tensors_sha256": "0" * 64}))
    with pytest.raises(DataError, match="does not match its stats.json"):
        StatsArtifact.load(path)
    (run_dir / "stats.json").unlink()
    with pytest.raises(DataError, match="incomplete"):
        StatsArtifact.load(path)


def test_compile_plan_refuses_an_artifact_of_another_shape(spec_file):
    spec = load_spec(spec_file)
    fake = StatsArtifact(tuple(LANGS), {"category": torch.zeros(3, 64, dtype=torch.int8)})
    with pytest.raises(CompileError, match=r"\[layers, neurons\] = \[3, 64\]"):
        compile_plan(spec, model_dir_config(spec_file), stats=fake)
